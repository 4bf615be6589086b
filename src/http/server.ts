import fs from 'node:fs';
import http, { type IncomingMessage, type RequestListener } from 'node:http';
import type { Socket } from 'node:net';
import type { Config } from '../config.js';
import { ipLimitKey } from '../lockout/lockout-service.js';

export type HttpLimits = Config['http'];

/** Node's default, made explicit: larger request headers get 431. */
const MAX_HEADER_SIZE = 16 * 1024;
/** Requests served on one connection; the last answer says `Connection: close`. */
const MAX_REQUESTS_PER_SOCKET = 1000;
/** File descriptors kept free of client connections: database pool, Redis, files, logs. */
export const RESERVED_FILE_DESCRIPTORS = 256;

export type RefusalReason = 'max_connections' | 'max_connections_per_ip';

export interface GatewayServer extends http.Server {
  /**
   * Stops accepting and ends the connections that hold no work: idle ones and requests whose
   * headers are incomplete at once, requests whose body is still incomplete once they are
   * `requestTimeoutMs` old. Node stops enforcing its own timeouts on `close()`, so without this one
   * slow client would hold a graceful shutdown until its deadline. `callback` runs when the last
   * connection is gone.
   */
  shutdown(callback: (err?: Error) => void): void;
}

/**
 * How often Node checks the header and request timeouts. Its default is 30 s, so a timeout was only
 * an approximate lower bound; a tenth of the smaller one, between 100 ms and 1 s, makes it hold.
 */
export function connectionsCheckingInterval(limits: Pick<HttpLimits, 'headersTimeoutMs' | 'requestTimeoutMs'>): number {
  return Math.max(100, Math.min(1000, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 10)));
}

/** The soft limit on open files of this process (Linux `/proc/self/limits`); undefined when unknown or unlimited. */
export function openFileLimit(limitsFile = '/proc/self/limits'): number | undefined {
  try {
    const match = /^Max open files\s+(\d+)/m.exec(fs.readFileSync(limitsFile, 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** `configured`, lowered so that {@link RESERVED_FILE_DESCRIPTORS} stay free under `fileLimit`. */
export function connectionCap(configured: number, fileLimit: number | undefined): number {
  if (fileLimit === undefined) return configured;
  return Math.max(1, Math.min(configured, fileLimit - RESERVED_FILE_DESCRIPTORS));
}

/** The per-address key: IPv4 per address, IPv6 by /64, like the login limiter. */
function addressKey(address: string): string {
  try {
    return ipLimitKey(address);
  } catch {
    return address;
  }
}

/**
 * The gateway's HTTP server with bounds against slow and numerous clients: header, request and
 * keep-alive timeouts that are enforced to within {@link connectionsCheckingInterval}, a cap on
 * open connections in all (Node closes the ones beyond it as they are accepted) and one per client
 * address (closed here, before any byte is read). The address is the socket's: behind a reverse
 * proxy that is the proxy's.
 */
export function createHttpServer(
  app: RequestListener,
  limits: HttpLimits,
  events: { onRefused?: (reason: RefusalReason) => void } = {},
): GatewayServer {
  const server = http.createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: connectionsCheckingInterval(limits),
      maxHeaderSize: MAX_HEADER_SIZE,
    },
    app,
  );
  server.maxConnections = limits.maxConnections;
  server.maxRequestsPerSocket = MAX_REQUESTS_PER_SOCKET;
  server.on('drop', () => events.onRefused?.('max_connections'));

  const perAddress = new Map<string, number>();
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined) {
      socket.destroy();
      return;
    }
    const key = addressKey(address);
    const open = perAddress.get(key) ?? 0;
    if (open >= limits.maxConnectionsPerIp) {
      socket.destroy();
      events.onRefused?.('max_connections_per_ip');
      return;
    }
    perAddress.set(key, open + 1);
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      const left = (perAddress.get(key) ?? 1) - 1;
      if (left > 0) perAddress.set(key, left);
      else perAddress.delete(key);
    });
  });

  // The request each connection is serving, from its headers until its response is done.
  const serving = new Map<Socket, { req: IncomingMessage; since: number }>();
  server.on('request', (req: IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket;
    const entry = { req, since: Date.now() };
    serving.set(socket, entry);
    res.once('close', () => {
      if (serving.get(socket) === entry) serving.delete(socket);
    });
  });

  return Object.assign(server, {
    shutdown(callback: (err?: Error) => void): void {
      server.close(callback);
      const sweep = (): void => {
        const now = Date.now();
        for (const socket of sockets) {
          const current = serving.get(socket);
          if (!current || (!current.req.complete && now - current.since >= limits.requestTimeoutMs)) socket.destroy();
        }
      };
      sweep();
      const timer = setInterval(sweep, connectionsCheckingInterval(limits));
      timer.unref();
      server.once('close', () => clearInterval(timer));
    },
  });
}
