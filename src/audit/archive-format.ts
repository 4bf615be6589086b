/**
 * The archive segment format (docs/archives.md): what `npm run audit:archive` writes for each closed
 * month of the log and what `npm run audit:verify -- --archive` reads. Pure code, so the archiver,
 * the verifier and the tests share one definition of the bytes.
 *
 * A segment is two files named after its seq range:
 *
 * - `<stem>.records.gz`: gzip of the line `authtrail-archive-records/v1\n` followed by one entry per
 *   record in seq order; an entry is the record's canonical form (17 length-prefixed fields,
 *   docs/audit-chain.md) and an 18th field, the record's stored `hash` (32 bytes);
 * - `<stem>.manifest`: a C2SP signed note by the checkpoint key under the log's origin, whose text
 *   names the segment, its records file's SHA-256, the seq range, the chain hashes before and at its
 *   end, the Merkle tree at its end, and the SHA-256 of the previous segment's manifest file.
 */
import crypto, { type KeyObject } from 'node:crypto';
import { RECORD_FORMAT, canonicalRecord, type ChainRecord } from './canonical.js';
import { decodeBase64Strict, openNote, parseVerifierKey, signNote, verifierKey } from './note.js';

/** First line of every manifest: the format, and what separates a manifest from a checkpoint note. */
export const MANIFEST_FORMAT = 'authtrail-archive-segment/v1';
/** First bytes of every records file once decompressed. */
export const RECORDS_HEADER = Buffer.from('authtrail-archive-records/v1\n', 'ascii');
/** `previous_manifest` of the first segment. */
export const NO_PREVIOUS_MANIFEST: Buffer = Buffer.alloc(32);

const STEM = /^authtrail-audit-([0-9]{20})-([0-9]{20})$/;

/** `authtrail-audit-<first seq>-<last seq>`, each 20 digits: names sort in seq order. */
export function segmentStem(firstSeq: number, lastSeq: number): string {
  return `authtrail-audit-${String(firstSeq).padStart(20, '0')}-${String(lastSeq).padStart(20, '0')}`;
}

/** The seq range a stem names, or undefined when it is not a segment stem. */
export function parseStem(stem: string): { firstSeq: number; lastSeq: number } | undefined {
  const match = STEM.exec(stem);
  if (!match) return undefined;
  const firstSeq = Number(match[1]);
  const lastSeq = Number(match[2]);
  if (!Number.isSafeInteger(firstSeq) || !Number.isSafeInteger(lastSeq) || firstSeq < 1 || lastSeq < firstSeq) return undefined;
  return { firstSeq, lastSeq };
}

export const recordsFileName = (stem: string): string => `${stem}.records.gz`;
export const manifestFileName = (stem: string): string => `${stem}.manifest`;

/** What a manifest says. Hashes are raw bytes here; the text writes them in base64 (file_sha256 in hex, as sha256sum prints it). */
export interface SegmentManifest {
  origin: string;
  segment: string;
  file: string;
  fileSha256: Buffer;
  fileSize: number;
  records: number;
  firstSeq: number;
  lastSeq: number;
  /** `prev_hash` of the first record: the hash of record firstSeq − 1 (32 zero bytes for seq 1). */
  prevHash: Buffer;
  /** `hash` of the last record. */
  endHash: Buffer;
  /** Always lastSeq: the tree of every record up to the segment's end. */
  treeSize: number;
  treeRoot: Buffer;
  firstOccurredAt: string;
  lastOccurredAt: string;
  /** SHA-256 of the previous segment's manifest file (its whole signed note), or 32 zero bytes. */
  previousManifest: Buffer;
}

const KEYS = [
  'origin', 'segment', 'file', 'file_sha256', 'file_size', 'records', 'first_seq', 'last_seq', 'prev_hash', 'end_hash',
  'tree_size', 'tree_root', 'first_occurred_at', 'last_occurred_at', 'previous_manifest',
] as const;

const b64 = (b: Buffer): string => b.toString('base64');

/** The manifest's note text: the format line, then one `key value` line per field in a fixed order. */
export function formatManifest(m: SegmentManifest): string {
  const values: Record<(typeof KEYS)[number], string> = {
    origin: m.origin,
    segment: m.segment,
    file: m.file,
    file_sha256: m.fileSha256.toString('hex'),
    file_size: String(m.fileSize),
    records: String(m.records),
    first_seq: String(m.firstSeq),
    last_seq: String(m.lastSeq),
    prev_hash: b64(m.prevHash),
    end_hash: b64(m.endHash),
    tree_size: String(m.treeSize),
    tree_root: b64(m.treeRoot),
    first_occurred_at: m.firstOccurredAt,
    last_occurred_at: m.lastOccurredAt,
    previous_manifest: b64(m.previousManifest),
  };
  return `${MANIFEST_FORMAT}\n${KEYS.map((k) => `${k} ${values[k]}\n`).join('')}`;
}

