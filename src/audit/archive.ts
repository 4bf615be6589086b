/**
 * `npm run audit:archive` (docs/archives.md): each closed monthly partition of audit_log whose
 * whole range is older than the hot window becomes a signed archive segment — its records in
 * canonical form, gzip-compressed, and a manifest signed with the checkpoint key — and only after
 * the files are read back and verified is the partition detached and dropped. History leaves the
 * database without a DELETE, and never before a verified copy of it exists; `audit_archives`
 * records each segment's manifest, so the gateway and the verifier know where the hot log starts.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import zlib from 'node:zlib';
import type { Database, Queryable } from '../db/database.js';
import {
  NO_PREVIOUS_MANIFEST,
  RECORDS_HEADER,
  encodeEntry,
  hashCanonical,
  manifestFileName,
  manifestHash,
  openManifest,
  recordsFileName,
  segmentStem,
  signManifest,
  type SegmentManifest,
} from './archive-format.js';
import { GENESIS_HASH, canonicalRecord, type ChainRecord } from './canonical.js';
import type { SigningKey } from './checkpoints.js';
import { sqlTimestamp } from './clock.js';
import { HASH_SIZE } from './merkle.js';
import { listAuditPartitions, type AuditPartition } from './partitions.js';
import { TILE_WIDTH } from './tiles.js';
import { readTreeSize, storedRoot } from './tree.js';
import { checkSegmentRecords, readArchiveRows, readTreeEdgeAt, type ArchiveRow } from './verify-archive.js';

const DAY_MS = 86_400_000;

export interface ArchiveOptions {
  /** Where segments are written (AUDIT_ARCHIVE_DIR). */
  dir: string;
  /** Partitions whose whole range ended more than this many days ago are archived (AUDIT_HOT_DAYS). */
  hotDays: number;
  /** Segments whose last record is older than this are listed as due for deletion, never deleted (AUDIT_RETENTION_DAYS). */
  retentionDays: number;
  /** The checkpoint key: manifests are signed like checkpoints. */
  key: SigningKey;
  /** The log's origin, the signature's name (AUDIT_LOG_ORIGIN). */
  origin: string;
  now?: () => number;
  /** gzip level (default 6). */
  gzipLevel?: number;
  /** Rows per query while reading a partition (default 5,000). */
  pageSize?: number;
  /** Progress lines (never records or hashes). */
  onProgress?: (message: string) => void;
}

export interface ArchivedSegment {
  partition: string;
  segment: string;
  first_seq: number;
  last_seq: number;
  records: number;
  /** Size of the records file, bytes. */
  bytes: number;
  files: string[];
}

/** What a run did: the JSON `npm run audit:archive -- --json` prints. */
export interface ArchiveSummary {
  ok: boolean;
  archive_dir: string;
  hot_days: number;
  retention_days: number;
  archived: ArchivedSegment[];
  /** Partitions past the hot window that held no record: detached and dropped without a segment. */
  dropped_empty: string[];
  /** Partitions past the hot window left in place, and why. */
  kept: Array<{ partition: string; reason: string }>;
  /** Every record up to this seq is archived (0: none). */
  archived_through_seq: number;
  /** Segments whose last record is older than the retention period: delete them by hand, if policy allows. */
  due_for_deletion: Array<{ segment: string; first_seq: number; last_seq: number; last_occurred_at: string }>;
  /** Set when the run stopped because a check failed: nothing of that partition was dropped. */
  refused?: { partition: string; detail: string };
}

/** A check failed: the partition stays, the run stops, the command exits 1. */
export class ArchiveRefusedError extends Error {
  override readonly name = 'ArchiveRefusedError';
  constructor(
    readonly partition: string,
    message: string,
  ) {
    super(message);
  }
}

