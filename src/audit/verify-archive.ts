/**
 * Verification of the archived prefix of the log (docs/archives.md): the segments in an archive
 * directory (`npm run audit:verify -- --archive DIR`), the manifests recorded in `audit_archives`,
 * and that the hot log in `audit_log` continues where the archive ends. The archiver reads back
 * every segment it writes with {@link checkSegmentRecords} before it drops anything.
 */
import crypto, { type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import type { Queryable } from '../db/database.js';
import {
  ArchiveFormatError,
  EntryReader,
  NO_PREVIOUS_MANIFEST,
  manifestFileName,
  manifestHash,
  openManifest,
  parseStem,
  recordsFileName,
  hashCanonical,
  type SegmentManifest,
} from './archive-format.js';
import { GENESIS_HASH } from './canonical.js';
import { HASH_SIZE } from './merkle.js';
import { TILE_WIDTH } from './tiles.js';
import { TreeEdge, storedRoot } from './tree.js';

/** What is wrong with the archive; docs/archives.md explains each. */
export type ArchiveProblem =
  | 'archive_segment_missing'
  | 'archive_unknown_key'
  | 'archive_signature_invalid'
  | 'archive_file_mismatch'
  | 'archive_records_invalid'
  | 'archive_out_of_order'
  | 'archive_manifest_mismatch'
  | 'archive_hot_discontinuity'
  | 'checkpoint_mismatch';

export interface ArchiveFinding {
  seq: number;
  problem: ArchiveProblem;
  detail: string;
}

/** The archived prefix as one verification saw it. */
export interface ArchiveResult {
  valid: boolean;
  /** Segments whose manifest was checked (and, with files, whose records were rehashed). */
  segments: number;
  /** The archived range: records 1 … `last_seq` are no longer in audit_log (0: nothing archived). */
  last_seq: number;
  /** Whether the records themselves were read from the archive files (`--archive`), or only the manifests. */
  records_checked: boolean;
  /** Archived records rehashed from the files. */
  records: number;
  /** Signed checkpoints inside the archived range that the archived records were held to. */
  checkpoints_checked: number;
  first_invalid_seq?: number;
  problem?: ArchiveProblem;
  detail?: string;
}

/** A row of `audit_archives` (migration 013). */
export interface ArchiveRow {
  first_seq: number;
  last_seq: number;
  end_hash: Buffer;
  tree_root: Buffer;
  segment: string;
  file_sha256: Buffer;
  manifest: string;
  manifest_sha256: Buffer;
  last_occurred_at: string;
}

const asBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** Every archived segment recorded in the database, in seq order. */
export async function readArchiveRows(db: Pick<Queryable, 'query'>): Promise<ArchiveRow[]> {
  const { rows } = await db.query<ArchiveRow>(
    `SELECT first_seq, last_seq, end_hash, tree_root, segment, file_sha256, manifest, manifest_sha256,
            to_char(last_occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS last_occurred_at
       FROM public.audit_archives ORDER BY first_seq`,
  );
  return rows.map((r) => ({ ...r, end_hash: asBuffer(r.end_hash), tree_root: asBuffer(r.tree_root), file_sha256: asBuffer(r.file_sha256), manifest_sha256: asBuffer(r.manifest_sha256) }));
}

/** The tree of the stored tiles at an earlier `size`: each partial tile is a prefix of the stored one (tiles only grow). */
export async function readTreeEdgeAt(db: Pick<Queryable, 'query'>, size: number): Promise<TreeEdge> {
  const wanted: Array<[number, number, number]> = [];
  for (let level = 0; Math.floor(size / TILE_WIDTH ** level) > 0; level++) {
    const count = Math.floor(size / TILE_WIDTH ** level);
    if (count % TILE_WIDTH !== 0) wanted.push([level, Math.floor(count / TILE_WIDTH), count % TILE_WIDTH]);
  }
  const { rows } = wanted.length === 0
    ? { rows: [] }
    : await db.query<{ level: number; idx: number; hashes: Uint8Array }>(
        'SELECT level, idx, hashes FROM public.audit_tiles WHERE (level, idx) IN (SELECT * FROM unnest($1::smallint[], $2::bigint[]))',
        [wanted.map(([l]) => l), wanted.map(([, i]) => i)],
      );
  const found = new Map(rows.map((r) => [`${r.level}/${r.idx}`, asBuffer(r.hashes)]));
  return TreeEdge.fromTiles(size, (level, index) => {
    const width = wanted.find(([l, i]) => l === level && i === index)?.[2] ?? 0;
    const data = found.get(`${level}/${index}`);
    return data && data.length >= width * HASH_SIZE ? data.subarray(0, width * HASH_SIZE) : data;
  });
}

/** Where the chain and tree stand before a segment, and what else its records are held to. */
export interface SegmentContext {
  /** The hash of the record before the segment (the genesis hash for seq 1). */
  prevHash: Buffer;
  /** The Merkle tree of every record before the segment. */
  edge: TreeEdge;
  /** Chain heads of trusted signed checkpoints, by seq. */
  checkpoints?: ReadonlyMap<number, Buffer> | undefined;
  /** Receives the segment's leaf hashes in order (for the tree check over the whole history). */
  onLeaves?: ((leaves: Buffer[]) => Promise<void>) | undefined;
}

export interface SegmentOutcome {
  finding?: ArchiveFinding;
  /** The tree after the segment's records (as far as they were sound). */
  edge: TreeEdge;
  records: number;
  checkpointsChecked: number;
}

/**
 * Reads a records file once: its SHA-256 and size against the manifest, then every entry in
 * order — seq, `prev_hash` link, hash, stored hash, trusted checkpoints — and the segment's end:
 * record count, end hash, tree root and last time against the manifest.
 */
export async function checkSegmentRecords(file: string, manifest: SegmentManifest, ctx: SegmentContext): Promise<SegmentOutcome> {
  const at = manifest.firstSeq;
  const fileHash = crypto.createHash('sha256');
  let fileSize = 0;
  const reader = new EntryReader();
  let prev = ctx.prevHash;
  let edge = ctx.edge;
  let expected = manifest.firstSeq;
  let lastOccurredAt = '';
  let checkpointsChecked = 0;
  let recordFinding: ArchiveFinding | undefined;
  let readError: string | undefined;

  // Leaves go into the tree in large batches: each append rebuilds the partial tiles it touches.
  let leaves: Buffer[] = [];
  const flush = async (): Promise<void> => {
    if (leaves.length === 0) return;
    const batch = leaves;
    leaves = [];
    edge = (await edge.append(batch)).edge;
    await ctx.onLeaves?.(batch);
  };
  const take = async (entries: ReturnType<EntryReader['push']>): Promise<void> => {
    if (recordFinding || entries.length === 0) return;
    for (const entry of entries) {
      if (entry.seq !== expected) {
        recordFinding = { seq: expected, problem: 'archive_records_invalid', detail: `segment ${manifest.segment}: expected record ${expected}, found ${entry.seq}` };
        break;
      }
      const { hash, leaf } = hashCanonical(prev, entry.canonical);
      if (!hash.equals(entry.hash)) {
        recordFinding = { seq: entry.seq, problem: 'archive_records_invalid', detail: `segment ${manifest.segment}: record ${entry.seq} does not hash to its stored hash` };
        break;
      }
      const signed = ctx.checkpoints?.get(entry.seq);
      if (signed) {
        checkpointsChecked += 1;
        if (!signed.equals(hash)) {
          recordFinding = { seq: entry.seq, problem: 'checkpoint_mismatch', detail: `the signed checkpoint at seq ${entry.seq} does not match the archived record` };
          break;
        }
      }
      leaves.push(leaf);
      prev = hash;
      lastOccurredAt = entry.occurredAt;
      expected += 1;
    }
    if (leaves.length >= 8192) await flush();
  };

  try {
    const source = fs.createReadStream(file);
    source.on('data', (chunk: Buffer | string) => {
      const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      fileHash.update(bytes);
      fileSize += bytes.length;
    });
    const gunzip = source.pipe(zlib.createGunzip({ chunkSize: 256 * 1024 }));
    source.on('error', (err) => gunzip.destroy(err));
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      try {
        await take(reader.push(chunk));
      } catch (err) {
        if (!(err instanceof ArchiveFormatError)) throw err;
        readError ??= err.message;
        recordFinding ??= { seq: expected, problem: 'archive_records_invalid', detail: `segment ${manifest.segment}: ${err.message}` };
      }
    }
    if (!readError) reader.end();
    await flush();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    readError = code === 'ENOENT' ? 'the records file is missing' : (err as Error).message;
  }

  const records = expected - manifest.firstSeq;
  const outcome = (finding?: ArchiveFinding): SegmentOutcome => ({ ...(finding ? { finding } : {}), edge, records, checkpointsChecked });
  const digest = fileHash.digest();
  if (readError !== undefined || !digest.equals(manifest.fileSha256) || fileSize !== manifest.fileSize) {
    const what = readError ?? (fileSize !== manifest.fileSize ? `it holds ${fileSize} bytes, the manifest says ${manifest.fileSize}` : 'its SHA-256 is not the one its manifest signs');
    const where = recordFinding ? `; record ${recordFinding.seq} is the first that differs` : '';
    return outcome({ seq: recordFinding?.seq ?? at, problem: 'archive_file_mismatch', detail: `segment ${manifest.segment}: ${what}${where}` });
  }
  if (recordFinding) return outcome(recordFinding);
  const problems: string[] = [];
  if (records !== manifest.records) problems.push(`${records} records, the manifest says ${manifest.records}`);
  if (!prev.equals(manifest.endHash)) problems.push('the chain ends at another hash than the manifest says');
  if (lastOccurredAt !== manifest.lastOccurredAt) problems.push('the last record has another time than the manifest says');
  if (problems.length === 0 && !(await edge.root()).equals(manifest.treeRoot)) problems.push('the Merkle tree at its end has another root than the manifest says');
  if (problems.length > 0) {
    return outcome({ seq: Math.min(expected, manifest.lastSeq), problem: 'archive_records_invalid', detail: `segment ${manifest.segment}: ${problems.join('; ')}` });
  }
  return outcome();
}