const DECIMAL = /^(?:0|[1-9][0-9]{0,15})$/;
const TIMESTAMP = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$/;

/** Parses a manifest's text strictly (every line, in order, canonical encodings), or undefined. */
export function parseManifestText(text: string): SegmentManifest | undefined {
  if (!text.endsWith('\n')) return undefined;
  const lines = text.slice(0, -1).split('\n');
  if (lines.length !== KEYS.length + 1 || lines[0] !== MANIFEST_FORMAT) return undefined;
  const values = new Map<string, string>();
  for (let i = 0; i < KEYS.length; i++) {
    const line = lines[i + 1]!;
    const prefix = `${KEYS[i]} `;
    if (!line.startsWith(prefix)) return undefined;
    values.set(KEYS[i]!, line.slice(prefix.length));
  }
  const get = (k: (typeof KEYS)[number]): string => values.get(k)!;
  const num = (k: (typeof KEYS)[number]): number | undefined => (DECIMAL.test(get(k)) ? Number(get(k)) : undefined);
  const hash = (k: (typeof KEYS)[number]): Buffer | undefined => {
    const bytes = decodeBase64Strict(get(k));
    return bytes?.length === 32 ? bytes : undefined;
  };
  const fileSha = /^[0-9a-f]{64}$/.test(get('file_sha256')) ? Buffer.from(get('file_sha256'), 'hex') : undefined;
  const m = {
    origin: get('origin'),
    segment: get('segment'),
    file: get('file'),
    fileSha256: fileSha,
    fileSize: num('file_size'),
    records: num('records'),
    firstSeq: num('first_seq'),
    lastSeq: num('last_seq'),
    prevHash: hash('prev_hash'),
    endHash: hash('end_hash'),
    treeSize: num('tree_size'),
    treeRoot: hash('tree_root'),
    firstOccurredAt: get('first_occurred_at'),
    lastOccurredAt: get('last_occurred_at'),
    previousManifest: hash('previous_manifest'),
  };
  if (Object.values(m).some((v) => v === undefined) || !m.origin || /\s/.test(m.origin)) return undefined;
  const manifest = m as SegmentManifest;
  const range = parseStem(manifest.segment);
  if (
    !range || range.firstSeq !== manifest.firstSeq || range.lastSeq !== manifest.lastSeq || manifest.file !== recordsFileName(manifest.segment) ||
    manifest.records !== manifest.lastSeq - manifest.firstSeq + 1 || manifest.treeSize !== manifest.lastSeq ||
    !TIMESTAMP.test(manifest.firstOccurredAt) || !TIMESTAMP.test(manifest.lastOccurredAt)
  ) {
    return undefined;
  }
  return manifest;
}

/** The signed manifest: its text, a blank line, the checkpoint key's note signature under `manifest.origin`. */
export function signManifest(manifest: SegmentManifest, privateKey: KeyObject): string {
  return signNote(formatManifest(manifest), [{ name: manifest.origin, privateKey }]);
}

/** SHA-256 of a manifest file's bytes (its UTF-8 text): what the next segment's `previous_manifest` holds. */
export const manifestHash = (note: string): Buffer => crypto.createHash('sha256').update(note, 'utf8').digest();

export type ManifestCheck = 'ok' | 'unknown_key' | 'bad_signature' | 'wrong_origin' | 'malformed';

/**
 * Opens a signed manifest: it must parse, name `origin` when one is given, carry a verified
 * signature of a trusted key under its own origin and none that fails.
 */
export function openManifest(note: string, trusted: ReadonlyMap<string, KeyObject>, origin?: string): { check: ManifestCheck; manifest?: SegmentManifest } {
  const split = note.lastIndexOf('\n\n');
  const manifest = split < 0 ? undefined : parseManifestText(note.slice(0, split + 1));
  if (!manifest) return { check: 'malformed' };
  if (origin !== undefined && manifest.origin !== origin) return { check: 'wrong_origin', manifest };
  const verifiers = [...trusted.values()].map((k) => parseVerifierKey(verifierKey(manifest.origin, k))!);
  let signatures;
  try {
    signatures = openNote(note, verifiers).signatures.filter((s) => s.known);
  } catch {
    return { check: 'malformed', manifest };
  }
  if (signatures.some((s) => !s.verified)) return { check: 'bad_signature', manifest };
  return { check: signatures.length > 0 ? 'ok' : 'unknown_key', manifest };
}

const HASH_FIELD = Buffer.from([0, 0, 0, 32]);

