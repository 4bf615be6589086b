import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { AuditUnavailableError, createChainWriter } from '../../src/audit/chain-writer.js';
import type { Database, Queryable } from '../../src/db/database.js';
import { currentDeadline, Deadline, runWithDeadline } from '../../src/deadline.js';
import { sampleEvent } from '../helpers/events.js';

/**
 * A database whose transactions wait for `open()`; it records under which deadline each ran and
 * answers the writer's statements (lock, head, insert) as an empty chain would.
 */
function gatedDatabase() {
  const newGate = () => {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    return { promise, resolve };
  };
  let gate = newGate();
  const ranUnder: Array<Deadline | undefined> = [];
  // The batch's statement stores its records and appends to the Merkle tiles, and returns the tiles' widths.
  const tiles = new Map<string, number>();
  const tx: Queryable = {
    query: <R>(text: string, params?: readonly unknown[]) => {
      if (!(text.includes('RETURNING level, idx') || text.includes('audit_append(')) || !params) return Promise.resolve({ rows: [] as R[] });
      const [levels, indexes, hashes] = params.slice(-3) as [number[], number[], Buffer[]];
      const rows = levels.map((level, i) => {
        const key = `${level}/${indexes[i]}`;
        tiles.set(key, (tiles.get(key) ?? 0) + hashes[i]!.length);
        return { level, idx: indexes[i], n: tiles.get(key) };
      });
      return Promise.resolve({ rows: rows as R[] });
    },
    exec: () => Promise.resolve(),
  };
  const db: Database = {
    kind: 'postgres',
    ...tx,
    // The writer's one-statement append (migration 012) is its own transaction: gated like one.
    async query<R>(text: string, params?: readonly unknown[]) {
      if (!text.includes('audit_append(')) return tx.query<R>(text, params);
      ranUnder.push(currentDeadline());
      await gate.promise;
      return tx.query<R>(text, params);
    },
    async transaction<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
      ranUnder.push(currentDeadline());
      await gate.promise;
      return fn(tx);
    },
    // The writer never copies: a call would be a bug.
    copyOut: () => {
      throw new Error('not used by the writer');
    },
    close: () => Promise.resolve(),
  };
  return {
    db,
    ranUnder,
    open() {
      gate.resolve();
      gate = newGate();
    },
  };
}

describe('request deadline', () => {
  it('when it passes before the request answered, then it expires once, aborts its signal, and a later claim fails', () => {
    let answered = false;
    const deadline = new Deadline(5000, () => answered);
    assert.ok(deadline.remainingMs() > 4000 && deadline.remainingMs() <= 5000);
    assert.ok(deadline.timeForWorkMs() <= deadline.remainingMs() - 499, 'a reserve is kept for the audit record');
    assert.equal(deadline.expire(), true);
    assert.equal(deadline.signal.aborted, true);
    assert.equal(deadline.expire(), false);
    assert.equal(deadline.claim(), false);
    assert.equal(deadline.remainingMs(), 0);
    answered = true;
    assert.equal(deadline.remainingMs(), 0, 'an expired deadline stays expired');
  });

  it('when the request answers by itself (headers sent, or a claimed success), then the deadline never fires and bounds nothing', () => {
    let answered = false;
    const streaming = new Deadline(50, () => answered);
    answered = true;
    assert.equal(streaming.expire(), false);
    assert.equal(streaming.signal.aborted, false);
    assert.equal(streaming.remainingMs(), Infinity);

    const claimed = new Deadline(50);
    assert.equal(claimed.claim(), true);
    assert.equal(claimed.expire(), false);
    assert.equal(claimed.signal.aborted, false);
  });
});

describe('audit writer under a request deadline', () => {
  it('when a record is made for a request, then its wait in the queue ends with the deadline, before writeTimeoutMs', async () => {
    const gated = gatedDatabase();
    const writer = createChainWriter(gated.db, { batchMax: 8, writeTimeoutMs: 10_000 });
    const first = writer.recordEvent(sampleEvent(1)); // in a transaction, waiting at the gate
    const deadline = new Deadline(100);
    const started = performance.now();
    const queued = runWithDeadline(deadline, () => writer.recordEvent(sampleEvent(2)));
    setTimeout(() => deadline.expire(), 100);
    await assert.rejects(queued, (err: unknown) => err instanceof AuditUnavailableError && /deadline/.test(err.message));
    assert.ok(performance.now() - started < 1000);
    // Made after the deadline: refused at once, never queued.
    await assert.rejects(
      runWithDeadline(deadline, () => writer.recordEvent(sampleEvent(3))),
      AuditUnavailableError,
    );
    gated.open();
    assert.equal((await first).seq, 1);
    await writer.flush();
    assert.equal(writer.stats().committed, 1, 'the records that gave up were never written');
    await writer.close();
  });

  it('when a request starts the writer, then its transactions run free of that request deadline', async () => {
    const gated = gatedDatabase();
    const writer = createChainWriter(gated.db, { batchMax: 1, writeTimeoutMs: 10_000 });
    const deadline = new Deadline(10_000);
    const records = runWithDeadline(deadline, () => [writer.recordEvent(sampleEvent(1)), writer.recordEvent(sampleEvent(2))]);
    for (let i = 0; i < 2; i++) {
      await delay(10);
      gated.open();
    }
    await Promise.all(records);
    assert.deepEqual(gated.ranUnder, [undefined, undefined]);
    await writer.close();
  });

  it('when a record passes signal null, then only writeTimeoutMs bounds it', async () => {
    const gated = gatedDatabase();
    const writer = createChainWriter(gated.db, { batchMax: 8, writeTimeoutMs: 10_000 });
    const first = writer.recordEvent(sampleEvent(1));
    const deadline = new Deadline(10);
    const unbounded = runWithDeadline(deadline, () => writer.recordEvent(sampleEvent(2), { signal: null }));
    deadline.expire();
    await delay(20);
    gated.open();
    await first;
    await delay(10); // the next batch reaches the gate
    gated.open();
    await unbounded; // written although its request's deadline passed while it waited
    await writer.close();
  });
});
