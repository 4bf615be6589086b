import type { KeyObject } from 'node:crypto';
import type { Queryable } from '../db/database.js';
import { GENESIS_HASH, chainHash, type ChainRecord } from './canonical.js';
import { checkCheckpointSignature, readCheckpointFile, readCheckpointTable, type Checkpoint } from './checkpoints.js';
import { sqlTimestamp } from './clock.js';

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
  | 'checkpoint_conflict';

export interface VerifyResult {
  valid: boolean;
  /** Records whose hash was recomputed. */
  checked: number;
  head_seq: number;
  checkpoints_checked: number;
  first_invalid_seq?: number;
  problem?: ChainProblem;
  detail?: string;
}

export interface VerifyOptions {
  /** Keys trusted to sign checkpoints, by key id. */
  trustedKeys: ReadonlyMap<string, KeyObject>;
  /** The JSON-lines export; its checkpoints count as much as the table's. */
  checkpointFile?: string;
  /** Rows fetched per round trip; memory stays bounded by this, not by the chain length. */
  batchSize?: number;
  /** Start after a trusted (`seq`, `hash`) instead of the genesis. */
  startAfter?: { seq: number; hash: Buffer };
}

interface Finding {
  seq: number;
  problem: ChainProblem;
  detail: string;
}

interface StoredRow extends ChainRecord {
  prev_hash: Uint8Array;
  hash: Uint8Array;
}

const SELECT_ROWS = `
  SELECT seq, event_id::text AS event_id, ${sqlTimestamp('occurred_at')} AS occurred_at, event_type, outcome,
         reason, username, user_id::text AS user_id, host(ip) AS ip, user_agent, device_id, mfa_method,
         session_id::text AS session_id, request_id, actor_id::text AS actor_id, details::text AS details,
         prev_hash, hash
    FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2`;

/** Streams `audit_log` in `seq` order, a batch at a time. */
async function* streamRows(db: Pick<Queryable, 'query'>, afterSeq: number, batchSize: number): AsyncGenerator<StoredRow> {
  let after = afterSeq;
  for (;;) {
    const { rows } = await db.query<StoredRow>(SELECT_ROWS, [after, batchSize]);
    yield* rows;
    if (rows.length < batchSize) return;
    after = rows[rows.length - 1]!.seq;
  }
}

async function readHeadSeq(db: Pick<Queryable, 'query'>): Promise<number> {
  const { rows } = await db.query<{ seq: number | null }>('SELECT max(seq) AS seq FROM audit_log');
  return rows[0]?.seq ?? 0;
}

const asBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/**
 * Checks signatures of every checkpoint from the table and the export file and merges them by
 * `seq`. Problems are returned as findings; the trusted ones form the map the chain is held to.
 */
function trustCheckpoints(all: readonly Checkpoint[], trustedKeys: ReadonlyMap<string, KeyObject>) {
  const trusted = new Map<number, Buffer>();
  const findings: Finding[] = [];
  for (const cp of all) {
    const check = checkCheckpointSignature(cp, trustedKeys);
    if (check === 'unknown_key') {
      findings.push({ seq: cp.seq, problem: 'checkpoint_unknown_key', detail: `checkpoint at seq ${cp.seq} is signed by unknown key ${cp.keyId}` });
      continue;
    }
    if (check === 'bad_signature') {
      findings.push({ seq: cp.seq, problem: 'checkpoint_signature_invalid', detail: `checkpoint at seq ${cp.seq} has an invalid signature` });
      continue;
    }
    const known = trusted.get(cp.seq);
    if (known && !known.equals(cp.hash)) {
      findings.push({ seq: cp.seq, problem: 'checkpoint_conflict', detail: `two validly signed checkpoints disagree at seq ${cp.seq}` });
      continue;
    }
    trusted.set(cp.seq, cp.hash);
  }
  return { trusted, findings };
}

/**
 * Verifies the whole chain: dense `seq`, every `prev_hash` link, every hash, and every signed
 * checkpoint (from the table and the export file). Reports the first bad `seq` and its problem.
 */
export async function verifyChain(db: Pick<Queryable, 'query'>, options: VerifyOptions): Promise<VerifyResult> {
  const batchSize = options.batchSize ?? 5000;
  const checkpoints = [
    ...(await readCheckpointTable(db)),
    ...(options.checkpointFile ? await readCheckpointFile(options.checkpointFile) : []),
  ];
  const { trusted, findings } = trustCheckpoints(checkpoints, options.trustedKeys);

  const start = options.startAfter ?? { seq: 0, hash: GENESIS_HASH };
  let expected = start.seq + 1;
  let prevHash = start.hash;
  let prevPrevHash: Buffer | undefined;
  let lastGoodCheckpoint = start.seq;
  let checked = 0;
  let checkpointsChecked = 0;
  let stopped = false;

  for await (const row of streamRows(db, start.seq, batchSize)) {
    const storedPrev = asBuffer(row.prev_hash);
    const storedHash = asBuffer(row.hash);
    let finding: Finding | undefined;
    if (row.seq !== expected) {
      finding = { seq: expected, problem: 'seq_gap', detail: `expected seq ${expected}, found ${row.seq}` };
    } else if (!storedPrev.equals(prevHash)) {
      // Two records naming the same predecessor: something was inserted after seq - 1.
      finding = prevPrevHash?.equals(storedPrev)
        ? { seq: row.seq - 1, problem: 'fork', detail: `records ${row.seq - 1} and ${row.seq} both follow record ${row.seq - 2}` }
        : { seq: row.seq, problem: 'prev_hash_mismatch', detail: `prev_hash of ${row.seq} is not the hash of ${row.seq - 1}` };
    } else if (!chainHash(prevHash, row).equals(storedHash)) {
      finding = { seq: row.seq, problem: 'hash_mismatch', detail: `record ${row.seq} does not hash to its stored hash` };
    } else {
      const signed = trusted.get(row.seq);
      if (signed) {
        checkpointsChecked += 1;
        if (!signed.equals(storedHash)) {
          // Everything up to here links correctly, so the records were rewritten and re-hashed after the last good checkpoint.
          finding = {
            seq: lastGoodCheckpoint + 1,
            problem: 'checkpoint_mismatch',
            detail: `the signed checkpoint at seq ${row.seq} does not match the chain; records ${lastGoodCheckpoint + 1}..${row.seq} were rewritten`,
          };
        } else {
          lastGoodCheckpoint = row.seq;
        }
      }
    }
    if (finding) {
      findings.push(finding);
      stopped = true;
      break;
    }
    checked += 1;
    expected = row.seq + 1;
    prevPrevHash = storedPrev;
    prevHash = storedHash;
  }

  const headSeq = stopped ? await readHeadSeq(db) : expected - 1;
  if (findings.length === 0) {
    const beyond = [...trusted.keys()].filter((seq) => seq > headSeq).sort((a, b) => a - b)[0];
    if (beyond !== undefined) {
      findings.push({ seq: headSeq + 1, problem: 'truncated', detail: `a signed checkpoint covers seq ${beyond} but the chain ends at ${headSeq}` });
    }
  }

  const first = findings.sort((a, b) => a.seq - b.seq)[0];
  const result: VerifyResult = { valid: !first, checked, head_seq: headSeq, checkpoints_checked: checkpointsChecked };
  if (first) Object.assign(result, { first_invalid_seq: first.seq, problem: first.problem, detail: first.detail });
  return result;
}
