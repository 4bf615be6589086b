import type { KeyObject } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Database, Queryable } from '../db/database.js';
import { normalizeUsername } from '../users/usernames.js';
import { GENESIS_HASH } from './canonical.js';
import { formatMicros, sqlTimestamp } from './clock.js';
import { createSignatureChecker, readCheckpointFile, streamCheckpointTable, type Checkpoint, type SignatureChecker } from './checkpoints.js';
import type { ArchiveProblem } from './verify-archive.js';
import { readStoredRecords, storedChainHash, storedLeafHash, type StoredRecord } from './stored-records.js';

/** What a verifier reads the log through: queries, and binary COPY for the records themselves. */
export type RecordSource = Pick<Database, 'query' | 'copyOut'>;

/** Records read per COPY statement. */
const DEFAULT_PAGE = 10_000;
/** Leaf hashes handed to the tree check at a time. */
const LEAF_HANDOVER = 4096;

/** The kind of problem found at `first_invalid_seq`; docs/audit-chain.md explains each. */
export type ChainProblem =
  | 'seq_gap'
  | 'prev_hash_mismatch'
  | 'fork'
  | 'hash_mismatch'
  | 'checkpoint_mismatch'
  | 'truncated'
  | 'checkpoint_signature_invalid'
  | 'checkpoint_unknown_key'
  | 'checkpoint_conflict'
  | 'account_mismatch'
  | 'occurred_at_decreased'
  | 'occurred_at_in_future'
  // The archived prefix (docs/archives.md): reported by the gateway's check of the recorded manifests.
  | ArchiveProblem;

export interface VerifyResult {
  valid: boolean;
  /** Records whose hash was recomputed. */
  checked: number;
  head_seq: number;
  checkpoints_checked: number;
  first_invalid_seq?: number;
  problem?: ChainProblem;
  detail?: string;
  /** The last signed checkpoint the chain was found to match: a later run may start after it. */
  last_verified_checkpoint?: { seq: number; hash: string };
}

export interface VerifyOptions {
  /** Keys trusted to sign checkpoints, by key id. */
  trustedKeys: ReadonlyMap<string, KeyObject>;
  /** When set, checkpoint notes must name this origin (a trusted note verifier key fixes it). */
  origin?: string | undefined;
  /** The JSON-lines export; its checkpoints count as much as the table's. */
  checkpointFile?: string | readonly string[];
  /** Rows fetched per round trip; memory stays bounded by this, not by the chain length. */
  batchSize?: number;
  /** Start after a trusted (`seq`, `hash`) instead of the genesis. */
  startAfter?: { seq: number; hash: Buffer };
  /** Checkpoints already loaded with {@link loadCheckpoints} (by a caller that needs them too). */
  checkpoints?: LoadedCheckpoints | undefined;
}

/** The trusted checkpoints (chain heads and tree roots by seq) and the problems found with the others. */
export interface LoadedCheckpoints {
  trusted: Map<number, Buffer>;
  roots: Map<number, Buffer>;
  findings: Finding[];
}

export interface Finding {
  seq: number;
  problem: ChainProblem;
  detail: string;
  /** For checkpoint_mismatch: the seq of the checkpoint that disagreed. */
  checkpointSeq?: number;
}

async function readHeadSeq(db: Pick<Queryable, 'query'>): Promise<number> {
  // A seq beyond 2^53 (only a superuser's insert) is no number here: the walk reports the gap before it.
  const { rows } = await db.query<{ seq: number | null }>(`SELECT least(max(seq), ${Number.MAX_SAFE_INTEGER}) AS seq FROM public.audit_log`);
  return rows[0]?.seq ?? 0;
}

/**
 * Cuts long synchronous work into slices of about `sliceMs`, giving the event loop a turn
 * (`setImmediate`: pending I/O, so other requests, runs first) between them. A verification of
 * millions of rows or checkpoints thus never holds the gateway's loop for longer than one slice.
 */
export class TimeSlicer {
  private last = performance.now();
  private calls = 0;
  constructor(private readonly sliceMs = 5) {}

