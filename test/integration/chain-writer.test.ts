import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { verifyChain } from '../../src/audit/verify-chain.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { sampleEvent } from '../helpers/events.js';
import { runTs } from '../helpers/processes.js';

async function chainShape(t: TestDatabase) {
  const { rows } = await t.db.query<{ n: number; min: number; max: number; distinct_prev: number }>(
    'SELECT count(*)::int AS n, min(seq) AS min, max(seq) AS max, count(DISTINCT prev_hash)::int AS distinct_prev FROM audit_log',
  );
  return rows[0]!;
}

describe('audit chain writer on PostgreSQL', () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
  });
  after(async () => {
    await t.drop();
  });

  it('when 500 records are appended concurrently by two separate processes, then seq is 1..500 dense, no prev_hash repeats, and the chain verifies', async () => {
    const startAt = String(Date.now() + 1500);
    const workers = await Promise.all(['a', 'b'].map((w) => runTs('test/helpers/append-worker.ts', [t.url, '250', startAt, w])));
    const outcomes = workers.map((w) => {
      assert.equal(w.code, 0, w.stderr);
      return JSON.parse(w.stdout) as { seqs: number[]; failed: number; batches: number };
    });
    assert.deepEqual(outcomes.map((o) => o.failed), [0, 0]);
    // Every committed seq was handed to exactly one caller.
    const all = outcomes.flatMap((o) => o.seqs).sort((a, b) => a - b);
    assert.deepEqual(all, Array.from({ length: 500 }, (_, i) => i + 1));
    // Group commit really batched: far fewer transactions than records.
    assert.ok(outcomes.every((o) => o.batches < 250), `batches ${outcomes.map((o) => o.batches).join(',')}`);

    assert.deepEqual(await chainShape(t), { n: 500, min: 1, max: 500, distinct_prev: 500 });
    const { rows } = await t.db.query<{ workers: number }>('SELECT count(DISTINCT device_id)::int AS workers FROM audit_log');
    assert.equal(rows[0]!.workers, 2, 'both processes wrote');
    const result = await verifyChain(t.db, { trustedKeys: new Map() });
    assert.deepEqual(result, { valid: true, checked: 500, head_seq: 500, checkpoints_checked: 0 });
  });

  it('when recordEvent resolves, then the record is already committed and readable by another connection', async () => {
    const writer = createChainWriter(t.db, { batchMax: 32, writeTimeoutMs: 5000 });
    const other = t.open();
    const committed = await writer.recordEvent(sampleEvent(7, { username: 'durable@example.com' }));
    const { rows } = await other.query<{ username: string; hash: Buffer }>('SELECT username, hash FROM audit_log WHERE seq = $1', [committed.seq]);
    assert.equal(rows[0]?.username, 'durable@example.com');
    assert.ok(rows[0].hash.equals(committed.hash));
    await writer.close();
  });

  it('when stored and read back, then every field round-trips exactly (microseconds, IPv6, NULL vs empty, JSON text)', async () => {
    const writer = createChainWriter(t.db, { batchMax: 32, writeTimeoutMs: 5000 });
    const c = await writer.recordEvent({
      eventType: 'login.failed',
      outcome: 'failure',
      reason: 'invalid_credentials',
      username: 'Zoë\r\nInjected: yes',
      ip: '2001:0db8:0:0:0:0:0:42',
      userAgent: '',
      deviceId: null,
      mfaMethod: 'none',
      details: { z: 1, a: [1.5, 'x'] },
    });
    const { rows } = await t.db.query<Record<string, string | null>>(
      `SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at, username, host(ip) AS ip,
              user_agent, device_id, details::text AS details FROM audit_log WHERE seq = $1`,
      [c.seq],
    );
    assert.deepEqual(rows[0], {
      at: c.occurredAt,
      username: 'Zoë\r\nInjected: yes',
      ip: '2001:db8::42',
      user_agent: '',
      device_id: null,
      details: '{"z":1,"a":[1.5,"x"]}',
    });
    await writer.close();
  });

  it('when a record is invalid, then only its caller is refused and the batch around it commits', async () => {
    const writer = createChainWriter(t.db, { batchMax: 32, writeTimeoutMs: 5000 });
    const before = (await chainShape(t)).n;
    const results = await Promise.allSettled([
      writer.recordEvent(sampleEvent(1)),
      writer.recordEvent({ eventType: 'BAD TYPE' as never, outcome: 'failure' }),
      writer.recordEvent(sampleEvent(2)),
    ]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.equal((await chainShape(t)).n, before + 2);
    await writer.close();
    await assert.rejects(writer.recordEvent(sampleEvent(3)), { code: 'ERR_AUDIT_CLOSED' });
  });

  it('when two writers\' clocks disagree by a second, then occurred_at still never decreases along seq, and the chain verifies', async () => {
    const { rows: head } = await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log');
    const from = head[0]!.n;
    // The clocks of two gateway hosts: one a second behind the other, each monotonic on its own.
    const clockAt = (offsetMs: number) => {
      let us = 0;
      return () => new Date(Date.now() + offsetMs).toISOString().replace('Z', `${String((us = (us + 1) % 1000)).padStart(3, '0')}Z`);
    };
    const ahead = createChainWriter(t.open(), { batchMax: 16, writeTimeoutMs: 10_000, clock: clockAt(0) });
    const behind = createChainWriter(t.open(), { batchMax: 16, writeTimeoutMs: 10_000, clock: clockAt(-1000) });
    for (let round = 0; round < 5; round++) {
      await Promise.all(Array.from({ length: 20 }, (_, i) => ahead.recordEvent(sampleEvent(i))));
      await Promise.all(Array.from({ length: 20 }, (_, i) => behind.recordEvent(sampleEvent(i))));
    }
    await Promise.all([ahead.close(), behind.close()]);
    const { rows } = await t.db.query<{ backwards: number; n: number }>(
      `SELECT count(*) FILTER (WHERE occurred_at < prev_at)::int AS backwards, count(*)::int AS n
         FROM (SELECT occurred_at, lag(occurred_at) OVER (ORDER BY seq) AS prev_at FROM audit_log WHERE seq > $1) s`,
      [from],
    );
    assert.deepEqual(rows[0], { backwards: 0, n: 200 });
    const result = await verifyChain(t.db, { trustedKeys: new Map() });
    assert.equal(result.valid, true, JSON.stringify(result));
  });
});
