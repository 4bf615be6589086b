import type { Queryable } from '../db/database.js';
import type { ChainRecord } from './canonical.js';
import { delayUnlessAborted } from '../delay.js';

/**
 * Following the audit log in seq order, for the processes that act on each record after it is
 * committed — the SIEM forwarder's sinks and the alert engine — with one worker per cluster and
 * durable, forward-only cursors (migration 011).
 *
 * Records become visible in seq order with no gap: every writer appends under the chain's
 * advisory lock, so a record commits only after every record before it. A follower that reads
 * `seq > cursor` therefore never skips one; a gap means records left the database (archived) before
 * the follower reached them, and {@link readRecordsAfter} says so rather than skipping.
 *
 * One worker per cluster is a lease in `audit_leases`, not a session advisory lock: a holder that
 * is stopped (SIGSTOP, a frozen VM) keeps its connection and so its advisory lock forever, while a
 * lease runs out and a standby takes over. The lease's epoch fences the cursors, so the stalled
 * holder cannot move one when it resumes: records may be handled twice (at least once), never lost.
 */

/** A committed record as followers see it: the hashed fields (canonical text), its hashes and account. */
export interface StoredRecord extends ChainRecord {
  /** Hex SHA-256 chain hash. */
  hash: string;
  prev_hash: string;
  account: string | null;
}

/** Records before the cursor's next one are no longer in the database (they were archived). */
export class FollowGapError extends Error {
  readonly code = 'ERR_AUDIT_FOLLOW_GAP';
  constructor(
    readonly expected: number,
    readonly found: number,
  ) {
    super(`record ${expected} is no longer in the database (the next one there is ${found}): it was archived before it was handled`);
    this.name = 'FollowGapError';
  }
}

const FOLLOW_SELECT = `
  SELECT seq, event_id::text AS event_id, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_at,
         event_type, outcome, reason, username, user_id::text AS user_id, host(ip) AS ip, user_agent, device_id, mfa_method,
         session_id::text AS session_id, request_id, actor_id::text AS actor_id, details::text AS details,
         encode(hash, 'hex') AS hash, encode(prev_hash, 'hex') AS prev_hash, account
    FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2`;

/**
 * Up to `limit` records after `afterSeq`, in seq order and without a hole: a page that has one is
 * cut before it (the next read then reports it). Throws {@link FollowGapError} when the next record is gone.
 */
export async function readRecordsAfter(db: Pick<Queryable, 'query'>, afterSeq: number, limit: number): Promise<StoredRecord[]> {
  const { rows } = await db.query<StoredRecord>(FOLLOW_SELECT, [afterSeq, limit]);
  const first = rows[0];
  if (first && first.seq !== afterSeq + 1) throw new FollowGapError(afterSeq + 1, first.seq);
  const hole = rows.findIndex((row, i) => row.seq !== afterSeq + 1 + i);
  return hole === -1 ? rows : rows.slice(0, hole);
}

/** The seq of the newest record (0 for an empty log): followers report their lag against it. */
export async function readHeadSeq(db: Pick<Queryable, 'query'>): Promise<number> {
  const { rows } = await db.query<{ seq: number }>('SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1');
  return rows[0]?.seq ?? 0;
}

/** A held lease: who holds it and since which takeover. */
export interface Lease {
  readonly name: string;
  readonly holder: string;
  readonly epoch: number;
}

/**
 * Takes the lease `name` for `holder` for `ttlMs`, or renews it when `holder` has it already;
 * undefined while another holder's lease is still running.
 */
export async function acquireLease(db: Pick<Queryable, 'query'>, name: string, holder: string, ttlMs: number): Promise<Lease | undefined> {
  const { rows } = await db.query<{ epoch: number }>(
    `INSERT INTO audit_leases (name, holder, epoch, lease_until)
     VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond')
     ON CONFLICT (name) DO UPDATE
        SET holder = EXCLUDED.holder,
            epoch = CASE WHEN audit_leases.holder = EXCLUDED.holder AND audit_leases.lease_until >= clock_timestamp()
                         THEN audit_leases.epoch ELSE audit_leases.epoch + 1 END,
            lease_until = EXCLUDED.lease_until
      WHERE audit_leases.holder = EXCLUDED.holder OR audit_leases.lease_until < clock_timestamp()
     RETURNING epoch`,
    [name, holder, ttlMs],
  );
  const row = rows[0];
  return row ? { name, holder, epoch: row.epoch } : undefined;
}

/** Extends a held lease; false when it was lost (it ran out and another holder took it). */
export async function renewLease(db: Pick<Queryable, 'query'>, lease: Lease, ttlMs: number): Promise<boolean> {
  const { rows } = await db.query(
    `UPDATE audit_leases SET lease_until = clock_timestamp() + $4 * interval '1 millisecond'
      WHERE name = $1 AND holder = $2 AND epoch = $3 AND lease_until >= clock_timestamp() RETURNING 1`,
    [lease.name, lease.holder, lease.epoch, ttlMs],
  );
  return rows.length > 0;
}

/** Gives a held lease up at once, so a standby takes over without waiting for it to run out. */
export async function releaseLease(db: Pick<Queryable, 'query'>, lease: Lease): Promise<void> {
  await db.query(
    `UPDATE audit_leases SET lease_until = clock_timestamp() - interval '1 millisecond' WHERE name = $1 AND holder = $2 AND epoch = $3`,
    [lease.name, lease.holder, lease.epoch],
  );
}