/** A partition name from pg_class, quoted as an identifier. */
const ident = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/** Rows of one partition in seq order, with what the chain is checked against. */
const selectPage = (table: string) => `
  SELECT seq, event_id::text AS event_id, ${sqlTimestamp('occurred_at')} AS occurred_at, event_type, outcome, reason, username,
         user_id::text AS user_id,
         CASE WHEN masklen(ip) = CASE family(ip) WHEN 4 THEN 32 ELSE 128 END THEN host(ip) ELSE ip::text END AS ip,
         user_agent, device_id, mfa_method, session_id::text AS session_id, request_id, actor_id::text AS actor_id,
         details::text AS details, prev_hash, hash
    FROM ${ident(table)} WHERE seq > $1 ORDER BY seq LIMIT $2`;

interface PartitionStats {
  n: number;
  min: number | null;
  max: number | null;
}

async function statsOf(db: Pick<Queryable, 'query'>, table: string): Promise<PartitionStats> {
  const { rows } = await db.query<PartitionStats>(`SELECT count(*)::int AS n, min(seq) AS min, max(seq) AS max FROM ${ident(table)}`);
  return rows[0]!;
}

/** The segment's records written as one gzip file (to a temporary name), with what its manifest needs. */
interface WrittenRecords {
  tmp: string;
  sha256: Buffer;
  size: number;
  records: number;
  endHash: Buffer;
  firstOccurredAt: string;
  lastOccurredAt: string;
}

/**
 * Streams a partition's records into a gzip file, checking as it goes that each record links to
 * the one before (`prev_hash`), hashes to its stored `hash`, and that its Merkle leaf is the one
 * the stored level-0 tile holds (so proofs from the tiles stay true for archived records).
 */
async function writeRecords(db: Pick<Queryable, 'query'>, partition: string, from: { seq: number; prevHash: Buffer }, lastSeq: number, tmp: string, options: ArchiveOptions): Promise<WrittenRecords> {
  const pageSize = options.pageSize ?? 5000;
  let prev = from.prevHash;
  let expected = from.seq + 1;
  let firstOccurredAt = '';
  let lastOccurredAt = '';
  const refuse = (message: string): never => {
    throw new ArchiveRefusedError(partition, message);
  };

  async function* entries(): AsyncGenerator<Buffer> {
    let pending = db.query<ChainRecord & { prev_hash: Uint8Array; hash: Uint8Array }>(selectPage(partition), [from.seq, pageSize]);
    for (;;) {
      const { rows } = await pending;
      if (rows.length === pageSize) {
        pending = db.query(selectPage(partition), [rows[rows.length - 1]!.seq, pageSize]);
        pending.catch(() => {}); // observed below; a refusal of this page must not leave it rejecting unobserved
      }
      if (rows.length === 0) return;
      const chunks: Buffer[] = [];
      const leaves: Buffer[] = [];
      for (const row of rows) {
        if (row.seq !== expected) refuse(`record ${expected} is missing from partition ${partition}`);
        if (!Buffer.from(row.prev_hash).equals(prev)) refuse(`record ${row.seq} does not link to the record before it: run npm run audit:verify`);
        const canonical = canonicalRecord(row);
        const { hash, leaf } = hashCanonical(prev, canonical);
        if (!hash.equals(Buffer.from(row.hash))) refuse(`record ${row.seq} does not hash to its stored hash: run npm run audit:verify`);
        chunks.push(encodeEntry(canonical, hash));
        leaves.push(leaf);
        if (firstOccurredAt === '') firstOccurredAt = row.occurred_at;
        lastOccurredAt = row.occurred_at;
        prev = hash;
        expected += 1;
      }
      await checkLeaves(db, rows[0]!.seq, leaves, partition);
      yield Buffer.concat(chunks);
      if (rows.length < pageSize) return;
    }
  }

  const digest = crypto.createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      digest.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  async function* withHeader(): AsyncGenerator<Buffer> {
    yield RECORDS_HEADER;
    yield* entries();
  }
  await pipeline(Readable.from(withHeader()), zlib.createGzip({ level: options.gzipLevel ?? 6 }), tap, fs.createWriteStream(tmp, { flags: 'wx', mode: 0o640 }));
  await fsyncFile(tmp);
  if (expected !== lastSeq + 1) refuse(`partition ${partition} ends at record ${expected - 1}, not ${lastSeq}`);
  return { tmp, sha256: digest.digest(), size, records: expected - from.seq - 1, endHash: prev, firstOccurredAt, lastOccurredAt };
}

