import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import request from 'supertest';
import { createApp } from '../../src/app.js';
import { createChainWriter, type ChainWriter } from '../../src/audit/chain-writer.js';
import { loadTrustedKeys } from '../../src/audit/checkpoints.js';
import { verifyChain } from '../../src/audit/verify-chain.js';
import { loadConfig } from '../../src/config.js';
import { createPostgresDatabase, DatabaseUnavailableError, type Database } from '../../src/db/database.js';
import { Deadline, outsideDeadline, runWithDeadline } from '../../src/deadline.js';
import { createLogger } from '../../src/logger.js';
import { createServices } from '../../src/runtime.js';
import { createUser } from '../../src/users/create-user.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { createTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { auditRows, createTestGateway, sharedSetup, uniqueName, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';
/** The deadline these tests configure, and how late after it a 503 may arrive (scheduling on a busy 2-core box). */
const DEADLINE_MS = 1500;
const MARGIN_MS = 500;

interface Answer {
  status: number;
  ms: number;
  body: Record<string, unknown> | null;
  retryAfter: string | null;
}

/** POSTs JSON and measures until the whole answer is in; a hard cap keeps a failing run short. */
async function post(url: string, body: unknown): Promise<Answer> {
  const started = performance.now();
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  return {
    status: res.status,
    ms: Math.round(performance.now() - started),
    body: text ? (JSON.parse(text) as Record<string, unknown>) : null,
    retryAfter: res.headers.get('retry-after'),
  };
}

function viaPort(url: string, port: number): string {
  const u = new URL(url);
  u.port = String(port);
  return u.toString();
}

/** Live sessions (unrevoked refresh families) that have no `login.succeeded` record naming them. */
async function unrecordedLiveSessions(t: TestDatabase): Promise<string[]> {
  const { rows } = await t.db.query<{ id: string }>(
    `SELECT f.id::text AS id FROM refresh_families f
      WHERE f.revoked_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.event_type = 'login.succeeded' AND a.session_id = f.id)`,
  );
  return rows.map((r) => r.id);
}

function assertDeadline503(answers: Answer[]): void {
  for (const a of answers) {
    assert.equal(a.status, 503, `expected 503 within ${DEADLINE_MS} ms, got ${a.status} after ${a.ms} ms: ${JSON.stringify(a.body)}`);
    assert.match(String(a.body?.code), /^(audit|service)_unavailable$/);
    assert.ok(a.retryAfter, 'Retry-After');
    assert.ok(!('access_token' in (a.body ?? {})), 'no token');
    assert.ok(a.ms <= DEADLINE_MS + MARGIN_MS, `answered after ${a.ms} ms; the deadline is ${DEADLINE_MS} ms`);
  }
}

/**
 * A TCP proxy that can hold bytes (both ways, in order) and later deliver them: a stall that
 * ends without losing anything, so work started before it completes after it.
 */