/** A manifest's signature problem as an archive finding. */
function signatureFinding(check: ReturnType<typeof openManifest>['check'], seq: number, name: string): ArchiveFinding | undefined {
  switch (check) {
    case 'ok':
      return undefined;
    case 'unknown_key':
      return { seq, problem: 'archive_unknown_key', detail: `the manifest of segment ${name} is not signed by a trusted key` };
    case 'wrong_origin':
      return { seq, problem: 'archive_unknown_key', detail: `the manifest of segment ${name} names another log (origin) than the one trusted` };
    case 'bad_signature':
      return { seq, problem: 'archive_signature_invalid', detail: `the manifest of segment ${name} has an invalid signature` };
    case 'malformed':
      return { seq, problem: 'archive_signature_invalid', detail: `the manifest of segment ${name} is not a well-formed signed manifest` };
  }
}

/** Whether a recorded row says what its own manifest says. */
function rowMatches(row: ArchiveRow, m: SegmentManifest): boolean {
  return (
    row.first_seq === m.firstSeq && row.last_seq === m.lastSeq && row.end_hash.equals(m.endHash) && row.tree_root.equals(m.treeRoot) &&
    row.segment === m.segment && row.file_sha256.equals(m.fileSha256) && row.manifest_sha256.equals(manifestHash(row.manifest)) &&
    row.last_occurred_at === m.lastOccurredAt
  );
}

