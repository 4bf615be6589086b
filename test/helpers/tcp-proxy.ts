import net from 'node:net';

/**
 * A TCP proxy in front of a real server, for failure tests: `freeze()` stops forwarding bytes
 * (a stalled network), `stop()` drops every connection and refuses new ones, `start()` resumes.
 */
export interface TcpProxy {
  readonly port: number;
  freeze(): void;
  stop(): Promise<void>;
  start(): Promise<void>;
}

export async function createTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let frozen = false;
  let server: net.Server;
  let port = 0;

  const listen = () =>
    new Promise<void>((resolve) => {
      server = net.createServer((client) => {
        const upstream = net.connect(targetPort, targetHost);
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
          s.on('error', () => s.destroy());
        }
        client.on('data', (d) => frozen || upstream.write(d));
        upstream.on('data', (d) => frozen || client.write(d));
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      });
      server.listen(port, '127.0.0.1', () => {
        port = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });

  await listen();
  return {
    get port() {
      return port;
    },
    freeze() {
      frozen = true;
    },
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
    },
    async start() {
      frozen = false;
      await listen();
    },
  };
}