  /** Call once per unit of work; when it says so, `await pause()` before the next one. */
  due(): boolean {
    // Reading the clock every 32 units keeps the check itself negligible.
    return (++this.calls & 31) === 0 && performance.now() - this.last >= this.sliceMs;
  }

  /** A turn of the event loop; the next slice starts after it. */
  async pause(): Promise<void> {
    await nextTurn();
    this.last = performance.now();
  }
}

/**
 * Checks checkpoint signatures (table and export file alike) and merges them by `seq`. Problems
 * become findings; the validly signed ones form the map the chain is held to.
 */
export class CheckpointTrust {
  readonly trusted = new Map<number, Buffer>();
  /** The Merkle roots of the validly signed checkpoint notes, by tree size. */
  readonly roots = new Map<number, Buffer>();
  readonly findings: Finding[] = [];
  constructor(
    private readonly signatures: SignatureChecker,
    private readonly slicer: TimeSlicer = new TimeSlicer(),
  ) {}

  async add(checkpoints: Iterable<Checkpoint>): Promise<void> {
    for (const cp of checkpoints) {
      if (this.slicer.due()) await this.slicer.pause();
      const check = this.signatures.check(cp);
      if (check === 'unknown_key') {
        this.findings.push({ seq: cp.seq, problem: 'checkpoint_unknown_key', detail: `checkpoint at seq ${cp.seq} is signed by unknown key ${cp.keyId}` });
        continue;
      }
      if (check === 'wrong_origin') {
        this.findings.push({ seq: cp.seq, problem: 'checkpoint_unknown_key', detail: `checkpoint at seq ${cp.seq} names another log (origin) than the one trusted` });
        continue;
      }
      if (check === 'bad_signature') {
        this.findings.push({ seq: cp.seq, problem: 'checkpoint_signature_invalid', detail: `checkpoint at seq ${cp.seq} has an invalid signature` });
        continue;
      }
      const known = this.trusted.get(cp.seq);
      const knownRoot = this.roots.get(cp.seq);
      if ((known && !known.equals(cp.hash)) || (knownRoot && cp.root && !knownRoot.equals(cp.root))) {
        this.findings.push({ seq: cp.seq, problem: 'checkpoint_conflict', detail: `two validly signed checkpoints disagree at seq ${cp.seq}` });
        continue;
      }
      this.trusted.set(cp.seq, cp.hash);
      if (cp.root) this.roots.set(cp.seq, cp.root);
    }
  }
}

/** Where the walk along the chain stands. */
interface Walk {
  expected: number;
  prevHash: Buffer;
  prevPrevHash: Buffer | undefined;
  /** The canonical `occurred_at` of the record before `expected` (`prevTime[prevTimeStart..prevTimeEnd)`), when known: no record is stamped earlier. */
  prevTime: Buffer | undefined;
  prevTimeStart: number;
  prevTimeEnd: number;
  /** The canonical text of the latest time a record read now may carry: the reader's clock plus {@link CLOCK_SKEW_MS}. */
  latestTime: Buffer;
  lastGoodCheckpoint: number;
  lastGoodCheckpointHash: Buffer | undefined;
  checked: number;
  checkpointsChecked: number;
  /**
   * The first row that breaks a rule outside the chain's links — an `account` not derived from
   * its `username`, an `occurred_at` before its predecessor's or ahead of the reader's clock —
   * while linking correctly: the walk
   * goes on, so a lower bad seq found later (a checkpoint mismatch), or a broken link at the same
   * seq (an inserted record is a fork first), still wins.
   */
  stray: Finding | undefined;
}

const normalized = new Map<string, string>();
/** The account key of a stored username, as the chain writer derives it. */
function accountOf(username: string | null): string | null {
  if (username === null) return null;
  let account = normalized.get(username);
  if (account === undefined) {
    // A log names far fewer accounts than it holds records: remember the last few thousand.
    if (normalized.size >= 4096) normalized.clear();
    account = normalizeUsername(username);
    normalized.set(username, account);
  }
  return account;
}