export interface ArchiveVerifyOptions {
  trustedKeys: ReadonlyMap<string, KeyObject>;
  origin?: string | undefined;
}

/** Where the hot log must start: after the archive's last record. */
export interface ArchiveEnd {
  seq: number;
  hash: Buffer;
  /** The canonical `occurred_at` of the archive's last record (from its signed manifest): the first record in the database is held to it. */
  occurredAt?: Buffer;
}

const summary = (parts: Omit<ArchiveResult, 'valid' | 'first_invalid_seq' | 'problem' | 'detail'>, finding: ArchiveFinding | undefined): ArchiveResult => ({
  valid: finding === undefined,
  ...parts,
  ...(finding ? { first_invalid_seq: finding.seq, problem: finding.problem, detail: finding.detail } : {}),
});

/**
 * The archive as the database records it, without its files: every row's manifest signed by a
 * trusted key and equal to the row, the rows chained without gap (first seq, `prev_hash`,
 * `previous_manifest`), and each manifest's tree root equal to the stored tiles' root at its size.
 * The archived records themselves are not checked. Returns where the hot log must start.
 */
export async function verifyArchiveRows(db: Pick<Queryable, 'query'>, options: ArchiveVerifyOptions, rows?: ArchiveRow[]): Promise<{ result: ArchiveResult; end: ArchiveEnd }> {
  const archived = rows ?? (await readArchiveRows(db));
  let end: ArchiveEnd = { seq: 0, hash: GENESIS_HASH };
  let previous = NO_PREVIOUS_MANIFEST;
  let finding: ArchiveFinding | undefined;
  let segments = 0;
  for (const row of archived) {
    const opened = openManifest(row.manifest, options.trustedKeys, options.origin);
    finding = signatureFinding(opened.check, row.first_seq, row.segment);
    if (finding) break;
    const m = opened.manifest!;
    if (!rowMatches(row, m)) {
      finding = { seq: row.first_seq, problem: 'archive_manifest_mismatch', detail: `the database's record of segment ${row.segment} differs from its signed manifest` };
      break;
    }
    finding = linkFinding(m, end, previous);
    if (finding) break;
    if (!(await storedRoot(db, m.treeSize)).equals(m.treeRoot)) {
      finding = { seq: m.firstSeq, problem: 'archive_manifest_mismatch', detail: `the stored Merkle tiles at size ${m.treeSize} give another root than the manifest of segment ${m.segment} signs` };
      break;
    }
    segments += 1;
    end = { seq: m.lastSeq, hash: m.endHash, occurredAt: Buffer.from(m.lastOccurredAt, 'latin1') };
    previous = manifestHash(row.manifest);
  }
  // The hot log starts after the last recorded segment even when an earlier one is bad: what the database says is archived is not in it.
  const last = archived.at(-1);
  const hotStart = finding && last ? { seq: last.last_seq, hash: last.end_hash } : end;
  return { result: summary({ segments, last_seq: last?.last_seq ?? 0, records_checked: false, records: 0, checkpoints_checked: 0 }, finding), end: hotStart };
}