/** The leaves of records `firstSeq`… must equal the hashes of the stored level-0 tiles. */
async function checkLeaves(db: Pick<Queryable, 'query'>, firstSeq: number, leaves: readonly Buffer[], partition: string): Promise<void> {
  const firstIndex = firstSeq - 1;
  const lastIndex = firstIndex + leaves.length - 1;
  const { rows } = await db.query<{ idx: number; hashes: Uint8Array }>('SELECT idx, hashes FROM audit_tiles WHERE level = 0 AND idx BETWEEN $1 AND $2', [
    Math.floor(firstIndex / TILE_WIDTH),
    Math.floor(lastIndex / TILE_WIDTH),
  ]);
  const tiles = new Map(rows.map((r) => [r.idx, Buffer.from(r.hashes)]));
  leaves.forEach((leaf, i) => {
    const index = firstIndex + i;
    const tile = tiles.get(Math.floor(index / TILE_WIDTH));
    const offset = (index % TILE_WIDTH) * HASH_SIZE;
    if (!tile || tile.length < offset + HASH_SIZE || !tile.subarray(offset, offset + HASH_SIZE).equals(leaf)) {
      throw new ArchiveRefusedError(partition, `the stored Merkle tile does not hold the leaf of record ${index + 1}: run npm run audit:verify`);
    }
  });
}

async function fsyncFile(file: string): Promise<void> {
  const handle = await fs.promises.open(file, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function fsyncDir(dir: string): Promise<void> {
  try {
    const handle = await fs.promises.open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Some file systems (and platforms) do not sync directories; the files themselves are synced.
  }
}

const sha256File = async (file: string): Promise<Buffer> => {
  const digest = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file) as AsyncIterable<Buffer>) digest.update(chunk);
  return digest.digest();
};

/**
 * Puts `tmp` at `final` without ever replacing a file: on WORM storage an existing segment can
 * only be kept. An existing file with the same bytes (a run interrupted after writing it) is kept;
 * one with other bytes is refused.
 */
async function place(tmp: string, final: string, partition: string): Promise<void> {
  try {
    await fs.promises.link(tmp, final);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    if (!(await sha256File(tmp)).equals(await sha256File(final))) {
      throw new ArchiveRefusedError(partition, `${path.basename(final)} already exists in the archive directory with other contents`);
    }
  } finally {
    await fs.promises.rm(tmp, { force: true });
  }
}

/** Detaches and drops the partition and records the segment, in one transaction; retried when the lock is busy. */
async function dropPartition(db: Database, partition: string, expect: PartitionStats, row: ArchiveRow | undefined): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await db.transaction(async (tx) => {
        // A short lock wait: while this waits for audit_log, the chain writers queue behind it.
        await tx.query(`SELECT set_config('lock_timeout', '1000', true)`);
        if (row) {
          await tx.query(
            `INSERT INTO audit_archives (first_seq, last_seq, end_hash, tree_root, segment, file_sha256, manifest, manifest_sha256, last_occurred_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::timestamptz)`,
            [row.first_seq, row.last_seq, row.end_hash, row.tree_root, row.segment, row.file_sha256, row.manifest, row.manifest_sha256, row.last_occurred_at],
          );
        }
        await tx.query(`ALTER TABLE audit_log DETACH PARTITION ${ident(partition)}`);
        // Detached, nothing can be added to it any more: it must hold exactly what was archived. The
        // detach holds audit_log's lock until commit, so the chain writers (lock_timeout 3 s) wait:
        // two probes of the partition's unique seq index, not a count. With seq unique and the range
        // dense when it was written, any row added since lies outside it and moves min or max.
        const { rows: bounds } = await tx.query<{ min: number | null; max: number | null }>(`SELECT min(seq) AS min, max(seq) AS max FROM ${ident(partition)}`);
        const now = bounds[0]!;
        if (now.max !== expect.max || now.min !== expect.min) {
          throw new ArchiveRefusedError(partition, `partition ${partition} changed while it was archived`);
        }
        await tx.query(`DROP TABLE ${ident(partition)}`);
      });
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== '55P03' || attempt >= 10) throw err;
      await sleep(200 * attempt);
    }
  }
}

