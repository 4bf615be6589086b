import crypto from 'node:crypto';
import type { Database, Queryable } from '../db/database.js';
import { AUDIT_CHAIN_LOCK } from '../db/advisory-locks.js';
import { currentDeadline, outsideDeadline } from '../deadline.js';
import { normalizeUsername } from '../users/usernames.js';
import { GENESIS_HASH, recordHashes, type ChainRecord } from './canonical.js';
import { HASH_SIZE } from './merkle.js';
import { createMicrosecondClock, sqlTimestamp } from './clock.js';
import { toChainRecord, type AuditEvent } from './record.js';
import { TreeCorruptError, checkTileWidths, extendFromLog, readTreeEdge, tileParams, type TreeEdge } from './tree.js';

export type AuditErrorCode = 'ERR_AUDIT_UNAVAILABLE' | 'ERR_AUDIT_CLOSED';

/** The record could not be made durable; callers answer 503 `audit_unavailable` and never proceed. */
export class AuditUnavailableError extends Error {
  constructor(
    readonly code: AuditErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AuditUnavailableError';
  }
}

/** A record that is committed to the chain. */
export interface CommittedRecord {
  readonly seq: number;
  readonly eventId: string;
  readonly occurredAt: string;
  readonly hash: Buffer;
}

/** What one committed batch held, for checkpoints and metrics. */
export interface CommittedBatch {
  count: number;
  durationMs: number;
  records: ReadonlyArray<{ eventType: string; outcome: string }>;
}

/** The last record of the chain as a writer committed it. */
export interface ChainHead {
  readonly seq: number;
  readonly hash: Buffer;
}

export interface ChainWriterStats {
  queued: number;
  committed: number;
  batches: number;
  lastBatchSize: number;
  lastCommitMs: number;
  lastError: string | undefined;
  closed: boolean;
}

export interface RecordOptions {
  /**
   * The record stops waiting in the queue when this aborts: it is then never written and the call
   * rejects. Default: the deadline of the request the call is made for (src/deadline.ts), so a
   * request waits for its record no longer than it has left; `null`: only `writeTimeoutMs`.
   * A record already in a transaction is bounded by the database timeouts instead.
   */
  signal?: AbortSignal | null;
}

export interface ChainWriter {
  /** Appends one record; resolves only once it is committed, rejects with {@link AuditUnavailableError} otherwise. */
  recordEvent(event: AuditEvent, options?: RecordOptions): Promise<CommittedRecord>;
  /** Resolves when every record queued so far has been written or rejected. */
  flush(): Promise<void>;
  /** Refuses new records and waits for the queued ones. */
  close(): Promise<void>;
  stats(): ChainWriterStats;
  /** Called after each committed batch with the new head and what the batch held. */
  onCommit(listener: (head: ChainHead, batch: CommittedBatch) => void): void;
}

export interface ChainWriterOptions {
  /** Most records in one transaction. */
  batchMax: number;
  /** Longest a record may wait in the queue before it is rejected; a started transaction is bounded by the database timeouts. */
  writeTimeoutMs: number;
  /** Most records waiting at once; past it, new records are rejected at once rather than piling up. */
  maxQueued?: number;
  clock?: () => string;
}

interface Pending {
  record: Omit<ChainRecord, 'seq'>;
  resolve: (committed: CommittedRecord) => void;
  reject: (err: Error) => void;
  /** Stops the queue-wait bounds (timer, signal) once the record is taken into a transaction. */
  taken: () => void;
}

/**
 * The writer's PostgreSQL sessions (runtime.ts opens its pool with these). A batch usually appends
 * in one statement the server commits on its own (migration 012), so a gateway that stops (SIGSTOP,
 * a frozen VM, a network partition) cannot hold the chain's lock then. The slow path — after
 * another process wrote — holds the lock across a few round trips; PostgreSQL ends a session that
 * stays idle inside its transaction for 2 s, which rolls it back and frees the lock, and a writer
 * waits at most 3 s for the lock — longer than a stopped holder can keep it, so waiting out a
 * stopped peer succeeds rather than failing.
 */
