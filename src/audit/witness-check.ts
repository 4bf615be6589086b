import crypto, { type KeyObject } from 'node:crypto';
import type { Queryable } from '../db/database.js';
import { readStateFile } from '../witness/state-file.js';
import { checkCheckpointSignature, checkpointFromNote } from './checkpoints.js';
import { parseVerifierKey, verifyCosignature, KEY_TYPE_COSIGNATURE_V1 } from './note.js';
import { readTreeSize, storedRoot } from './tree.js';

/**
 * `npm run audit:verify --witness URL` and `--witness-state FILE`: compares the database's Merkle
 * tree with the latest checkpoint a witness cosigned. A witness keeps its state where the
 * database's administrators cannot reach it, so a database restored to an earlier state — log,
 * tiles, checkpoints and export file rolled back together, which the chain and the checkpoints
 * alone cannot tell from the truth — is caught: the tree is smaller than, or has another root at
 * the size of, a checkpoint this log signed and a witness cosigned.
 */

export type WitnessProblem = 'witness_rollback' | 'witness_inconsistent';

/** One witness source and what it showed. */
export interface WitnessEvidence {
  /** The URL or state file it came from. */
  readonly source: string;
  /** The cosigned checkpoint's size (0: the witness has cosigned nothing of this log). */
  readonly size: number;
  readonly root: string | null;
  /** Outcome of the comparison with the database. */
  readonly verdict: 'consistent' | 'nothing_cosigned' | WitnessProblem;
}

export interface WitnessCheckResult {
  readonly valid: boolean;
  /** The database tree's size. */
  readonly tree_size: number;
  readonly evidence: WitnessEvidence[];
  /** The first problem, when not valid: what it is, the first seq that the database lacks or that differs (at most), and a sentence. */
  readonly problem?: WitnessProblem;
  readonly first_invalid_seq?: number;
  readonly detail?: string;
}

/** The witness evidence could not be read or cannot be trusted: audit:verify exits 2. */
export class WitnessCheckError extends Error {
  readonly code = 'ERR_WITNESS_CHECK';
}

export interface WitnessCheckOptions {
  /** Witness monitoring prefixes, each `URL` or `URL|<witness verifier key>` (then its cosignature is required). */
  witnesses: readonly string[];
  /** Witness state files (as `npm run witness` writes them), copied from the witness's host. */
  stateFiles: readonly string[];
  /** The log's origin: the first line of its checkpoints. */
  origin: string;
  /** Keys trusted to have signed the log's checkpoints. */
  trustedKeys: ReadonlyMap<string, KeyObject>;
  timeoutMs?: number;
}