/**
 * Archives every closed partition past the hot window, oldest first, and stops at the first one it
 * must refuse. Each partition must hold a dense seq range that starts right after the archive's
 * end and lies wholly before every other partition's records, and a later record must exist (the
 * chain's head never leaves the database).
 */
export async function archivePartitions(db: Database, options: ArchiveOptions): Promise<ArchiveSummary> {
  const now = options.now?.() ?? Date.now();
  const cutoff = now - options.hotDays * DAY_MS;
  const progress = options.onProgress ?? (() => {});
  fs.mkdirSync(options.dir, { recursive: true });
  const summary: ArchiveSummary = {
    ok: true,
    archive_dir: options.dir,
    hot_days: options.hotDays,
    retention_days: options.retentionDays,
    archived: [],
    dropped_empty: [],
    kept: [],
    archived_through_seq: 0,
    due_for_deletion: [],
  };
  const rows = await readArchiveRows(db);
  const last = rows.at(-1);
  let end = last ? { seq: last.last_seq, hash: last.end_hash, manifest: manifestHash(last.manifest) } : { seq: 0, hash: GENESIS_HASH, manifest: NO_PREVIOUS_MANIFEST };

  const partitions = await listAuditPartitions(db);
  const stats = new Map<string, PartitionStats>();
  for (const p of partitions) stats.set(p.name, await statsOf(db, p.name));
  const closed = partitions.filter((p): p is AuditPartition & { toMs: number } => !p.isDefault && p.toMs !== undefined && p.toMs <= cutoff);

  try {
    for (const p of closed) {
      const own = stats.get(p.name)!;
      const others = partitions.filter((q) => q.name !== p.name).map((q) => stats.get(q.name)!);
      if (own.n === 0) {
        await dropPartition(db, p.name, own, undefined);
        stats.delete(p.name);
        partitions.splice(partitions.indexOf(p), 1);
        summary.dropped_empty.push(p.name);
        progress(`${p.name}: empty, dropped`);
        continue;
      }
      const first = own.min!;
      const lastSeq = own.max!;
      if (own.n !== lastSeq - first + 1) throw new ArchiveRefusedError(p.name, `partition ${p.name} holds ${own.n} records for seq ${first}..${lastSeq}: its range is not dense`);
      if (first !== end.seq + 1) {
        throw new ArchiveRefusedError(p.name, `partition ${p.name} starts at record ${first}, but the archive ends at ${end.seq}: the records between are in no earlier partition`);
      }
      const overlapping = partitions.find((q) => q.name !== p.name && (stats.get(q.name)!.min ?? Infinity) <= lastSeq);
      if (overlapping) {
        throw new ArchiveRefusedError(p.name, `partition ${overlapping.name} holds records before the end of ${p.name} (seq ${lastSeq}): the seq ranges of the months overlap`);
      }
      if (!others.some((s) => s.n > 0)) {
        summary.kept.push({ partition: p.name, reason: 'it holds the chain head: it is archived once a later record exists' });
        continue;
      }
      if ((await readTreeSize(db)) < lastSeq) {
        summary.kept.push({ partition: p.name, reason: 'the Merkle tree does not cover it yet (start the gateway to build it)' });
        continue;
      }

      const stem = segmentStem(first, lastSeq);
      progress(`${p.name}: writing ${stem} (${own.n} records)`);
      const tmp = path.join(options.dir, `.${stem}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
      let written: WrittenRecords;
      try {
        written = await writeRecords(db, p.name, { seq: end.seq, prevHash: end.hash }, lastSeq, tmp, options);
      } catch (err) {
        await fs.promises.rm(tmp, { force: true });
        throw err;
      }
      const manifest: SegmentManifest = {
        origin: options.origin,
        segment: stem,
        file: recordsFileName(stem),
        fileSha256: written.sha256,
        fileSize: written.size,
        records: written.records,
        firstSeq: first,
        lastSeq,
        prevHash: end.hash,
        endHash: written.endHash,
        treeSize: lastSeq,
        treeRoot: await storedRoot(db, lastSeq),
        firstOccurredAt: written.firstOccurredAt,
        lastOccurredAt: written.lastOccurredAt,
        previousManifest: end.manifest,
      };
      const note = signManifest(manifest, options.key.privateKey);
      const recordsPath = path.join(options.dir, recordsFileName(stem));
      const manifestPath = path.join(options.dir, manifestFileName(stem));
      await place(written.tmp, recordsPath, p.name);
      const manifestTmp = `${tmp}.manifest`;
      await fs.promises.writeFile(manifestTmp, note, { flag: 'wx', mode: 0o640 });
      await fsyncFile(manifestTmp);
      await place(manifestTmp, manifestPath, p.name);
      await fsyncDir(options.dir);

      // Read back from the directory and verified as the verifier does, before anything is dropped.
      const onDisk = await fs.promises.readFile(manifestPath, 'utf8');
      const opened = openManifest(onDisk, new Map([[options.key.keyId, options.key.publicKey]]), options.origin);
      if (opened.check !== 'ok' || onDisk !== note) throw new ArchiveRefusedError(p.name, `${manifestFileName(stem)} does not read back as the manifest signed`);
      const check = await checkSegmentRecords(recordsPath, opened.manifest!, { prevHash: end.hash, edge: await readTreeEdgeAt(db, first - 1) });
      if (check.finding) throw new ArchiveRefusedError(p.name, `the segment written does not verify: ${check.finding.problem}: ${check.finding.detail}`);

      await dropPartition(db, p.name, own, {
        first_seq: first,
        last_seq: lastSeq,
        end_hash: manifest.endHash,
        tree_root: manifest.treeRoot,
        segment: stem,
        file_sha256: manifest.fileSha256,
        manifest: note,
        manifest_sha256: manifestHash(note),
        last_occurred_at: manifest.lastOccurredAt,
      });
      stats.delete(p.name);
      partitions.splice(partitions.indexOf(p), 1);
      end = { seq: lastSeq, hash: manifest.endHash, manifest: manifestHash(note) };
      summary.archived.push({ partition: p.name, segment: stem, first_seq: first, last_seq: lastSeq, records: written.records, bytes: written.size, files: [recordsFileName(stem), manifestFileName(stem)] });
      progress(`${p.name}: archived as ${stem}, partition dropped`);
    }
  } catch (err) {
    if (!(err instanceof ArchiveRefusedError)) throw err;
    summary.ok = false;
    summary.refused = { partition: err.partition, detail: err.message };
  }

  summary.archived_through_seq = end.seq;
  const due = await db.query<{ segment: string; first_seq: number; last_seq: number; last_occurred_at: string }>(
    `SELECT segment, first_seq, last_seq, ${sqlTimestamp('last_occurred_at')} AS last_occurred_at
       FROM audit_archives WHERE last_occurred_at < to_timestamp($1::float8 / 1000) ORDER BY first_seq`,
    [now - options.retentionDays * DAY_MS],
  );
  summary.due_for_deletion = due.rows;
  return summary;
}
