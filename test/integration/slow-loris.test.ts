import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { connectionCap, openFileLimit, RESERVED_FILE_DESCRIPTORS } from '../../src/http/server.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { sharedSetup, type SharedSetup } from '../helpers/test-gateway.js';

// Small limits, so each attack is answered within a few seconds. All traffic is on loopback;
// 127.0.0.2 and up stand for other client addresses (Linux routes the whole 127/8 to lo).
const LIMITS = {
  HTTP_HEADERS_TIMEOUT_MS: '2000',
  HTTP_REQUEST_TIMEOUT_MS: '3000',
  HTTP_KEEP_ALIVE_TIMEOUT_MS: '1000',
  HTTP_MAX_CONNECTIONS: '20',
  HTTP_MAX_CONNECTIONS_PER_IP: '5',
  SHUTDOWN_TIMEOUT_MS: '8000',
};

interface Conn {
  socket: net.Socket;
  /** Everything the server sent. */
  received(): string;
  closed: Promise<void>;
  isClosed(): boolean;
}

/** A raw TCP connection from `localAddress`, resolved once connected. */
function connect(port: number, localAddress = '127.0.0.1'): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    let data = '';
    let closed = false;
    socket.on('data', (d: Buffer) => (data += d.toString()));
    socket.on('error', () => {}); // a reset by the server is one of the answers under test
    const closedPromise = new Promise<void>((res) => socket.once('close', () => ((closed = true), res())));
    socket.once('connect', () => resolve({ socket, received: () => data, closed: closedPromise, isClosed: () => closed }));
    socket.once('close', () => reject(new Error('closed before connecting')));
  });
}

/** Milliseconds until the connection closed, or undefined when it is still open after `limitMs`. */
async function closedWithin(conn: Conn, limitMs: number, since = Date.now()): Promise<number | undefined> {
  const timer = delay(Math.max(0, since + limitMs - Date.now())).then(() => 'open' as const);
  const outcome = await Promise.race([conn.closed.then(() => 'closed' as const), timer]);
  return outcome === 'closed' ? Date.now() - since : undefined;
}