export const AUDIT_SESSION = { idleInTransactionTimeoutMs: 2000, lockTimeoutMs: 3000 } as const;

/**
 * The record columns sent as one array each; `seq` and `prev_hash` are not sent (the server
 * derives them from the expected head and the hashes, migration 014), the hashes go as one bytea.
 * `account` is derived from `username` and not hashed (migration 007, docs/audit-chain.md).
 */
const COLUMNS = [
  'event_id', 'occurred_at', 'event_type', 'outcome', 'reason', 'username', 'user_id', 'ip', 'user_agent',
  'device_id', 'mfa_method', 'session_id', 'request_id', 'actor_id', 'details', 'account',
] as const;

/**
 * The whole append as one autocommitted statement (`audit_append` of migration 014): the lock, the
 * head check, the records, the tiles and the commit happen in the server without a round trip,
 * so a stopped gateway can never hold the chain's lock. No row back means nothing was stored.
 * Parameters: the lock, the expected head (seq, hash), the records' hashes, the columns, the tiles.
 */
const CALL_APPEND_SQL = `SELECT tile_level AS level, tile_idx AS idx, tile_width AS n
  FROM public.audit_append(${Array.from({ length: 5 + COLUMNS.length + 3 }, (_, i) => `$${i + 1}`).join(', ')})`;

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The head and its `occurred_at` (canonical text; '' for an empty log); callers hold {@link AUDIT_CHAIN_LOCK} when they will append after it. */
async function readHeadWithTime(db: Pick<Queryable, 'query'>): Promise<{ head: ChainHead; lastAt: string }> {
  const { rows } = await db.query<{ seq: number; hash: Uint8Array; at: string }>(
    `SELECT seq, hash, ${sqlTimestamp('occurred_at')} AS at FROM public.audit_log ORDER BY seq DESC LIMIT 1`,
  );
  const head = rows[0];
  return head ? { head: { seq: head.seq, hash: toBuffer(head.hash) }, lastAt: head.at } : { head: { seq: 0, hash: GENESIS_HASH }, lastAt: '' };
}

/** Where the log is (or will be, once the batches in flight commit): its head, the head's time and the tree's right edge. */
interface WriterState {
  head: ChainHead;
  /** `occurred_at` of the head: no record after it is stamped earlier. */
  lastAt: string;
  edge: TreeEdge;
}

/** A batch's rows, hashes and tiles, computed after a given state. */
type PreparedBatch = Awaited<ReturnType<typeof prepareBatch>>;

/** The batch's rows (one array per column, the hashes in one buffer), what it commits, and its tiles, chained after `head`. */
async function prepareBatch(records: ReadonlyArray<Omit<ChainRecord, 'seq'>>, state: WriterState) {
  const n = records.length;
  // One array per column, inserted with unnest: the statement's text and plan are the same for every batch.
  const columns = Object.fromEntries(COLUMNS.map((c) => [c, new Array<string | null>(n)])) as Record<(typeof COLUMNS)[number], Array<string | null>>;
  const hashes = Buffer.allocUnsafe(n * HASH_SIZE);
  const committed = new Array<CommittedRecord>(n);
  const leaves = new Array<Buffer>(n);
  let { seq, hash: prev } = state.head;
  let lastAt = state.lastAt;
  for (let i = 0; i < n; i++) {
    const r = records[i]!;
    seq += 1;
    // Time never goes backwards along the chain, even across processes whose clocks differ a
    // little: a record is stamped no earlier than the one before it (canonical times compare as text).
    const occurredAt = r.occurred_at < lastAt ? lastAt : r.occurred_at;
    lastAt = occurredAt;
    // Spelled out rather than spread: this loop runs for every record.
    const { hash, leaf } = recordHashes(prev, {
      seq, event_id: r.event_id, occurred_at: occurredAt, event_type: r.event_type, outcome: r.outcome, reason: r.reason,
      username: r.username, user_id: r.user_id, ip: r.ip, user_agent: r.user_agent, device_id: r.device_id,
      mfa_method: r.mfa_method, session_id: r.session_id, request_id: r.request_id, actor_id: r.actor_id, details: r.details,
    });
    leaves[i] = leaf;
    hashes.set(hash, i * HASH_SIZE);
    columns.event_id[i] = r.event_id;
    columns.occurred_at[i] = occurredAt;
    columns.event_type[i] = r.event_type;
    columns.outcome[i] = r.outcome;
    columns.reason[i] = r.reason;
    columns.username[i] = r.username;
    columns.user_id[i] = r.user_id;
    columns.ip[i] = r.ip;
    columns.user_agent[i] = r.user_agent;
    columns.device_id[i] = r.device_id;
    columns.mfa_method[i] = r.mfa_method;
    columns.session_id[i] = r.session_id;
    columns.request_id[i] = r.request_id;
    columns.actor_id[i] = r.actor_id;
    columns.details[i] = r.details;
    // The one normalization login and lockout use, so searches by account find every attempt.
    columns.account[i] = r.username === null ? null : normalizeUsername(r.username);
    committed[i] = { seq, eventId: r.event_id, occurredAt, hash };
    prev = hash;
  }
  const grown = await state.edge.append(leaves);
  return { hashes, columns: COLUMNS.map((c) => columns[c]), committed, tiles: grown.tiles, next: { head: { seq, hash: prev }, lastAt, edge: grown.edge } };
}

