import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import {
  FollowGapError, LeaseLostError, acquireLease, follow, lead, readCursor, readRecordsAfter, renewLease, saveCursor,
  type Lease,
} from '../../src/audit/follow.js';
import { asSuperuser, createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { sampleEvent } from '../helpers/events.js';

let t: TestDatabase;
before(async () => {
  t = await createTestDatabase();
  const writer = createChainWriter(t.db, { batchMax: 64, writeTimeoutMs: 10_000 });
  await Promise.all(Array.from({ length: 50 }, (_, i) => writer.recordEvent(sampleEvent(i))));
  await writer.close();
});
after(() => t.drop());

test('one holder at a time: a standby takes over only once the running lease has run out, with a new epoch', async () => {
  const a = await acquireLease(t.db, 'work-a', 'host-a', 300);
  assert.ok(a);
  assert.equal(await acquireLease(t.db, 'work-a', 'host-b', 300), undefined, 'a second holder is refused while the lease runs');
  const renewed = await acquireLease(t.db, 'work-a', 'host-a', 300);
  assert.equal(renewed?.epoch, a.epoch, 'the holder renewing keeps its epoch');
  await new Promise((r) => setTimeout(r, 400));
  const b = await acquireLease(t.db, 'work-a', 'host-b', 300);
  assert.ok(b && b.epoch === a.epoch + 1, 'the standby takes over with the next epoch');
  assert.equal(await renewLease(t.db, a, 300), false, 'the old holder cannot renew a lease it lost');
});

test('a holder that stalled past its lease cannot move the cursor when it wakes up (fencing)', async () => {
  const stalled = (await acquireLease(t.db, 'work-b', 'host-a', 200))!;
  await saveCursor(t.db, stalled, 'work-b:sink', 10);
  await new Promise((r) => setTimeout(r, 300));
  const next = (await acquireLease(t.db, 'work-b', 'host-b', 5000))!;
  await saveCursor(t.db, next, 'work-b:sink', 20);
  await assert.rejects(saveCursor(t.db, stalled, 'work-b:sink', 40), LeaseLostError);
  assert.equal(await readCursor(t.db, 'work-b:sink'), 20);
});

test('a cursor never moves backwards, through the API or by a direct UPDATE', async () => {
  const lease = (await acquireLease(t.db, 'work-c', 'host-a', 5000))!;
  await saveCursor(t.db, lease, 'work-c:sink', 30);
  await saveCursor(t.db, lease, 'work-c:sink', 5);
  assert.equal(await readCursor(t.db, 'work-c:sink'), 30);
  await assert.rejects(t.db.query(`UPDATE audit_cursors SET seq = 1 WHERE name = 'work-c:sink'`), /only moves forward/);
});

test('follow hands over every record once, in seq order, across pages, and resumes after its cursor', async () => {
  const lease = (await acquireLease(t.db, 'work-d', 'host-a', 5000))!;
  const seen: number[] = [];
  const stop = new AbortController();
  await follow(t.db, { cursor: 'work-d:x', lease, pageSize: 7, idleMs: 20, signal: stop.signal }, (records) => {
    seen.push(...records.map((r) => r.seq));
    if (seen.length >= 30) stop.abort();
    return Promise.resolve();
  });
  assert.deepEqual(seen, Array.from({ length: 35 }, (_, i) => i + 1), 'pages of 7 up to the one that reached 30');
  const rest: number[] = [];
  const stop2 = new AbortController();
  await follow(t.db, { cursor: 'work-d:x', lease, pageSize: 100, idleMs: 20, signal: stop2.signal }, (records) => {
    rest.push(...records.map((r) => r.seq));
    stop2.abort();
    return Promise.resolve();
  });
  assert.deepEqual(rest, Array.from({ length: 15 }, (_, i) => i + 36));
});

test('a failed handler is not skipped: the cursor stays and the same page comes again', async () => {
  const lease = (await acquireLease(t.db, 'work-e', 'host-a', 5000))!;
  let calls = 0;
  await assert.rejects(
    follow(t.db, { cursor: 'work-e:x', lease, pageSize: 5, idleMs: 20, signal: new AbortController().signal }, () => {
      calls += 1;
      return Promise.reject(new Error('sink down'));
    }),
    /sink down/,
  );
  assert.equal(calls, 1);
  assert.equal(await readCursor(t.db, 'work-e:x'), 0);
});

test('records gone from the database before the follower reached them are a gap, not a skip', async () => {
  await asSuperuser(t.name, 'DELETE FROM audit_log WHERE seq BETWEEN 41 AND 42');
  await assert.rejects(readRecordsAfter(t.db, 40, 10), (err: unknown) => err instanceof FollowGapError && err.expected === 41 && err.found === 43);
  // A hole inside a page: the page stops before it, and the next read reports it.
  const page = await readRecordsAfter(t.db, 35, 10);
  assert.deepEqual(page.map((r) => r.seq), [36, 37, 38, 39, 40]);
});

test('lead: one of two contenders works; when it stops, the other takes over', async () => {
  const stopA = new AbortController();
  const stopB = new AbortController();
  const terms: string[] = [];
  const work = (who: string) => async (_lease: Lease, signal: AbortSignal) => {
    terms.push(who);
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  };
  const a = lead(t.db, { name: 'work-f', holder: 'a', ttlMs: 300, signal: stopA.signal }, work('a'));
  await new Promise((r) => setTimeout(r, 100));
  const b = lead(t.db, { name: 'work-f', holder: 'b', ttlMs: 300, signal: stopB.signal }, work('b'));
  await new Promise((r) => setTimeout(r, 400));
  assert.deepEqual(terms, ['a'], 'only the first contender works while its lease is renewed');
  stopA.abort();
  await a;
  for (let i = 0; i < 40 && terms.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(terms, ['a', 'b'], 'the standby takes over once the holder released the lease');
  stopB.abort();
  await b;
});

test('lead: stopped while it is still taking the lease, it returns and releases it', async () => {
  const stop = new AbortController();
  let worked = false;
  const running = lead(t.db, { name: 'work-g', holder: 'a', ttlMs: 5000, signal: stop.signal }, async (_lease, signal) => {
    worked = true;
    if (!signal.aborted) await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  });
  stop.abort();
  const outcome = await Promise.race([running.then(() => 'returned'), new Promise((r) => setTimeout(r, 3000, 'still running'))]);
  assert.equal(outcome, 'returned');
  assert.ok(worked);
  assert.ok(await acquireLease(t.db, 'work-g', 'b', 5000), 'released for the next holder');
});