function get(port: number, path: string, localAddress: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, localAddress, agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} from ${localAddress} timed out`)));
    req.on('error', reject);
  });
}

describe('slow clients against the gateway process', () => {
  let t: TestDatabase;
  let setup: SharedSetup;
  let gw: RunningGateway;
  let port: number;
  let stopped = false;
  const conns: Conn[] = [];
  const open = async (localAddress?: string): Promise<Conn> => {
    const conn = await connect(port, localAddress);
    conns.push(conn);
    return conn;
  };

  before(async () => {
    t = await createTestDatabase();
    setup = sharedSetup(t, LIMITS);
    gw = await startGateway(setup.env);
    port = Number(new URL(gw.url).port);
  });
  after(async () => {
    for (const c of conns) c.socket.destroy();
    if (!stopped) await gw.stop('SIGKILL');
    await t.drop();
    fs.rmSync(setup.dir, { recursive: true, force: true });
  });

  it('when a client sends part of the headers and then nothing, then the socket is closed with 408 about the headers timeout later', async () => {
    const conn = await open();
    const start = Date.now();
    conn.socket.write('GET /healthz HTTP/1.1\r\nHost: authtrail\r\nX-Slow: ');
    const elapsed = await closedWithin(conn, 3000, start);
    assert.ok(elapsed !== undefined, 'still open 3 s after the partial headers (HTTP_HEADERS_TIMEOUT_MS=2000)');
    assert.ok(elapsed >= 1500, `held until the headers timeout, not refused at once (${elapsed} ms)`);
    assert.match(conn.received(), /^HTTP\/1\.1 408 /);
  });

  it('when a client sends the headers and part of the body and then nothing, then the socket is closed with 408 about the request timeout later', async () => {
    const conn = await open();
    const start = Date.now();
    conn.socket.write('POST /login HTTP/1.1\r\nHost: authtrail\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"username":"slow');
    const elapsed = await closedWithin(conn, 4500, start);
    assert.ok(elapsed !== undefined, 'still open 4.5 s after the partial body (HTTP_REQUEST_TIMEOUT_MS=3000)');
    assert.ok(elapsed >= 2500, `held until the request timeout (${elapsed} ms)`);
    assert.match(conn.received(), /^HTTP\/1\.1 408 /);
  });

  it('when one address opens more sockets than HTTP_MAX_CONNECTIONS_PER_IP, then the extra ones are closed at once while another address still gets /healthz and /readyz', async () => {
    const held: Conn[] = [];
    for (let i = 0; i < 5; i++) {
      const conn = await open('127.0.0.3');
      conn.socket.write('GET /healthz HTTP/1.1\r\n');
      held.push(conn);
    }
    const extra: Conn[] = [];
    for (let i = 0; i < 3; i++) extra.push(await open('127.0.0.3'));
    const closedAfter = await Promise.all(extra.map((c) => closedWithin(c, 1000)));
    assert.ok(closedAfter.every((ms) => ms !== undefined), `sockets beyond the cap closed at once: ${closedAfter.join(', ')}`);
    assert.equal(await get(port, '/healthz', '127.0.0.2'), 200);
    assert.equal(await get(port, '/readyz', '127.0.0.2'), 200);
    assert.deepEqual(held.map((c) => c.isClosed()), [false, false, false, false, false], 'the first five were still held while the other address was served');
    for (const c of [...held, ...extra]) c.socket.destroy();
    for (let i = 0; i < 50 && !gw.lines.some((l) => l.includes('connections closed at a connection cap')); i++) await delay(20);
    const report = gw.lines.find((l) => l.includes('connections closed at a connection cap'));
    assert.ok(report, 'the refusal is logged');
    assert.equal((JSON.parse(report) as { refused: { max_connections_per_ip: number } }).refused.max_connections_per_ip, 1, 'the first refusal is reported at once, the rest at most once a minute');
  });

  it('when connections from many addresses reach HTTP_MAX_CONNECTIONS, then further ones are closed at once, and the gateway serves again once they go', async () => {
    await delay(200); // the server has seen the previous test's sockets go
    const held: Conn[] = [];
    for (const address of ['127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.7']) {
      for (let i = 0; i < 5; i++) held.push(await open(address));
    }
    await delay(200);
    assert.equal(held.filter((c) => c.isClosed()).length, 0, 'twenty connections are allowed');
    const extra = await open('127.0.0.8');
    assert.ok((await closedWithin(extra, 1000)) !== undefined, 'the 21st connection is closed at once');
    for (const c of held) c.socket.destroy();
    await Promise.all(held.map((c) => c.closed));
    let status = 0;
    for (let i = 0; i < 20 && status !== 200; i++) {
      status = await get(port, '/healthz', '127.0.0.8').catch(() => 0);
      if (status !== 200) await delay(50);
    }
    assert.equal(status, 200);
  });

  // Node closes an idle connection one second after the timeout it announces, so the client closes first.
  it('when a keep-alive connection stays idle after a response, then it is closed about the keep-alive timeout later', async () => {
    const conn = await open();
    conn.socket.write('GET /healthz HTTP/1.1\r\nHost: authtrail\r\nConnection: keep-alive\r\n\r\n');
    for (let i = 0; i < 100 && !conn.received().includes('"status":"ok"'); i++) await delay(20);
    assert.match(conn.received(), /^HTTP\/1\.1 200 /);
    const start = Date.now();
    const elapsed = await closedWithin(conn, 3000, start);
    assert.ok(elapsed !== undefined, 'idle keep-alive socket still open after 3 s (HTTP_KEEP_ALIVE_TIMEOUT_MS=1000)');
    assert.ok(elapsed >= 500, `kept alive for a while first (${elapsed} ms)`);
    assert.match(conn.received(), /\r\nKeep-Alive: timeout=1\b/i, 'the client was told the timeout');
  });

  it('when the gateway is stopped while slow clients hold partial requests, then it still drains and exits 0 within the request timeout', async () => {
    const headers = await open();
    headers.socket.write('GET /healthz HTTP/1.1\r\nHost: authtrail\r\n');
    const body = await open('127.0.0.2');
    body.socket.write('POST /login HTTP/1.1\r\nHost: authtrail\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"user');
    await delay(200);
    const start = Date.now();
    stopped = true;
    const code = await gw.stop('SIGTERM');
    const elapsed = Date.now() - start;
    assert.equal(code, 0, gw.stderr() + gw.lines.slice(-5).join('\n'));
    assert.ok(elapsed < 5000, `stopped in ${elapsed} ms`);
    assert.ok(gw.lines.some((l) => l.includes('"msg":"stopped"')));
  });
});

describe('the connection cap and the open-file limit', () => {
  it('when the open-file limit leaves too few descriptors for HTTP_MAX_CONNECTIONS, then the cap is lowered to keep the reserve free', () => {
    assert.equal(connectionCap(10_000, 1024), 1024 - RESERVED_FILE_DESCRIPTORS);
    assert.equal(connectionCap(10_000, 65_536), 10_000);
    assert.equal(connectionCap(10_000, undefined), 10_000, 'unknown limit: as configured');
    assert.equal(connectionCap(10_000, 100), 1, 'never below one');
  });

  it('when the process limit is read, then it is the soft "Max open files" of /proc/self/limits, or undefined when there is none', () => {
    const limit = openFileLimit();
    if (fs.existsSync('/proc/self/limits')) assert.ok(limit !== undefined && limit > 0, String(limit));
    assert.equal(openFileLimit('/nonexistent/limits'), undefined);
  });
});