/** One entry of a records file: the canonical record (or its bytes, already encoded) and its stored hash as an 18th field. */
export function encodeEntry(record: ChainRecord | Buffer, hash: Buffer): Buffer {
  const canonical = Buffer.isBuffer(record) ? record : canonicalRecord(record);
  return Buffer.concat([canonical, HASH_FIELD, hash], canonical.length + 4 + 32);
}

/** An entry read back: its canonical bytes (to hash), the stored hash, and the fields the verifier checks. */
export interface ArchiveEntry {
  canonical: Buffer;
  hash: Buffer;
  seq: number;
  occurredAt: string;
}

/** The records file does not follow the format. */
export class ArchiveFormatError extends Error {
  override readonly name = 'ArchiveFormatError';
}

const FIELDS = 17;
const TAG = Buffer.from(RECORD_FORMAT, 'ascii');

/**
 * Splits a decompressed records file into entries, fed a chunk at a time: checks the header,
 * the length prefixes, the format tag and that seq and occurred_at are well formed. Keeps only the
 * bytes of an entry not yet complete.
 */
export class EntryReader {
  private pending: Buffer = Buffer.alloc(0);
  private headerRead = false;

  /** The complete entries in what has arrived so far. */
  push(chunk: Buffer): ArchiveEntry[] {
    let data = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    if (!this.headerRead) {
      if (data.length < RECORDS_HEADER.length) {
        this.pending = data;
        return [];
      }
      if (!data.subarray(0, RECORDS_HEADER.length).equals(RECORDS_HEADER)) throw new ArchiveFormatError('not an authtrail records file (header)');
      data = data.subarray(RECORDS_HEADER.length);
      this.headerRead = true;
    }
    const entries: ArchiveEntry[] = [];
    let at = 0;
    for (;;) {
      const end = entryEnd(data, at);
      if (end === undefined) break;
      entries.push(parseEntry(data.subarray(at, end)));
      at = end;
    }
    this.pending = Buffer.from(data.subarray(at));
    return entries;
  }

  /** Throws when the file ended inside an entry (or before its header). */
  end(): void {
    if (!this.headerRead) throw new ArchiveFormatError('not an authtrail records file (no header)');
    if (this.pending.length > 0) throw new ArchiveFormatError('the records file ends inside an entry');
  }
}

/** Where the entry starting at `at` ends, or undefined when it is not complete yet. */
function entryEnd(data: Buffer, at: number): number | undefined {
  let p = at;
  for (let field = 0; field <= FIELDS; field++) {
    if (p + 4 > data.length) return undefined;
    const length = data.readInt32BE(p);
    if (length < -1 || (field === FIELDS && length !== 32)) throw new ArchiveFormatError(`bad field length ${length}`);
    p += 4 + Math.max(length, 0);
    if (p > data.length) return undefined;
  }
  return p;
}

function parseEntry(entry: Buffer): ArchiveEntry {
  const fields: Array<Buffer | null> = [];
  let p = 0;
  for (let field = 0; field <= FIELDS; field++) {
    const length = entry.readInt32BE(p);
    fields.push(length < 0 ? null : entry.subarray(p + 4, p + 4 + length));
    p += 4 + Math.max(length, 0);
  }
  const [tag, seqText, , occurred] = fields;
  if (!tag?.equals(TAG)) throw new ArchiveFormatError('an entry does not start with the record format tag');
  const seq = seqText ? seqText.toString('ascii') : '';
  const occurredAt = occurred ? occurred.toString('ascii') : '';
  if (!DECIMAL.test(seq) || seq === '0' || !TIMESTAMP.test(occurredAt)) throw new ArchiveFormatError('an entry has a malformed seq or occurred_at');
  const hash = fields[FIELDS]!;
  return { canonical: entry.subarray(0, entry.length - 36), hash, seq: Number(seq), occurredAt };
}

let scratch = Buffer.allocUnsafe(16 * 1024);

/**
 * `hash` and Merkle leaf of canonical bytes: SHA-256(prev ‖ canonical) and SHA-256(0x00 ‖
 * canonical), both one-shot over one copy of the bytes (the leaf from one byte before the record,
 * set to 0x00), as the chain writer computes them.
 */
export function hashCanonical(prev: Buffer, canonical: Buffer): { hash: Buffer; leaf: Buffer } {
  const length = prev.length + canonical.length;
  if (scratch.length < length) scratch = Buffer.allocUnsafe(Math.max(length, scratch.length * 2));
  prev.copy(scratch, 0);
  canonical.copy(scratch, prev.length);
  const hash = crypto.hash('sha256', scratch.subarray(0, length), 'buffer');
  scratch[prev.length - 1] = 0x00;
  return { hash, leaf: crypto.hash('sha256', scratch.subarray(prev.length - 1, length), 'buffer') };
}
