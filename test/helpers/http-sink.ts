import http from 'node:http';
import type net from 'node:net';

/**
 * A real HTTP server acting as a SIEM's collector for the forwarder's tests: Splunk HEC
 * (`POST /services/collector/event`, `Authorization: Splunk <token>`, concatenated event objects)
 * or a JSON webhook (a JSON array per POST). It keeps every event it accepted, in arrival order,
 * refuses a wrong token with 401 (keeping nothing), can answer each request after `delayMs` (a slow
 * receiver), and can be taken down and brought back on the same port.
 */
export interface HttpCollector {
  port: number;
  url: string;
  /** Accepted events (HEC: the envelope objects; webhook: the array items), in arrival order. */
  events: unknown[];
  requests: number;
  refused: number;
  stop(): Promise<void>;
  start(): Promise<void>;
}

export async function startCollector(options: { mode: 'splunk_hec' | 'webhook'; token?: string; port?: number; delayMs?: number }): Promise<HttpCollector> {
  const sockets = new Set<net.Socket>();
  const state: HttpCollector = {
    port: options.port ?? 0,
    url: '',
    events: [],
    requests: 0,
    refused: 0,
    stop,
    start,
  };
  let server: http.Server | undefined;

  const handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => setTimeout(answer, options.delayMs ?? 0));
    const answer = () => {
      state.requests += 1;
      const expected = options.token === undefined ? undefined : options.mode === 'splunk_hec' ? `Splunk ${options.token}` : `Bearer ${options.token}`;
      const path = options.mode === 'splunk_hec' ? '/services/collector/event' : '/hook';
      if (req.method !== 'POST' || req.url !== path) {
        res.writeHead(404).end();
        return;
      }
      if (expected !== undefined && req.headers.authorization !== expected) {
        state.refused += 1;
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"text":"Invalid token","code":4}');
        return;
      }
      const body = Buffer.concat(chunks).toString('utf8');
      try {
        if (options.mode === 'splunk_hec') {
          // Concatenated JSON objects; the forwarder separates them with a newline, which HEC allows.
          for (const line of body.split('\n')) if (line.trim() !== '') state.events.push(JSON.parse(line));
        } else {
          const items = JSON.parse(body) as unknown;
          if (!Array.isArray(items)) throw new Error('not an array');
          state.events.push(...(items as unknown[]));
        }
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"text":"Invalid data format","code":6}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"text":"Success","code":0}');
    };
  };

  async function start(): Promise<void> {
    server = http.createServer(handle);
    server.keepAliveTimeout = 30_000;
    server.on('connection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => server!.listen(state.port, '127.0.0.1', resolve));
    state.port = (server.address() as net.AddressInfo).port;
    state.url = options.mode === 'splunk_hec' ? `http://127.0.0.1:${state.port}` : `http://127.0.0.1:${state.port}/hook`;
  }

  async function stop(): Promise<void> {
    const s = server;
    server = undefined;
    if (!s) return;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });
  }

  await start();
  return state;
}