async function createHoldingProxy(target: URL): Promise<{ port: number; hold(): void; release(): void; close(): Promise<void> }> {
  let held = false;
  const pending: Array<() => void> = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
    }
    const forward = (to: net.Socket) => (d: Buffer) => (held ? pending.push(() => to.write(d)) : to.write(d));
    client.on('data', forward(upstream));
    upstream.on('data', forward(client));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    hold() {
      held = true;
    },
    release() {
      held = false;
      for (const deliver of pending.splice(0)) deliver();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('one deadline per request, a real gateway process with PostgreSQL frozen', () => {
  let t: TestDatabase;
  let admin: TestGateway;
  let proxy: TcpProxy;
  let gateway: RunningGateway | undefined;
  let setupDir: string;
  let signingKeyFile: string;
  before(async () => {
    t = await createTestDatabase();
    admin = await createTestGateway({ t });
    proxy = await createTcpProxy(Number(new URL(t.url).port || 5432), new URL(t.url).hostname);
    const setup = sharedSetup(t, { DATABASE_URL: viaPort(t.url, proxy.port), REQUEST_DEADLINE_MS: String(DEADLINE_MS) });
    setupDir = setup.dir;
    signingKeyFile = setup.env.AUDIT_SIGNING_KEY_FILE!;
    gateway = await startGateway(setup.env);
  });
  after(async () => {
    await proxy.stop().catch(() => {});
    await gateway?.stop('SIGKILL');
    await admin.close();
    await t.drop();
    fs.rmSync(setupDir, { recursive: true, force: true });
  });

  it('when every byte to PostgreSQL stalls, then /login, /refresh and /logout answer 503 within REQUEST_DEADLINE_MS, no token is issued, and afterwards no session lacks its record', async () => {
    const gw = gateway!;
    const username = uniqueName('frozen');
    await admin.addUser(username, PASSWORD);
    const warm = await post(`${gw.url}/login`, { username, password: PASSWORD });
    assert.equal(warm.status, 200, JSON.stringify(warm.body));
    const refreshToken = String(warm.body!.refresh_token);

    proxy.freeze();
    const answers = await Promise.all([
      post(`${gw.url}/login`, { username, password: PASSWORD }),
      post(`${gw.url}/login`, { username, password: PASSWORD }),
      post(`${gw.url}/login`, { username, password: 'a wrong password' }),
      post(`${gw.url}/refresh`, { refresh_token: refreshToken }),
      post(`${gw.url}/logout`, {}),
    ]);
    console.log(`503 latency with PostgreSQL frozen (deadline ${DEADLINE_MS} ms): ${answers.map((a) => `${a.status}/${a.ms}ms`).join(', ')}`);
    assertDeadline503(answers);

    // The stall ends: the dropped connections roll back whatever they had begun.
    await proxy.stop();
    await proxy.start();
    let after: Answer | undefined;
    for (let i = 0; i < 20 && after?.status !== 200; i++) {
      if (i > 0) await delay(250);
      after = await post(`${gw.url}/login`, { username, password: PASSWORD });
    }
    assert.equal(after?.status, 200, 'the gateway recovers once PostgreSQL answers again');
    // The refresh token presented during the stall was never rotated (or was put back).
    assert.equal((await post(`${gw.url}/refresh`, { refresh_token: refreshToken })).status, 200);

    await delay(DEADLINE_MS); // work still running in the background settles
    assert.deepEqual(await unrecordedLiveSessions(t), []);
    const verified = await verifyChain(t.db, { trustedKeys: loadTrustedKeys([signingKeyFile]) });
    assert.equal(verified.first_invalid_seq, undefined, JSON.stringify(verified));
  });
});

describe('one deadline per request, only the audit connection stalled', () => {
  let t: TestDatabase;
  let auditDb: Database;
  let holding: Awaited<ReturnType<typeof createHoldingProxy>>;
  let writer: ChainWriter;
  let redis: Redis;
  let server: http.Server;
  let url: string;
  let dir: string;
  let addUser: (username: string) => Promise<void>;
  before(async () => {
    t = await createTestDatabase();
    holding = await createHoldingProxy(new URL(t.url));
    // The writer's own pool, as in production (runtime.ts), but through a proxy that can hold bytes.
    auditDb = createPostgresDatabase({ url: viaPort(t.url, holding.port), poolMax: 2, statementTimeoutMs: 5000, connectTimeoutMs: 3000 });
    const setup = sharedSetup(t, { REQUEST_DEADLINE_MS: String(DEADLINE_MS) });
    dir = setup.dir;
    const config = loadConfig(setup.env);
    redis = new Redis(config.redis.url!, { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 1000 });
    redis.on('error', () => {});
    await new Promise((resolve) => redis.once('ready', resolve));
    writer = createChainWriter(auditDb, { batchMax: config.audit.batchMax, writeTimeoutMs: config.audit.writeTimeoutMs });
    const services = createServices(config, createLogger('silent'), { db: t.db, writer, redis });
    addUser = async (username) => {
      const result = await createUser({ users: services.users, passwords: services.passwords, writer, minPasswordLength: 12 }, { username, password: PASSWORD, roles: ['user'] }, {});
      assert.ok(result.ok);
    };
    server = http.createServer(createApp(services));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });
  after(async () => {
    holding.release();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await writer.close();
    redis.disconnect();
    await holding.close();
    await auditDb.close();
    await t.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('when the audit record commits only after the request got its 503, then that session is revoked and no token ever left', async () => {
    const username = uniqueName('late-commit');
    await addUser(username);
    assert.equal((await post(`${url}/login`, { username, password: PASSWORD })).status, 200); // warm connections

    const { rows: before } = await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM refresh_families');
    holding.hold();
    // The stall ends after the deadline: the first record's transaction, already begun, then commits.
    const released = delay(DEADLINE_MS + 700).then(() => holding.release());
    let answers: Answer[];
    try {
      answers = await Promise.all([0, 1, 2].map(() => post(`${url}/login`, { username, password: PASSWORD })));
    } finally {
      await released;
    }
    console.log(`503 latency with the audit connection held (deadline ${DEADLINE_MS} ms): ${answers.map((a) => `${a.status}/${a.ms}ms`).join(', ')}`);
    assertDeadline503(answers);

    await delay(1000);
    await writer.flush();
    await delay(500); // the undo after a late commit
    const { rows: sessions } = await t.db.query<{ id: string; revoked_reason: string | null; recorded: boolean }>(
      `SELECT f.id::text AS id, f.revoked_reason,
              EXISTS (SELECT 1 FROM audit_log a WHERE a.event_type = 'login.succeeded' AND a.session_id = f.id) AS recorded
         FROM refresh_families f ORDER BY f.created_at OFFSET $1`,
      [before[0]!.n],
    );
    assert.equal(sessions.length, 3, 'each login began a session');
    assert.ok(
      sessions.every((s) => s.revoked_reason !== null),
      `every session of a request answered 503 is revoked: ${JSON.stringify(sessions)}`,
    );
    // The first record was in a transaction when the stall began: it commits late, and its session
    // is revoked. The others still waited in the queue at their deadline: dropped, never written.
    assert.deepEqual(
      sessions.map((s) => [s.recorded, s.revoked_reason]).sort((a, b) => Number(b[0]) - Number(a[0])),
      [
        [true, 'deadline_exceeded'],
        [false, 'audit_unavailable'],
        [false, 'audit_unavailable'],
      ],
    );
    assert.deepEqual(await unrecordedLiveSessions(t), []);
    assert.equal((await verifyChain(t.db, { trustedKeys: new Map() })).first_invalid_seq, undefined);
    // Nothing is stuck: the next login succeeds at once.
    const next = await post(`${url}/login`, { username, password: PASSWORD });
    assert.equal(next.status, 200);
    assert.ok(next.ms < DEADLINE_MS, `${next.ms} ms`);
  });
});

describe('database calls under a request deadline', () => {
  let t: TestDatabase;
  let holding: Awaited<ReturnType<typeof createHoldingProxy>>;
  let db: Database;
  before(async () => {
    t = await createTestDatabase({ migrate: false });
    holding = await createHoldingProxy(new URL(t.url));
    db = createPostgresDatabase({ url: viaPort(t.url, holding.port), poolMax: 1, statementTimeoutMs: 5000, connectTimeoutMs: 3000 });
  });
  after(async () => {
    holding.release();
    await holding.close();
    await db.close();
    await t.drop();
  });

  async function timedQuery(run: () => Promise<unknown>): Promise<{ ms: number; error: unknown }> {
    const started = performance.now();
    const error = await run().then(
      () => undefined,
      (err: unknown) => err,
    );
    return { ms: Math.round(performance.now() - started), error };
  }

  it('when the server stalls, then a call made for a request gets the time the request has left, not its own full timeout', async () => {
    await db.query('SELECT 1'); // the one connection is open and idle
    holding.hold();
    try {
      // On the open connection: bounded by the deadline (less its reserve), not the 6 s query timeout.
      const onOpen = await timedQuery(() => runWithDeadline(new Deadline(1000), () => db.query('SELECT 1')));
      assert.ok(onOpen.error instanceof DatabaseUnavailableError, String(onOpen.error));
      assert.ok(onOpen.ms >= 850 && onOpen.ms < 1200, `${onOpen.ms} ms`);
      // That connection is discarded; waiting for a new one is bounded too, not by the 3 s connect timeout.
      const onNew = await timedQuery(() => runWithDeadline(new Deadline(1000), () => db.transaction((tx) => tx.query('SELECT 1'))));
      assert.ok(onNew.error instanceof DatabaseUnavailableError, String(onNew.error));
      assert.ok(onNew.ms < 1200, `${onNew.ms} ms`);
      // A request whose deadline has passed starts nothing.
      const spent = new Deadline(1000);
      spent.expire();
      const refused = await timedQuery(() => runWithDeadline(spent, () => db.query('SELECT 1')));
      assert.ok(refused.error instanceof DatabaseUnavailableError);
      assert.ok(refused.ms < 50, `${refused.ms} ms`);
    } finally {
      holding.release();
    }
    // Undo work runs outside the deadline, with the pool's own timeouts.
    const undo = await timedQuery(() => runWithDeadline(new Deadline(1), () => outsideDeadline(() => db.query('SELECT 1'))));
    assert.equal(undo.error, undefined);
  });
});

describe('a deadline 503 on an authentication route is a refusal like any other', () => {
  let gw: TestGateway;
  before(async () => {
    // Cost 12 (≈ 0.3 s a hash here) against a 200 ms deadline: every login is answered by the deadline.
    gw = await createTestGateway({ env: { BCRYPT_COST: '12', REQUEST_DEADLINE_MS: '200' } });
  });
  after(async () => {
    await gw.close();
  });

  it('when logins outlast the deadline, then each 503 writes exactly one record, and the decision reached later writes none', async () => {
    const usernames = Array.from({ length: 6 }, (_, i) => uniqueName(`slow${i}`));
    const answers = await Promise.all(usernames.map((username) => request(gw.app).post('/login').send({ username, password: 'not the password at all' })));
    assert.deepEqual(answers.map((r) => [r.status, (r.body as { code?: string }).code]), usernames.map(() => [503, 'service_unavailable']));
    // Let every password check finish and try to record its own decision.
    await delay(3000);
    for (const username of usernames) {
      const rows = await auditRows(gw.t, { username });
      assert.deepEqual(rows.map((r) => [r.event_type, r.outcome, r.reason]), [['login.failed', 'failure', 'service_unavailable']], username);
    }
  });
});

