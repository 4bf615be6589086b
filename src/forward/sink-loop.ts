import type { Queryable } from '../db/database.js';
import { delayUnlessAborted } from '../delay.js';
import { FollowGapError, LeaseLostError, readCursor, readRecordsAfter, saveCursor, type Lease, type StoredRecord } from '../audit/follow.js';
import type { Formatted } from './formats/index.js';
import type { Sink } from './sink.js';

/**
 * One sink's loop: reads the records after the sink's own cursor (`forward:<name>`) a page at a
 * time, hands each page to the sink, and moves the cursor past a page only once the sink
 * delivered it and every page before it. It reads the next pages and formats the next one while
 * the sink is still sending (follow.ts's `follow()` does one page at a time, which would leave the
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

/**
 * Pages read ahead while the sink sends: seqs are dense, so after a full page the next ones start
 * at known seqs and are read in parallel (the read, not the send, is the slowest step). After a
 * short page (the head is near) only one is read.
 */
const READ_AHEAD = 3;

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
  /** Pages being read, in seq order; each starts after the one before (`after`, a guess until that one is in). */
  const ahead: Array<{ after: number; rows: Promise<StoredRecord[]> }> = [];
  const readAhead = (upTo: number): void => {
    while (ahead.length < upTo) {
      const after = ahead.length > 0 ? ahead[ahead.length - 1]!.after + o.pageSize : at;
      const rows = readRecordsAfter(o.db, after, o.pageSize);
      rows.catch(() => {}); // awaited in turn, or dropped when its guess was wrong
      ahead.push({ after, rows });
    }
  };
  try {
    readAhead(1);
    while (!o.signal.aborted) {
      const page = ahead.shift()!;
      let records: StoredRecord[];
      try {
        records = await page.rows;
      } catch (err) {
        // The read failed (a gap, the database away): what is already on its way still counts.
        while (inflight.length > 0) await settleOldest();
        throw err;
      }
      if (records.length === 0) {
        ahead.length = 0;
        while (inflight.length > 0) await settleOldest();
        await delayUnlessAborted(o.idleMs, o.signal);
        readAhead(1);
        continue;
      }
      // readRecordsAfter checks only the first record: a page with a hole further on (records archived
      // out of the middle) is cut at the hole, so the next read starts there and reports the gap.
      let dense = 1;
      while (dense < records.length && records[dense]!.seq === records[dense - 1]!.seq + 1) dense += 1;
      if (dense < records.length) records = records.slice(0, dense);
      const last = records[records.length - 1]!.seq;
      const full = records.length === o.pageSize && last === page.after + o.pageSize;
      at = last;
      if (!full) ahead.length = 0; // the pages after were guessed from a full one
      readAhead(full ? READ_AHEAD : 1);
      const messages = o.format(records);
      while (inflight.length >= o.sink.depth) await settleOldest();
      const done = o.sink.send(messages, records);
      done.catch(() => {}); // awaited in order by settleOldest
      inflight.push({ last, count: records.length, done });
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
        await delayUnlessAborted(o.retry.max_ms, o.signal);
        continue;
      }
      attempt += 1;
      const wait = backoffMs(attempt, o.retry);
      o.events.failed(err, attempt, wait);
      await delayUnlessAborted(wait, o.signal);
    }
  }
}