/** The cursor `name` (0 before its first save). */
export async function readCursor(db: Pick<Queryable, 'query'>, name: string): Promise<number> {
  const { rows } = await db.query<{ seq: number }>('SELECT seq FROM audit_cursors WHERE name = $1', [name]);
  return rows[0]?.seq ?? 0;
}

/** Every cursor whose name starts with `prefix`, by name. */
export async function readCursors(db: Pick<Queryable, 'query'>, prefix: string): Promise<Map<string, number>> {
  const { rows } = await db.query<{ name: string; seq: number }>(
    `SELECT name, seq FROM audit_cursors WHERE left(name, length($1)) = $1 ORDER BY name`,
    [prefix],
  );
  return new Map(rows.map((r) => [r.name, r.seq]));
}

/** The lease was lost: another process does this work now. */
export class LeaseLostError extends Error {
  readonly code = 'ERR_AUDIT_LEASE_LOST';
  constructor(lease: Lease) {
    super(`the ${lease.name} lease (epoch ${lease.epoch}) is held by another process now`);
    this.name = 'LeaseLostError';
  }
}

/**
 * Moves cursor `name` forward to `seq`, only while `lease` is still held and running (one
 * statement: the check and the move are atomic). Throws {@link LeaseLostError} otherwise.
 */
export async function saveCursor(db: Pick<Queryable, 'query'>, lease: Lease, name: string, seq: number): Promise<void> {
  const { rows } = await db.query(
    `WITH held AS (SELECT 1 FROM audit_leases WHERE name = $1 AND holder = $2 AND epoch = $3 AND lease_until >= clock_timestamp())
     INSERT INTO audit_cursors (name, seq) SELECT $4, $5 FROM held
     ON CONFLICT (name) DO UPDATE SET seq = greatest(audit_cursors.seq, EXCLUDED.seq), updated_at = now()
     RETURNING 1`,
    [lease.name, lease.holder, lease.epoch, name, seq],
  );
  if (rows.length === 0) throw new LeaseLostError(lease);
}

export interface LeadOptions {
  /** The work's lease name, one per kind of work in a cluster. */
  name: string;
  /** This process (host and pid, say): shown in the lease row. */
  holder: string;
  /** How long a lease lasts; it is renewed every third of that. */
  ttlMs: number;
  signal: AbortSignal;
  /** Told whenever this process starts or stops leading. */
  onLeading?: (leading: boolean) => void;
  /** Told about a failed lease query (the database is down, say); it is retried. */
  onError?: (err: unknown) => void;
}

/**
 * Runs `work` whenever this process holds the lease: stands by while another holder's lease
 * runs, takes over when it runs out, renews while working, and aborts `work`'s signal as soon as
 * the lease is lost or `options.signal` aborts. Resolves once `options.signal` aborts (releasing
 * the lease), never rejects: `work` failing only ends this term, after which the lease is taken again.
 */
export async function lead(db: Pick<Queryable, 'query'>, options: LeadOptions, work: (lease: Lease, signal: AbortSignal) => Promise<void>): Promise<void> {
  const { signal } = options;
  while (!signal.aborted) {
    let lease: Lease | undefined;
    try {
      lease = await acquireLease(db, options.name, options.holder, options.ttlMs);
    } catch (err) {
      options.onError?.(err);
    }
    if (!lease) {
      await delayUnlessAborted(options.ttlMs / 3, signal);
      continue;
    }
    const term = new AbortController();
    const stop = () => term.abort();
    signal.addEventListener('abort', stop, { once: true });
    // Stopped while the lease was being taken: the listener came too late to hear it.
    if (signal.aborted) term.abort();
    const held = lease;
    const renewer = setInterval(() => {
      renewLease(db, held, options.ttlMs).then(
        (ok) => {
          if (!ok) term.abort(new LeaseLostError(held));
        },
        (err: unknown) => options.onError?.(err),
      );
    }, options.ttlMs / 3);
    options.onLeading?.(true);
    try {
      await work(held, term.signal);
    } catch (err) {
      if (!(err instanceof LeaseLostError)) options.onError?.(err);
    } finally {
      clearInterval(renewer);
      signal.removeEventListener('abort', stop);
      options.onLeading?.(false);
    }
    if (signal.aborted) {
      await releaseLease(db, held).catch((err: unknown) => options.onError?.(err));
      return;
    }
    await delayUnlessAborted(Math.min(1000, options.ttlMs / 3), signal);
  }
}

export interface FollowOptions {
  /** The cursor this follower advances. */
  cursor: string;
  lease: Lease;
  /** Most records handed over at once. */
  pageSize: number;
  /** Wait between polls once caught up. */
  idleMs: number;
  signal: AbortSignal;
}

/**
 * Hands the records after cursor `options.cursor` to `handle`, a page at a time in seq order,
 * and moves the cursor past each page once `handle` resolves; polls every `idleMs` once caught
 * up. Returns when the signal aborts. A rejected `handle` is not skipped: it propagates, and the
 * caller retries from the same cursor. Throws {@link LeaseLostError} when the lease is gone.
 */
export async function follow(
  db: Pick<Queryable, 'query'>,
  options: FollowOptions,
  handle: (records: StoredRecord[]) => Promise<void>,
): Promise<void> {
  let at = await readCursor(db, options.cursor);
  while (!options.signal.aborted) {
    const records = await readRecordsAfter(db, at, options.pageSize);
    if (records.length === 0) {
      await delayUnlessAborted(options.idleMs, options.signal);
      continue;
    }
    await handle(records);
    const last = records[records.length - 1]!.seq;
    await saveCursor(db, options.lease, options.cursor, last);
    at = last;
  }
}
