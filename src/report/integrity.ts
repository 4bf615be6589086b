import type { KeyObject } from 'node:crypto';
import { checkCheckpointSignature, streamCheckpointTable, type Checkpoint } from '../audit/checkpoints.js';
import { formatMicros, sqlTimestamp } from '../audit/clock.js';
import { cosignatureTime } from '../audit/note.js';
import { verifyDatabase } from '../audit/verify-both.js';
import type { RecordSource } from '../audit/verify-chain.js';
import type { Queryable } from '../db/database.js';
import type { CheckpointEvidence, Cosignature, Integrity } from './model.js';

/**
 * The integrity evidence of the compliance report: the project's full verification (hash chain,
 * Merkle tree, signed checkpoints, the archive's recorded manifests, and the export file when one
 * is given) run at report time,
 * and the signed checkpoints and witness cosignatures that cover the period. Nothing here is
 * taken on trust from the database: checkpoint signatures are checked with the keys given.
 */

export interface IntegrityOptions {
  trustedKeys: ReadonlyMap<string, KeyObject>;
  origin: string;
  checkpointFiles: readonly string[];
  /** The period's first record (null: none in it) and the log's last record before its end. */
  firstSeq: number | null;
  headSeqAtEnd: number;
  maxRows: number;
}

const defined = <T extends object>(value: T): T => Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;

export async function collectIntegrity(db: RecordSource, options: IntegrityOptions): Promise<Integrity> {
  const verifiedAt = formatMicros(BigInt(Date.now()) * 1000n);
  const { chain, tree, exported, archive } = await verifyDatabase(db, options);

  const { covering, inside } = await periodCheckpoints(db, options);
  const evidence = await withCosignatures(db, covering ? [...inside.rows, covering] : inside.rows, options);
  const bySize = new Map(evidence.map((e) => [e.tree_size, e]));

  return {
    verified_at: verifiedAt,
    valid: chain.valid && tree.valid && (exported?.valid ?? true) && (archive?.valid ?? true),
    chain: defined({
      valid: chain.valid,
      checked: chain.checked,
      head_seq: chain.head_seq,
      checkpoints_checked: chain.checkpoints_checked,
      first_invalid_seq: chain.first_invalid_seq,
      problem: chain.problem,
      detail: chain.detail,
    }),
    tree: defined({
      valid: tree.valid,
      tree_size: tree.tree_size,
      roots_checked: tree.roots_checked,
      tiles_checked: tree.tiles_checked,
      root: tree.root ?? null,
      first_invalid_seq: tree.first_invalid_seq,
      problem: tree.problem,
      detail: tree.detail,
    }),
    export_file: exported
      ? defined({
          files: [...options.checkpointFiles],
          valid: exported.valid,
          lines: exported.lines,
          chained_lines: exported.chained_lines,
          first_invalid_seq: exported.first_invalid_seq,
          problem: exported.problem,
          detail: exported.detail,
        })
      : null,
    archive:
      archive && (archive.last_seq > 0 || !archive.valid)
        ? defined({
            valid: archive.valid,
            segments: archive.segments,
            last_seq: archive.last_seq,
            first_invalid_seq: archive.first_invalid_seq,
            problem: archive.problem,
            detail: archive.detail,
          })
        : null,
    covering_checkpoint: covering ? bySize.get(covering.seq)! : null,
    checkpoints_in_period: { count: inside.count, truncated: inside.rows.length < inside.count, rows: inside.rows.map((cp) => bySize.get(cp.seq)!) },
  };
}

/**
 * The checkpoints that cover the period: the first one of a tree at least as large as the log's
 * last record before the period's end (it covers every record of the period), and those taken
 * during it (sizes from the period's first record up to that one). Read in seq order, stopping at
 * the covering one.
 */
async function periodCheckpoints(
  db: Pick<Queryable, 'query'>,
  options: Pick<IntegrityOptions, 'firstSeq' | 'headSeqAtEnd' | 'maxRows'>,
): Promise<{ covering: Checkpoint | undefined; inside: { count: number; rows: Checkpoint[] } }> {
  const inside: Checkpoint[] = [];
  let count = 0;
  if (options.headSeqAtEnd === 0) return { covering: undefined, inside: { count, rows: inside } };
  const from = options.firstSeq ?? options.headSeqAtEnd;
  for await (const page of streamCheckpointTable(db, from - 1, 1000)) {
    for (const cp of page) {
      if (cp.seq >= options.headSeqAtEnd) return { covering: cp, inside: { count, rows: inside } };
      count += 1;
      if (inside.length < options.maxRows) inside.push(cp);
    }
  }
  return { covering: undefined, inside: { count, rows: inside } };
}

/** Each checkpoint as evidence: its signature checked with the trusted keys, and the witness cosignatures stored for its size. */
async function withCosignatures(
  db: Pick<Queryable, 'query'>,
  checkpoints: readonly Checkpoint[],
  options: Pick<IntegrityOptions, 'trustedKeys' | 'origin'>,
): Promise<CheckpointEvidence[]> {
  if (checkpoints.length === 0) return [];
  const { rows } = await db.query<{ tree_size: number; witness: string; key_id: string; line: string; received_at: string }>(
    `SELECT tree_size, witness, encode(key_id, 'hex') AS key_id, line, ${sqlTimestamp('received_at')} AS received_at
       FROM public.audit_cosignatures WHERE tree_size = ANY($1::bigint[]) ORDER BY tree_size, witness, key_id`,
    [checkpoints.map((cp) => cp.seq)],
  );
  const cosignatures = new Map<number, Cosignature[]>();
  for (const r of rows) {
    const time = cosignatureTime(r.line);
    const list = cosignatures.get(r.tree_size) ?? cosignatures.set(r.tree_size, []).get(r.tree_size)!;
    list.push({
      witness: r.witness,
      key_id: r.key_id,
      line: r.line,
      // Unverified and chosen by the witness: a time no Date can hold is shown as none.
      cosigned_at: time === undefined || time > 8.64e12 ? null : new Date(time * 1000).toISOString(),
      received_at: r.received_at,
    });
  }
  return checkpoints.map((cp) => ({
    tree_size: cp.seq,
    root: cp.root ? cp.root.toString('base64') : null,
    chain_head: cp.hash.toString('base64'),
    signed_at: cp.signedAt,
    key_id: cp.keyId,
    signature: checkCheckpointSignature(cp, options.trustedKeys, { origin: options.origin }),
    note: cp.note ?? null,
    cosignatures: cosignatures.get(cp.seq) ?? [],
  }));
}