/**
 * Checks one row against its predecessor and any signed checkpoint; advances the walk when it is
 * sound. With `leaves`, the row's Merkle leaf hash, computed from the same encoding, is added to it.
 */
function checkRow(walk: Walk, row: StoredRecord, trusted: ReadonlyMap<number, Buffer>, leaves?: Buffer[]): Finding | undefined {
  const storedPrev = row.prevHash;
  const storedHash = row.hash;
  if (row.seq !== walk.expected) {
    // Rows come in seq order: a seq met again is a second record in one place of the chain.
    return row.seq === walk.expected - 1
      ? { seq: row.seq, problem: 'fork', detail: `two records have seq ${row.seq}` }
      : { seq: walk.expected, problem: 'seq_gap', detail: `expected seq ${walk.expected}, found ${Number.isSafeInteger(row.seq) ? row.seq : 'a seq below 1 or beyond 2^53'}` };
  }
  if (!storedPrev.equals(walk.prevHash)) {
    // Two records naming the same predecessor: something was inserted after seq - 1.
    return walk.prevPrevHash?.equals(storedPrev)
      ? { seq: row.seq - 1, problem: 'fork', detail: `records ${row.seq - 1} and ${row.seq} both follow record ${row.seq - 2}` }
      : { seq: row.seq, problem: 'prev_hash_mismatch', detail: `prev_hash of ${row.seq} is not the hash of ${row.seq - 1}` };
  }
  if (row.network !== null) {
    return { seq: row.seq, problem: 'hash_mismatch', detail: `record ${row.seq} stores the network ${row.network}, but a host address was hashed` };
  }
  if (row.strayTime !== null) {
    return { seq: row.seq, problem: 'hash_mismatch', detail: `record ${row.seq} stores the time ${row.strayTime}, outside the years 0001-9999 its hashed text tells apart` };
  }
  if (!storedChainHash(row).equals(storedHash)) {
    return { seq: row.seq, problem: 'hash_mismatch', detail: `record ${row.seq} does not hash to its stored hash` };
  }
  leaves?.push(storedLeafHash(row));
  const signed = trusted.get(row.seq);
  if (signed) {
    walk.checkpointsChecked += 1;
    if (!signed.equals(storedHash)) {
      // Everything up to here links correctly, so records after the last good checkpoint were rewritten and re-hashed.
      const from = walk.lastGoodCheckpoint + 1;
      return {
        seq: from,
        checkpointSeq: row.seq,
        problem: 'checkpoint_mismatch',
        detail: `the signed checkpoint at seq ${row.seq} does not match the chain; records ${from}..${row.seq} were rewritten`,
      };
    }
    walk.lastGoodCheckpoint = row.seq;
    walk.lastGoodCheckpointHash = storedHash;
  }
  if (walk.stray === undefined) {
    // `account` is outside the hash, so only this comparison keeps it honest: an edited account would hide a record from searches by account.
    if (row.account !== accountOf(row.username)) {
      walk.stray = { seq: row.seq, problem: 'account_mismatch', detail: `the account of record ${row.seq} is not the normalized username` };
    } else if (walk.prevTime !== undefined && row.chained.compare(walk.prevTime, walk.prevTimeStart, walk.prevTimeEnd, row.timeStart, row.timeEnd) < 0) {
      // Fixed-width text (the years 0001-9999, checked above): byte order is time order.
      const at = row.chained.toString('latin1', row.timeStart, row.timeEnd);
      const before = walk.prevTime.toString('latin1', walk.prevTimeStart, walk.prevTimeEnd);
      walk.stray = { seq: row.seq, problem: 'occurred_at_decreased', detail: `record ${row.seq} occurred at ${at}, before record ${row.seq - 1} (${before})` };
    } else if (row.chained.compare(walk.latestTime, 0, walk.latestTime.length, row.timeStart, row.timeEnd) > 0) {
      const at = row.chained.toString('latin1', row.timeStart, row.timeEnd);
      walk.stray = { seq: row.seq, problem: 'occurred_at_in_future', detail: `record ${row.seq} occurred at ${at}, after the time it was read (${walk.latestTime.toString('latin1')}, five minutes of clock skew allowed)` };
    }
  }
  walk.checked += 1;
  walk.expected = row.seq + 1;
  walk.prevPrevHash = storedPrev;
  walk.prevHash = storedHash;
  walk.prevTime = row.chained;
  walk.prevTimeStart = row.timeStart;
  walk.prevTimeEnd = row.timeEnd;
  return undefined;
}