/**
 * Appends a batch after the head the writer expects, in one statement (see {@link CALL_APPEND_SQL}):
 * the advisory lock serializes every writer of every gateway process on this database, so `seq`
 * stays dense, the chain never forks, and the tree (audit_tiles) always covers exactly the records
 * committed. Undefined when the head was elsewhere and nothing was stored.
 */
async function appendAfter(db: Pick<Queryable, 'query'>, expected: WriterState, batch: PreparedBatch): Promise<WriterState | undefined> {
  const { rows } = await db.query<{ level: number; idx: number; n: number }>(CALL_APPEND_SQL, [
    ...AUDIT_CHAIN_LOCK, expected.head.seq, expected.head.hash, batch.hashes, ...batch.columns, ...tileParams(expected.edge.size, batch.tiles),
  ]);
  if (rows.length === 0) return undefined;
  checkTileWidths(batch.tiles, rows);
  return batch.next;
}

/**
 * Appends a batch where the log really is (another process wrote, a batch failed, or nothing is
 * known yet): under the lock, in one transaction, the head and the tree's right edge are read,
 * records that have no leaf yet are hashed in first, and the batch is computed after them.
 */
async function appendAtHead(
  tx: Queryable,
  records: ReadonlyArray<Omit<ChainRecord, 'seq'>>,
  known: WriterState | undefined,
): Promise<{ committed: CommittedRecord[]; state: WriterState }> {
  await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [...AUDIT_CHAIN_LOCK]);
  const { head, lastAt } = await readHeadWithTime(tx);
  let edge = known?.edge.size === head.seq ? known.edge : await readTreeEdge(tx);
  if (edge.size > head.seq) throw new TreeCorruptError(`the Merkle tree covers ${edge.size} records but the log ends at ${head.seq}`);
  if (edge.size < head.seq) edge = await extendFromLog(tx, edge, head.seq);
  const state = { head, lastAt, edge };
  const batch = await prepareBatch(records, state);
  // The same append as the usual path, inside this transaction (it takes the lock again, which an advisory lock allows).
  const next = await appendAfter(tx, state, batch);
  if (!next) throw new Error(`the chain head moved from ${head.seq} while its lock was held`);
  return { committed: batch.committed, state: next };
}

/**
 * The group-commit writer: records that arrive while a transaction is in flight wait and go
 * together in the next one, so one commit (one WAL flush) makes many records durable.
 */