/** A segment that does not start right after `end`, or does not name the previous manifest. */
function linkFinding(m: SegmentManifest, end: ArchiveEnd, previous: Buffer): ArchiveFinding | undefined {
  if (m.firstSeq > end.seq + 1) {
    return { seq: end.seq + 1, problem: 'archive_segment_missing', detail: `records ${end.seq + 1}..${m.firstSeq - 1} are in no archive segment (the next segment is ${m.segment})` };
  }
  if (m.firstSeq < end.seq + 1) {
    return { seq: m.firstSeq, problem: 'archive_out_of_order', detail: `segment ${m.segment} overlaps the segment before it, which ends at ${end.seq}` };
  }
  if (!m.prevHash.equals(end.hash) || !m.previousManifest.equals(previous)) {
    return { seq: m.firstSeq, problem: 'archive_out_of_order', detail: `segment ${m.segment} does not continue the segment before it (prev_hash or previous_manifest differ)` };
  }
  return undefined;
}

/** The segments found in the directories, by stem (first directory wins; a different copy elsewhere is a finding). */
function listSegments(dirs: readonly string[]): { stems: string[]; where: Map<string, string>; conflicts: string[] } {
  const where = new Map<string, string>();
  const conflicts: string[] = [];
  for (const dir of dirs) {
    for (const name of fs.readdirSync(dir)) {
      if (!name.endsWith('.manifest')) continue;
      const stem = name.slice(0, -'.manifest'.length);
      if (!parseStem(stem)) continue;
      const known = where.get(stem);
      if (known === undefined) where.set(stem, dir);
      else if (fs.readFileSync(path.join(known, name), 'utf8') !== fs.readFileSync(path.join(dir, name), 'utf8')) conflicts.push(stem);
    }
  }
  const stems = [...where.keys()].sort((a, b) => parseStem(a)!.firstSeq - parseStem(b)!.firstSeq || a.localeCompare(b));
  return { stems, where, conflicts };
}

/**
 * The archive directories against themselves and the database: each segment's manifest signed by a
 * trusted key, named as its file says, equal to the one recorded in `audit_archives`, chained to
 * the segment before it without gap; its records file's SHA-256, and every record rehashed along
 * the chain (and held to the trusted checkpoints) from the genesis up to the archive's end; every
 * segment the database records present. Leaves go to `onLeaves` for the tree check.
 */
