import http from 'node:http';
import type { Logger } from 'pino';
import type { Witness } from './witness.js';

/** Far above a checkpoint with 63 proof lines and 16 signatures; anything larger is no request. */
const MAX_BODY_BYTES = 64 * 1024;

const ORIGIN_CHECKPOINT = /^\/([0-9a-f]{64})\/checkpoint$/;

class BodyError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) throw new BodyError(413, 'request body too large');
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    length += chunk.length;
    if (length > MAX_BODY_BYTES) throw new BodyError(413, 'request body too large');
    chunks.push(chunk);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new BodyError(400, 'request body is not UTF-8');
  }
}

function send(res: http.ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(body);
}

/**
 * The witness's HTTP interface (C2SP tlog-witness), one prefix for submission and monitoring:
 * `POST /add-checkpoint`; `GET /<sha256(origin) hex>/checkpoint` (the latest cosigned checkpoint,
 * for monitors); `GET /` its name, verifier key and latest size per log, as JSON.
 */
export function createWitnessServer(witness: Witness, logger: Logger): http.Server {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const handle = async (): Promise<void> => {
      if (path === '/add-checkpoint') {
        if (req.method !== 'POST') return send(res, 405, 'text/plain; charset=utf-8', 'POST only\n');
        const answer = await witness.addCheckpoint(await readBody(req));
        return send(res, answer.status, answer.contentType, answer.body);
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain; charset=utf-8', 'GET only\n');
      if (path === '/') return send(res, 200, 'application/json', `${JSON.stringify(witness.status())}\n`);
      const match = ORIGIN_CHECKPOINT.exec(path);
      const checkpoint = match ? witness.checkpoint(match[1]!) : undefined;
      if (checkpoint === undefined) return send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
      return send(res, 200, 'text/plain; charset=utf-8', checkpoint);
    };
    handle().catch((err: unknown) => {
      if (err instanceof BodyError) {
        send(res, err.status, 'text/plain; charset=utf-8', `${err.message}\n`);
        return;
      }
      logger.error({ err }, 'witness request failed');
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
      else res.destroy();
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 5000;
  return server;
}