/** Trusted checkpoints (table and export file, signatures checked) and the problems found with them. */
export async function loadCheckpoints(db: Pick<Queryable, 'query'>, options: Pick<VerifyOptions, 'trustedKeys' | 'checkpointFile' | 'origin'>): Promise<LoadedCheckpoints> {
  const trust = new CheckpointTrust(createSignatureChecker(options.trustedKeys, { origin: options.origin }));
  for await (const page of streamCheckpointTable(db, 0)) await trust.add(page);
  const files = typeof options.checkpointFile === 'string' ? [options.checkpointFile] : (options.checkpointFile ?? []);
  for (const file of files) await trust.add(await readCheckpointFile(file));
  return { trusted: trust.trusted, roots: trust.roots, findings: trust.findings };
}

/** Where a walk starts: after `seq`, whose stored hash (and prev_hash, for fork detection) are given. */
export interface WalkStart {
  seq: number;
  hash: Buffer;
  prevHash?: Buffer | undefined;
  /** The canonical `occurred_at` of the record at `seq`, when the caller knows it (an archive's manifest); else it is read from the database. */
  occurredAt?: Buffer | undefined;
}

/** How far a record's time may lie ahead of the clock of whoever reads it: the database refuses to store one further ahead (migration 017). */
export const CLOCK_SKEW_MS = 5 * 60_000;

/** The canonical text of the latest time a record read now may carry. */
const latestTimeNow = (): Buffer => Buffer.from(formatMicros(BigInt(Date.now() + CLOCK_SKEW_MS) * 1000n), 'latin1');

/** The canonical `occurred_at` of the record at a walk's start, when it is in the database (not archived). */
async function occurredAtOf(db: Pick<Queryable, 'query'>, start: WalkStart): Promise<Buffer | undefined> {
  if (start.seq < 1) return undefined;
  const { rows } = await db.query<{ at: string }>(`SELECT ${sqlTimestamp('occurred_at')} AS at FROM public.audit_log WHERE seq = $1 AND hash = $2 LIMIT 1`, [start.seq, start.hash]);
  return rows[0] ? Buffer.from(rows[0].at, 'latin1') : undefined;
}

export interface RangeOutcome {
  broken: Finding | undefined;
  /** The first `account_mismatch`, `occurred_at_decreased` or `occurred_at_in_future` before `broken`, if any: reported like any finding, lowest seq first. */
  stray: Finding | undefined;
  checked: number;
  checkpointsChecked: number;
  lastGoodCheckpoint: { seq: number; hash: Buffer } | undefined;
}