export async function verifyArchiveDirectory(
  db: Pick<Queryable, 'query'>,
  dirs: readonly string[],
  options: ArchiveVerifyOptions & { checkpoints?: ReadonlyMap<number, Buffer>; onLeaves?: (leaves: Buffer[]) => Promise<void>; rows?: ArchiveRow[] },
): Promise<{ result: ArchiveResult; end: ArchiveEnd }> {
  const rows = options.rows ?? (await readArchiveRows(db));
  const recorded = new Map(rows.map((r) => [r.segment, r]));
  const { stems, where, conflicts } = listSegments(dirs);
  let end: ArchiveEnd = { seq: 0, hash: GENESIS_HASH };
  let previous = NO_PREVIOUS_MANIFEST;
  let edge = TreeEdge.empty();
  let finding: ArchiveFinding | undefined;
  let segments = 0;
  let records = 0;
  let checkpointsChecked = 0;
  for (const stem of stems) {
    const named = parseStem(stem)!;
    if (conflicts.includes(stem)) {
      finding = { seq: named.firstSeq, problem: 'archive_manifest_mismatch', detail: `two different manifests of segment ${stem} in the archive directories` };
      break;
    }
    const note = fs.readFileSync(path.join(where.get(stem)!, manifestFileName(stem)), 'utf8');
    const opened = openManifest(note, options.trustedKeys, options.origin);
    finding = signatureFinding(opened.check, named.firstSeq, stem);
    if (finding) break;
    const m = opened.manifest!;
    if (m.segment !== stem) {
      finding = { seq: Math.min(named.firstSeq, m.firstSeq), problem: 'archive_out_of_order', detail: `the files named ${stem} hold segment ${m.segment}: segments were swapped, moved or substituted` };
      break;
    }
    finding = linkFinding(m, end, previous);
    if (finding) break;
    const row = recorded.get(stem);
    // Written by a run that stopped before it dropped the partition: those records are still in the database.
    if (!row && m.firstSeq > (rows.at(-1)?.last_seq ?? 0)) break;
    if (!row || row.manifest !== note) {
      finding = { seq: m.firstSeq, problem: 'archive_manifest_mismatch', detail: row ? `segment ${stem} is not the one recorded in the database (another manifest was signed for it)` : `segment ${stem} is not recorded in the database` };
      break;
    }
    const outcome = await checkSegmentRecords(path.join(where.get(stem)!, recordsFileName(stem)), m, {
      prevHash: end.hash,
      edge,
      checkpoints: options.checkpoints,
      onLeaves: options.onLeaves,
    });
    records += outcome.records;
    checkpointsChecked += outcome.checkpointsChecked;
    edge = outcome.edge;
    finding = outcome.finding;
    if (finding) break;
    segments += 1;
    end = { seq: m.lastSeq, hash: m.endHash, occurredAt: Buffer.from(m.lastOccurredAt, 'latin1') };
    previous = manifestHash(note);
  }
  if (!finding) {
    const missing = rows.find((r) => r.last_seq > end.seq);
    if (missing) {
      finding = { seq: end.seq + 1, problem: 'archive_segment_missing', detail: `segment ${missing.segment} is recorded in the database but not in the archive directory` };
    }
  }
  const last = rows.at(-1);
  const archivedThrough = Math.max(last?.last_seq ?? 0, end.seq);
  const hotStart = finding && last ? { seq: last.last_seq, hash: last.end_hash } : end;
  return {
    result: summary({ segments, last_seq: archivedThrough, records_checked: true, records, checkpoints_checked: checkpointsChecked }, finding),
    end: hotStart,
  };
}

/** The hot log's first record must be the one after the archive's end and link to its hash. */
export async function checkHotContinuity(db: Pick<Queryable, 'query'>, end: ArchiveEnd): Promise<ArchiveFinding | undefined> {
  if (end.seq === 0) return undefined;
  const { rows } = await db.query<{ seq: number; prev_hash: Uint8Array }>('SELECT seq, prev_hash FROM public.audit_log ORDER BY seq LIMIT 1');
  const first = rows[0];
  if (!first) return undefined; // nothing hot yet: the archive is the whole log
  if (first.seq !== end.seq + 1) {
    return {
      seq: Math.min(first.seq, end.seq + 1),
      problem: 'archive_hot_discontinuity',
      detail: `the log in the database starts at record ${first.seq}, but the archive ends at ${end.seq}`,
    };
  }
  if (!asBuffer(first.prev_hash).equals(end.hash)) {
    return { seq: first.seq, problem: 'archive_hot_discontinuity', detail: `record ${first.seq} does not link to the hash the archive ends with` };
  }
  return undefined;
}
