import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { verifyChain } from '../../src/audit/verify-chain.js';
import { createPostgresDatabase, type Database } from '../../src/db/database.js';
import { sampleEvent } from '../helpers/events.js';
import { ADMIN_URL, createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { createTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

const STATEMENT_TIMEOUT_MS = 800;
const CONNECT_TIMEOUT_MS = 500;
/** What "a bounded time" means here: the database timeouts plus scheduling slack. */
const BOUND_MS = STATEMENT_TIMEOUT_MS + 1000 + 1500;

function viaPort(t: TestDatabase, port: number): Database {
  const url = new URL(t.url);
  url.port = String(port);
  return createPostgresDatabase({ url: url.toString(), poolMax: 4, statementTimeoutMs: STATEMENT_TIMEOUT_MS, connectTimeoutMs: CONNECT_TIMEOUT_MS });
}

async function timed<T>(promise: Promise<T>): Promise<{ ms: number; result: PromiseSettledResult<T> }> {
  const started = performance.now();
  const [result] = await Promise.allSettled([promise]);
  return { ms: performance.now() - started, result: result };
}

async function rowCount(t: TestDatabase): Promise<number> {
  const { rows } = await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log');
  return rows[0]!.n;
}

describe('audit writer when PostgreSQL is unavailable', () => {
  let t: TestDatabase;
  let proxy: TcpProxy;
  before(async () => {
    t = await createTestDatabase();
    proxy = await createTcpProxy(Number(new URL(ADMIN_URL).port || 5432), new URL(ADMIN_URL).hostname);
  });
  after(async () => {
    await proxy.stop().catch(() => {});
    await t.drop();
  });

  it('when nothing listens at the database address, then recordEvent rejects quickly with ERR_AUDIT_UNAVAILABLE', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const db = viaPort(t, port);
    const writer = createChainWriter(db, { batchMax: 8, writeTimeoutMs: 2000 });
    const { ms, result } = await timed(writer.recordEvent(sampleEvent(1)));
    assert.equal(result.status, 'rejected');
    assert.equal((result).reason.code, 'ERR_AUDIT_UNAVAILABLE');
    assert.ok(ms < BOUND_MS, `${ms} ms`);
    await db.close();
  });

  it('when the server accepts but never answers, then recordEvent rejects within the connect timeout', async () => {
    const silent = net.createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const db = viaPort(t, (silent.address() as net.AddressInfo).port);
    const writer = createChainWriter(db, { batchMax: 8, writeTimeoutMs: 10_000 });
    const { ms, result } = await timed(writer.recordEvent(sampleEvent(1)));
    assert.equal(result.status, 'rejected');
    assert.ok(ms < BOUND_MS, `${ms} ms`);
    await db.close();
    silent.close();
  });

  it('when the database goes away mid-run, then callers are refused, nothing partial is stored, and writing resumes when it returns', async () => {
    const db = viaPort(t, proxy.port);
    const writer = createChainWriter(db, { batchMax: 8, writeTimeoutMs: 3000 });
    const committed = await Promise.all(Array.from({ length: 20 }, (_, i) => writer.recordEvent(sampleEvent(i))));
    assert.equal(committed.at(-1)?.seq, 20);

    await proxy.stop();
    const during = await timed(Promise.allSettled(Array.from({ length: 10 }, (_, i) => writer.recordEvent(sampleEvent(100 + i)))));
    const outcomes = (during.result as PromiseFulfilledResult<PromiseSettledResult<unknown>[]>).value;
    assert.ok(outcomes.every((o) => o.status === 'rejected'), 'no record claims success while the database is down');
    assert.ok(during.ms < BOUND_MS, `${during.ms} ms`);
    assert.equal(await rowCount(t), 20);

    await proxy.start();
    const resumed = await writer.recordEvent(sampleEvent(200));
    assert.equal(resumed.seq, 21);
    await writer.close();
    await db.close();
    const result = await verifyChain(t.db, { trustedKeys: new Map() });
    assert.deepEqual([result.valid, result.head_seq], [true, 21]);
  });

  it('when the network stalls inside a transaction, then recordEvent rejects within the statement timeout and the batch is not committed', async () => {
    const before = await rowCount(t);
    const db = viaPort(t, proxy.port);
    const writer = createChainWriter(db, { batchMax: 8, writeTimeoutMs: 3000 });
    await writer.recordEvent(sampleEvent(1)); // connection established and warm
    proxy.freeze();
    const stalled = await timed(Promise.allSettled(Array.from({ length: 5 }, (_, i) => writer.recordEvent(sampleEvent(i)))));
    const outcomes = (stalled.result as PromiseFulfilledResult<PromiseSettledResult<unknown>[]>).value;
    assert.ok(outcomes.every((o) => o.status === 'rejected'));
    assert.ok(stalled.ms < BOUND_MS, `${stalled.ms} ms`);
    await proxy.stop();
    await proxy.start();
    // Give the server a moment to notice the dropped session and roll it back.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await rowCount(t), before + 1);
    await writer.close();
    await db.close();
    assert.equal((await verifyChain(t.db, { trustedKeys: new Map() })).valid, true);
  });
});
