import type { Queryable } from '../db/database.js';
import { FollowGapError, LeaseLostError, readCursor, readRecordsAfter, saveCursor, type Lease, type StoredRecord } from '../audit/follow.js';
import type { Formatted } from './formats/index.js';
import type { Sink } from './sink.js';

/**
 * One sink's loop: reads the records after the sink's own cursor (`forward:<name>`) a page at a
 * time, hands each page to the sink, and moves the cursor past a page only once the sink
 * delivered it and every page before it. It reads and formats the next page while the sink is
 * still sending the last (follow.ts's `follow()` does one page at a time, which would leave the
 * sink idle while the database is read), and up to the sink's `depth` pages are in flight.
 *
 * Any failure — the sink down or refusing, the database unreachable — ends the pass: the loop
 * waits with exponential backoff and jitter, then starts again from the cursor, so a page is
 * resent until it is delivered and never skipped (at least once, in seq order). Each sink has its
 * own loop, so one that is down delays no other. Only a lost lease ends the loop (another process
 * forwards now); records archived before they were delivered stop this sink at the gap, unless
 * the operator accepted that gap (`--accept-gap`).
 */

export interface SinkLoopOptions {
  db: Pick<Queryable, 'query'>;
  lease: Lease;
  sink: Sink;
  /** Records per page (the sink's batch_size). */
  pageSize: number;
  /** Wait between polls once caught up. */
  idleMs: number;
  retry: { initial_ms: number; max_ms: number };
  signal: AbortSignal;
  format: (records: StoredRecord[]) => Formatted[];
  /** When true, a gap (records archived before delivery) is skipped with a warning instead of stopping the sink. */
  acceptGap: boolean;
  events: SinkLoopEvents;
}

/** What the loop tells the forwarder's metrics and log. */
export interface SinkLoopEvents {
  delivered(count: number, lastSeq: number): void;
  failed(err: unknown, attempt: number, retryInMs: number): void;
  gap(err: FollowGapError, accepted: boolean): void;
}

/** The cursor's name for a sink. */
export const cursorName = (sink: string): string => `forward:${sink}`;

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });

/** Exponential backoff with jitter: between half and all of min(max, initial·2^(attempt−1)). */
export function backoffMs(attempt: number, retry: { initial_ms: number; max_ms: number }, random: () => number = Math.random): number {
  const ceiling = Math.min(retry.max_ms, retry.initial_ms * 2 ** Math.min(attempt - 1, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

interface InFlight {
  last: number;
  count: number;
  done: Promise<void>;
}

/** One pass from the cursor; returns when the signal aborts, throws on the first failure. */
async function pass(o: SinkLoopOptions, cursor: string): Promise<void> {
  let at = await readCursor(o.db, cursor);
  const inflight: InFlight[] = [];
  const settleOldest = async (): Promise<void> => {
    const first = inflight.shift()!;
    await first.done;
    await saveCursor(o.db, o.lease, cursor, first.last);
    o.events.delivered(first.count, first.last);
  };
  let next = readRecordsAfter(o.db, at, o.pageSize);
  try {
    while (!o.signal.aborted) {
      let records: StoredRecord[];
      try {
        records = await next;
      } catch (err) {
        // The read failed (a gap, the database away): what is already on its way still counts.
        while (inflight.length > 0) await settleOldest();
        throw err;
      }
      if (records.length === 0) {
        while (inflight.length > 0) await settleOldest();
        await sleep(o.idleMs, o.signal);
        next = readRecordsAfter(o.db, at, o.pageSize);
        continue;
      }
      at = records[records.length - 1]!.seq;
      next = readRecordsAfter(o.db, at, o.pageSize);
      next.catch(() => {}); // awaited on the next turn; a failure then ends the pass
      const messages = o.format(records);
      while (inflight.length >= o.sink.depth) await settleOldest();
      const done = o.sink.send(messages, records);
      done.catch(() => {}); // awaited in order by settleOldest
      inflight.push({ last: at, count: records.length, done });
    }
    while (inflight.length > 0) await settleOldest();
  } catch (err) {
    // Later pages may still be on their way; none may move the cursor past the one that failed.
    await Promise.allSettled(inflight.map((f) => f.done));
    throw err;
  }
}

/** Runs the sink until the signal aborts; throws only {@link LeaseLostError}. */
export async function runSinkLoop(o: SinkLoopOptions): Promise<void> {
  const cursor = cursorName(o.sink.name);
  let attempt = 0;
  const events: SinkLoopEvents = {
    ...o.events,
    delivered(count, lastSeq) {
      attempt = 0;
      o.events.delivered(count, lastSeq);
    },
  };
  while (!o.signal.aborted) {
    try {
      await pass({ ...o, events }, cursor);
      return;
    } catch (err) {
      if (err instanceof LeaseLostError) throw err;
      if (err instanceof FollowGapError) {
        o.events.gap(err, o.acceptGap);
        if (o.acceptGap) {
          try {
            await saveCursor(o.db, o.lease, cursor, err.found - 1);
            continue;
          } catch (saveError) {
            if (saveError instanceof LeaseLostError) throw saveError;
          }
        }
        await sleep(o.retry.max_ms, o.signal);
        continue;
      }
      attempt += 1;
      const wait = backoffMs(attempt, o.retry);
      o.events.failed(err, attempt, wait);
      await sleep(wait, o.signal);
    }
  }
}