export function createChainWriter(db: Database, options: ChainWriterOptions): ChainWriter {
  const clock = options.clock ?? createMicrosecondClock();
  const maxQueued = options.maxQueued ?? Math.max(10_000, options.batchMax * 64);
  const queue: Pending[] = [];
  const listeners: Array<(head: ChainHead, batch: CommittedBatch) => void> = [];
  let draining: Promise<void> | undefined;
  let closed = false;
  /** Where this writer left the log: head, its time and the Merkle tree's right edge, as last committed. */
  let state: WriterState | undefined;
  const stats: ChainWriterStats = {
    queued: 0, committed: 0, batches: 0, lastBatchSize: 0, lastCommitMs: 0, lastError: undefined, closed: false,
  };

  async function writeBatch(batch: Pending[]): Promise<void> {
    const started = performance.now();
    try {
      const records = batch.map((p) => p.record);
      const known = state;
      const prepared = known ? await prepareBatch(records, known) : undefined;
      let committed: CommittedRecord[];
      const stored = known && prepared ? await appendAfter(db, known, prepared) : undefined;
      if (stored && prepared) {
        state = stored;
        committed = prepared.committed;
      } else {
        // The log is not where this writer left it: start again from what is there.
        const appended = await db.transaction((tx) => appendAtHead(tx, records, known));
        state = appended.state;
        committed = appended.committed;
      }
      stats.committed += committed.length;
      stats.batches += 1;
      stats.lastBatchSize = committed.length;
      stats.lastCommitMs = performance.now() - started;
      stats.lastError = undefined;
      batch.forEach((p, i) => p.resolve(committed[i]!));
      const last = committed[committed.length - 1]!;
      const summary: CommittedBatch = {
        count: committed.length,
        durationMs: stats.lastCommitMs,
        records: batch.map((p) => ({ eventType: p.record.event_type, outcome: p.record.outcome })),
      };
      for (const listener of listeners) listener({ seq: last.seq, hash: last.hash }, summary);
    } catch (err) {
      state = undefined; // read again under the lock: what this transaction computed was not committed
      stats.lastError = (err as Error).message;
      const failure = new AuditUnavailableError('ERR_AUDIT_UNAVAILABLE', 'the audit record could not be written', {
        cause: err,
      });
      for (const p of batch) p.reject(failure);
    }
  }

  async function drain(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.splice(0, options.batchMax);
      for (const p of batch) p.taken();
      await writeBatch(batch);
    }
  }

  function schedule(): void {
    // A transaction serves many requests: it runs free of the deadline of the one that started it.
    draining ??= outsideDeadline(drain).finally(() => {
      draining = undefined;
      if (queue.length > 0) schedule();
    });
  }

  return {
    recordEvent(event, recordOptions = {}) {
      const signal = recordOptions.signal === undefined ? currentDeadline()?.signal : (recordOptions.signal ?? undefined);
      if (closed) return Promise.reject(new AuditUnavailableError('ERR_AUDIT_CLOSED', 'the audit writer is closed'));
      if (signal?.aborted) {
        return Promise.reject(new AuditUnavailableError('ERR_AUDIT_UNAVAILABLE', "the request's deadline passed before its record was written"));
      }
      if (queue.length >= maxQueued) {
        return Promise.reject(new AuditUnavailableError('ERR_AUDIT_UNAVAILABLE', 'the audit writer is saturated'));
      }
      let record: Omit<ChainRecord, 'seq'>;
      try {
        record = toChainRecord(event, crypto.randomUUID(), clock());
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      return new Promise<CommittedRecord>((resolve, reject) => {
        /** Leaves the queue unwritten; a record already in a transaction is bounded by the database timeouts. */
        const giveUp = (message: string) => () => {
          const index = queue.indexOf(pending);
          if (index === -1) return;
          queue.splice(index, 1);
          pending.taken();
          reject(new AuditUnavailableError('ERR_AUDIT_UNAVAILABLE', message));
        };
        const timer = setTimeout(giveUp('the audit record waited too long to be written'), options.writeTimeoutMs);
        const onAbort = giveUp("the request's deadline passed before its record was written");
        const pending: Pending = {
          record,
          resolve,
          reject,
          taken: () => {
            clearTimeout(timer);
            signal?.removeEventListener('abort', onAbort);
          },
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        queue.push(pending);
        schedule();
      });
    },
    async flush() {
      while (draining) await draining;
    },
    async close() {
      closed = true;
      stats.closed = true;
      while (draining) await draining;
    },
    stats: () => ({ ...stats, queued: queue.length }),
    onCommit(listener) {
      listeners.push(listener);
    },
  };
}