/** Walks the rows after `start.seq` to the end, checking each against its predecessor and the trusted checkpoints. */
export async function walkRange(
  db: RecordSource,
  range: {
    start: WalkStart;
    trusted: ReadonlyMap<number, Buffer>;
    batchSize?: number | undefined;
    slicer?: TimeSlicer | undefined;
    /** Given each page's Merkle leaves (of the records that checked out), so the tree is verified from the same read. */
    onLeaves?: ((leaves: Buffer[]) => Promise<void>) | undefined;
  },
): Promise<RangeOutcome> {
  const slicer = range.slicer ?? new TimeSlicer();
  const { start } = range;
  const startTime = start.occurredAt ?? (await occurredAtOf(db, start));
  const walk: Walk = {
    expected: start.seq + 1,
    prevHash: start.hash,
    prevPrevHash: start.prevHash,
    prevTime: startTime,
    prevTimeStart: 0,
    prevTimeEnd: startTime?.length ?? 0,
    latestTime: latestTimeNow(),
    lastGoodCheckpoint: start.seq,
    lastGoodCheckpointHash: undefined,
    checked: 0,
    checkpointsChecked: 0,
    stray: undefined,
  };
  let broken: Finding | undefined;
  // Leaves go to the tree a few thousand at a time: each hand-over re-reads the tree's partial tiles.
  let leaves: Buffer[] | undefined = range.onLeaves ? [] : undefined;
  pages: for await (const page of readStoredRecords(db, start.seq, range.batchSize ?? DEFAULT_PAGE)) {
    // Records keep arriving while a long walk runs: each page is held to the clock when it came.
    walk.latestTime = latestTimeNow();
    for (const row of page) {
      if (slicer.due()) await slicer.pause();
      broken = checkRow(walk, row, range.trusted, leaves);
      if (broken) break;
    }
    if (leaves && leaves.length >= LEAF_HANDOVER) {
      await range.onLeaves!(leaves);
      leaves = [];
    }
    if (broken) break pages;
  }
  if (leaves && leaves.length > 0) await range.onLeaves!(leaves);
  return {
    broken,
    stray: walk.stray,
    checked: walk.checked,
    checkpointsChecked: walk.checkpointsChecked,
    lastGoodCheckpoint: walk.lastGoodCheckpointHash ? { seq: walk.lastGoodCheckpoint, hash: walk.lastGoodCheckpointHash } : undefined,
  };
}

/** Combines the findings of one or more walks into the reported result (the lowest bad seq wins). */
export async function summarizeWalks(
  db: Pick<Queryable, 'query'>,
  parts: { findings: Finding[]; outcomes: RangeOutcome[]; trusted: ReadonlyMap<number, Buffer>; walkedThrough: number },
): Promise<VerifyResult> {
  const findings = [...parts.findings];
  const broken = parts.outcomes.flatMap((o) => [o.broken, o.stray]).filter((f): f is Finding => f !== undefined);
  const headSeq = broken.length > 0 ? await readHeadSeq(db) : parts.walkedThrough;
  if (broken.length > 0) {
    findings.push(...broken);
  } else {
    // A loop: no copy of every key, and no spread of a long list into arguments (which overflows the stack).
    let beyond = Infinity;
    for (const seq of parts.trusted.keys()) if (seq > headSeq && seq < beyond) beyond = seq;
    if (Number.isFinite(beyond)) {
      findings.push({ seq: headSeq + 1, problem: 'truncated', detail: `a signed checkpoint covers seq ${beyond} but the chain ends at ${headSeq}` });
    }
  }
  const first = findings.sort((a, b) => a.seq - b.seq)[0];
  const result: VerifyResult = {
    valid: !first,
    checked: parts.outcomes.reduce((n, o) => n + o.checked, 0),
    head_seq: headSeq,
    checkpoints_checked: parts.outcomes.reduce((n, o) => n + o.checkpointsChecked, 0),
  };
  if (first) Object.assign(result, { first_invalid_seq: first.seq, problem: first.problem, detail: first.detail });
  else {
    const last = parts.outcomes.map((o) => o.lastGoodCheckpoint).filter((c) => c !== undefined).at(-1);
    if (last) result.last_verified_checkpoint = { seq: last.seq, hash: last.hash.toString('hex') };
  }
  return result;
}

/**
 * Verifies the whole chain: dense `seq`, every `prev_hash` link, every hash, every signed
 * checkpoint (from the table and the export file), and that every unhashed `account` is derived
 * from its `username`. Reports the first bad `seq` and its problem.
 */
export async function verifyChain(db: RecordSource, options: VerifyOptions): Promise<VerifyResult> {
  const { trusted, findings } = options.checkpoints ?? (await loadCheckpoints(db, options));
  const start = options.startAfter ?? { seq: 0, hash: GENESIS_HASH };
  const outcome = await walkRange(db, { start, trusted, batchSize: options.batchSize });
  return summarizeWalks(db, { findings, outcomes: [outcome], trusted, walkedThrough: start.seq + outcome.checked });
}