/** GET <prefix>/<sha256(origin) hex>/checkpoint (C2SP tlog-witness, "Monitor Retrieval Mechanism"); undefined on 404. */
async function fetchWitnessed(prefix: string, origin: string, timeoutMs: number): Promise<string | undefined> {
  const url = `${prefix.replace(/\/+$/, '')}/${crypto.createHash('sha256').update(origin, 'utf8').digest('hex')}/checkpoint`;
  let res: Response;
  try {
    res = await fetch(url, { redirect: 'error', signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new WitnessCheckError(`witness ${prefix} did not answer: ${(err as Error).message}`);
  }
  if (res.status === 404) return undefined;
  if (res.status !== 200) throw new WitnessCheckError(`witness ${prefix} answered ${res.status} for the log's checkpoint`);
  return res.text();
}

/** Checks that the witnessed note is a checkpoint of this log, signed by a trusted key (and cosigned by the witness key, when given). */
function trustNote(note: string, source: string, options: WitnessCheckOptions, witnessKey: string | undefined): { size: number; root: Buffer } {
  const cp = checkpointFromNote(note, { signedAt: '', keyId: '' });
  if (!cp?.root) throw new WitnessCheckError(`${source}: the witnessed checkpoint is not an authtrail checkpoint note`);
  const check = checkCheckpointSignature(cp, options.trustedKeys, { origin: options.origin });
  if (check !== 'ok') throw new WitnessCheckError(`${source}: the witnessed checkpoint is not signed by a trusted key of ${options.origin} (${check}); pass --public-key`);
  if (witnessKey !== undefined) {
    const key = parseVerifierKey(witnessKey);
    if (!key || key.type !== KEY_TYPE_COSIGNATURE_V1) throw new WitnessCheckError(`${source}: not a witness verifier key`);
    const text = note.slice(0, note.lastIndexOf('\n\n') + 1);
    const lines = note.slice(text.length + 1).split('\n').filter(Boolean);
    if (!lines.some((line) => verifyCosignature(text, line, key))) throw new WitnessCheckError(`${source}: no valid cosignature of witness ${key.name}`);
  }
  return { size: cp.seq, root: cp.root };
}

/**
 * Reads each witness's latest cosigned checkpoint of this log and compares it with the database's
 * tree: smaller than the checkpoint is a rollback, another root at its size an inconsistency
 * (history rewritten, or a fork). Throws {@link WitnessCheckError} when evidence cannot be read
 * or trusted.
 */
export async function checkAgainstWitnesses(db: Pick<Queryable, 'query'>, options: WitnessCheckOptions): Promise<WitnessCheckResult> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const sources: Array<{ source: string; note: string | undefined; witnessKey?: string }> = [];
  for (const entry of options.witnesses) {
    const [url, witnessKey] = entry.split('|').map((p) => p.trim());
    if (!url || !/^https?:\/\//.test(url)) throw new WitnessCheckError(`--witness ${entry}: not an http(s) URL`);
    sources.push({ source: url, note: await fetchWitnessed(url, options.origin, timeoutMs), ...(witnessKey ? { witnessKey } : {}) });
  }
  for (const file of options.stateFiles) {
    let state;
    try {
      state = readStateFile(file);
    } catch (err) {
      throw new WitnessCheckError(`--witness-state ${file}: ${(err as Error).message}`);
    }
    if (!state) throw new WitnessCheckError(`--witness-state ${file}: no such file`);
    sources.push({ source: file, note: state.logs[options.origin]?.checkpoint });
  }

  const treeSize = await readTreeSize(db);
  const evidence: WitnessEvidence[] = [];
  let first: Required<Pick<WitnessCheckResult, 'problem' | 'first_invalid_seq' | 'detail'>> | undefined;
  for (const { source, note, witnessKey } of sources) {
    if (note === undefined) {
      evidence.push({ source, size: 0, root: null, verdict: 'nothing_cosigned' });
      continue;
    }
    const { size, root } = trustNote(note, source, options, witnessKey);
    let verdict: WitnessEvidence['verdict'] = 'consistent';
    let finding: typeof first;
    if (treeSize < size) {
      verdict = 'witness_rollback';
      finding = {
        problem: verdict,
        first_invalid_seq: treeSize + 1,
        detail: `rollback: the database's tree holds ${treeSize} records, but ${source} cosigned a checkpoint of this log at ${size}; records ${treeSize + 1}–${size} are gone`,
      };
    } else if (!(await storedRoot(db, size)).equals(root)) {
      verdict = 'witness_inconsistent';
      finding = {
        problem: verdict,
        first_invalid_seq: size,
        detail: `the database's tree at ${size} records has another root than the checkpoint ${source} cosigned: history up to ${size} was rewritten (or forked)`,
      };
    }
    evidence.push({ source, size, root: root.toString('base64'), verdict });
    if (finding && (!first || finding.first_invalid_seq < first.first_invalid_seq)) first = finding;
  }
  return { valid: first === undefined, tree_size: treeSize, evidence, ...(first ?? {}) };
}

/** The lines `npm run audit:verify --help` shows for these flags. */
export const WITNESS_USAGE = `  --witness URL[|VKEY]    a witness's monitoring prefix, repeatable: its latest cosigned checkpoint of
                          this log (GET <URL>/<sha256(origin)>/checkpoint) must be consistent with the
                          database's tree; with |VKEY its cosignature is required too
  --witness-state FILE    the same from a witness's state file (npm run witness), repeatable`;

/** Runs {@link checkAgainstWitnesses} for the CLI flags, or nothing when none was given. */
export async function checkWitnessFlags(
  db: Pick<Queryable, 'query'>,
  flags: { witness?: string[] | undefined; 'witness-state'?: string[] | undefined },
  trusted: { keys: ReadonlyMap<string, KeyObject>; origin: string | undefined },
): Promise<WitnessCheckResult | undefined> {
  const witnesses = flags.witness ?? [];
  const stateFiles = flags['witness-state'] ?? [];
  if (witnesses.length === 0 && stateFiles.length === 0) return undefined;
  if (trusted.origin === undefined) throw new WitnessCheckError('--witness and --witness-state need the log\'s origin: give --origin, or the checkpoint key as a note verifier key');
  return checkAgainstWitnesses(db, { witnesses, stateFiles, origin: trusted.origin, trustedKeys: trusted.keys });
}

/** One clause for the CLI's summary line. */
export function describeWitnessCheck(result: WitnessCheckResult): string {
  const parts = result.evidence.map((e) => (e.verdict === 'nothing_cosigned' ? `${e.source}: nothing cosigned yet` : `${e.source}: ${e.size} ${e.verdict}`));
  return `witnesses: ${parts.join(', ')}`;
}
