import crypto from 'node:crypto';
import type { Database } from '../db/database.js';
import { RECORD_FORMAT } from './canonical.js';
import { sqlTimestamp } from './clock.js';
import { leafHash } from './merkle.js';

/**
 * A stored record as the verifiers read it: the bytes PostgreSQL sent for its columns, unparsed.
 *
 * The canonical form of a record (docs/audit-chain.md, "Record layout") is 17 fields, each an
 * int32 length (-1 for NULL) and its bytes: exactly how a binary `COPY` writes a row's columns. So
 * the verifier selects the canonical field values in order, right after `prev_hash`, and the bytes
 * from `prev_hash` through the last field are `prev_hash ‖ canonical(record)`, the chain hash's
 * input, with nothing decoded and nothing encoded again.
 */
export interface StoredRecord {
  seq: number;
  /** The stored `prev_hash`. */
  prevHash: Buffer;
  /** The stored `hash`. */
  hash: Buffer;
  username: string | null;
  /** Derived, not hashed: must equal normalizeUsername(username), NULL when username is NULL. */
  account: string | null;
  /** The stored `ip` as text when it is a network rather than one host (only a host's address bytes are hashed). */
  network: string | null;
  /**
   * The stored `occurred_at` (with its era) when it lies outside the years 0001–9999, where its
   * canonical text stops telling times apart (`YYYY` prints 2026 BC as 2026).
   */
  strayTime: string | null;
  /**
   * Where the canonical text of `occurred_at` lies in `chained` (`chained[timeStart..timeEnd)`;
   * fixed width within the years 0001–9999): offsets, not a view, so no object per record.
   */
  timeStart: number;
  timeEnd: number;
  /** `prev_hash ‖ canonical(record)`: a view into the bytes read. */
  chained: Buffer;
}

/**
 * The columns of {@link readStoredRecords}, in wire order. Fields 1–17 are the canonical fields:
 * text exactly as hashed (the time stamp in UTC with six fraction digits whatever the session's
 * settings), and the address bytes of `ip` (`inet_send` is family, prefix length, a CIDR flag and
 * the byte count, then the address in network order).
 */
const COLUMNS = [
  'prev_hash',
  `'${RECORD_FORMAT}'::text`,
  'seq::text',
  'event_id::text',
  sqlTimestamp('occurred_at'),
  'event_type',
  'outcome',
  'reason',
  'username',
  'user_id::text',
  'substring(inet_send(ip) FROM 5)',
  'user_agent',
  'device_id',
  'mfa_method',
  'session_id::text',
  'request_id',
  'actor_id::text',
  'details::text',
  'hash',
  'account',
  `CASE WHEN masklen(ip) <> CASE family(ip) WHEN 4 THEN 32 ELSE 128 END THEN ip::text END`,
  // 'infinity' is outside the range too, and has no to_char text (NULL), so it is named here.
  `CASE WHEN occurred_at < '0001-01-01 00:00:00+00' OR occurred_at >= '10000-01-01 00:00:00+00'
        THEN CASE WHEN isfinite(occurred_at) THEN to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US BC')
                  WHEN occurred_at > '2000-01-01 00:00:00+00' THEN 'infinity' ELSE '-infinity' END END`,
];
const FIELD_COUNT = COLUMNS.length;
const SEQ = 2;
const OCCURRED_AT = 4;
const USERNAME = 8;
const HASH = 18;
const ACCOUNT = 19;
const NETWORK = 20;
const STRAY_TIME = 21;

/**
 * The query a page of records is copied from: those with `seq` above `afterSeq` (from `afterSeq`
 * itself with `inclusive`), or every one when `afterSeq` is null, so that no row with a seq of 0
 * or below escapes a walk from the genesis.
 */
export function storedRecordsSql(afterSeq: number | null, limit: number, inclusive = false): string {
  if ((afterSeq !== null && !Number.isSafeInteger(afterSeq)) || !Number.isSafeInteger(limit) || limit < 1) throw new RangeError('a page starts at a seq and holds at least one record');
  const where = afterSeq === null ? '' : `WHERE seq ${inclusive ? '>=' : '>'} ${afterSeq} `;
  return `SELECT ${COLUMNS.join(', ')} FROM public.audit_log ${where}ORDER BY audit_log.seq LIMIT ${limit}`;
}

/** The 11-byte signature that opens binary COPY output. */
const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
/** The fixed part of the header: signature, flags, extension area length. */
const HEADER = SIGNATURE.length + 8;
/** No PostgreSQL value is longer than 1 GB - 1 bytes (MaxAllocSize), nor is the row COPY sends. */
const MAX_FIELD_LENGTH = 0x3fffffff;

/**
 * Decodes binary `COPY` output of the columns above into records, chunk by chunk: a row cut
 * between chunks is completed by the next ones.
 *
 * Each record views the bytes it was read from: the chunk that holds its whole row, or the one
 * buffer a row cut between chunks is gathered into, which nothing else writes to. Such a row is
 * carried as the list of its pieces; its length words are read across them as they arrive, so
 * once they are all here the row's length is known, and its pieces are joined once, when the
 * last one comes. A row of N bytes is thus copied once, whatever the number of chunks it spans
 * (joining it to each new chunk copied it once per chunk: O(N²), minutes for a 200 MB field).
 */
export class StoredRecordDecoder {
  /** Bytes not decoded yet: the start of an incomplete row (or of the header) and the chunks after it. */
  private carried: Buffer[] = [];
  private carriedLength = 0;
  /** How many carried bytes are needed, at least, before anything more can be read. */
  private needed = 0;
  /** Whether `carried` starts with a row whose field count has been read, scanned as below. */
  private carryingRow = false;
  /** Of the carried row: how many of its fields' length words have been read. */
  private rowFields = 0;
  /** Of the carried row: where its next length word starts (its end, once all are read), from its first byte. */
  private rowNext = 0;
  /** The carried piece where the last length word was read, and the offset of its first byte. */
  private cursor = 0;
  private cursorStart = 0;
  private headerRead = false;
  private ended = false;
  private readonly offsets = new Int32Array(FIELD_COUNT);
  /** Of the last {@link scan}: how many length words it read, and where it stopped. */
  private scannedFields = 0;
  private scannedTo = 0;

  /** The records completed by `chunk`. */
  push(chunk: Buffer): StoredRecord[] {
    const records: StoredRecord[] = [];
    if (chunk.length === 0) return records;
    if (this.ended) throw new Error('bytes after the end of binary COPY output');
    if (this.carriedLength === 0) return this.decode(chunk, 0, records);
    this.carried.push(chunk);
    this.carriedLength += chunk.length;
    if (this.carriedLength < this.needed) return records;
    if (!this.carryingRow) {
      // The header or a row's field count was cut: a few bytes, joined with this chunk.
      const bytes = Buffer.concat(this.carried, this.carriedLength);
      this.drop();
      return this.decode(bytes, 0, records);
    }
    this.scanCarried();
    if (this.carriedLength < this.needed) return records;
    // The row is all here, and ends in this chunk (it did not end in the bytes before it).
    const length = this.rowNext;
    const tail = length - (this.carriedLength - chunk.length);
    this.carried[this.carried.length - 1] = chunk.subarray(0, tail);
    const row = Buffer.concat(this.carried, length);
    this.drop();
    if (this.scan(row, 2) !== length) throw new Error('a carried row was measured wrongly');
    records.push(this.record(row));
    return this.decode(chunk, tail, records);
  }

  /** Fails when the output stopped inside a row or before its end marker. */
  finish(): void {
    if (!this.ended || this.carriedLength > 0) throw new Error('binary COPY output ended early');
  }

  /** Decodes `bytes` from `at` on into `records`, carrying an incomplete end. */
  private decode(bytes: Buffer, from: number, records: StoredRecord[]): StoredRecord[] {
    let at = from;
    if (!this.headerRead) {
      if (bytes.length - at < HEADER) return this.carry(bytes, at, HEADER, records);
      if (!bytes.subarray(at, at + SIGNATURE.length).equals(SIGNATURE)) throw new Error('not binary COPY output');
      const extension = bytes.readUInt32BE(at + SIGNATURE.length + 4);
      if (extension > MAX_FIELD_LENGTH) throw new Error(`a binary COPY header extension of ${extension} bytes is longer than PostgreSQL writes`);
      if (bytes.length - at < HEADER + extension) return this.carry(bytes, at, HEADER + extension, records);
      at += HEADER + extension;
      this.headerRead = true;
    }
    while (at < bytes.length) {
      if (this.ended) throw new Error('bytes after the end of binary COPY output');
      if (at + 2 > bytes.length) return this.carry(bytes, at, 2, records);
      const fields = bytes.readInt16BE(at);
      if (fields === -1) {
        this.ended = true;
        at += 2;
        continue;
      }
      if (fields !== FIELD_COUNT) throw new Error(`a copied record has ${fields} columns, not ${FIELD_COUNT}`);
      const end = this.scan(bytes, at + 2);
      if (end >= 0) {
        records.push(this.record(bytes));
        at = end;
        continue;
      }
      // A row cut short: what scan read of it is kept, and the rest is read as it arrives.
      this.carry(bytes, at, 0, records);
      this.carryingRow = true;
      this.rowFields = this.scannedFields;
      this.rowNext = this.scannedTo - at;
      this.needed = this.rowFields < FIELD_COUNT ? this.rowNext + 4 : this.rowNext;
      return records;
    }
    return records;
  }

  /** Keeps `bytes` from `from` on, which need `needed` bytes before they can be read further. */
  private carry(bytes: Buffer, from: number, needed: number, records: StoredRecord[]): StoredRecord[] {
    this.carried = [bytes.subarray(from)];
    this.carriedLength = bytes.length - from;
    this.needed = needed;
    this.carryingRow = false;
    this.cursor = 0;
    this.cursorStart = 0;
    return records;
  }

  private drop(): void {
    this.carried = [];
    this.carriedLength = 0;
    this.needed = 0;
    this.carryingRow = false;
  }

  /** Reads the carried row's length words that have arrived, and how many bytes it then needs. */
  private scanCarried(): void {
    while (this.rowFields < FIELD_COUNT && this.rowNext + 4 <= this.carriedLength) {
      const length = this.carriedInt32(this.rowNext);
      checkFieldLength(length);
      this.rowNext += 4 + (length > 0 ? length : 0);
      this.rowFields += 1;
    }
    this.needed = this.rowFields < FIELD_COUNT ? this.rowNext + 4 : this.rowNext;
  }

  /** The int32 at `offset` of the carried bytes (`offset` + 4 of them are here), across pieces; offsets only grow. */
  private carriedInt32(offset: number): number {
    const { carried } = this;
    while (offset >= this.cursorStart + carried[this.cursor]!.length) {
      this.cursorStart += carried[this.cursor]!.length;
      this.cursor += 1;
    }
    const piece = carried[this.cursor]!;
    const local = offset - this.cursorStart;
    if (local + 4 <= piece.length) return piece.readInt32BE(local);
    let value = 0;
    let index = this.cursor;
    let start = this.cursorStart;
    for (let k = 0; k < 4; k++) {
      while (offset + k >= start + carried[index]!.length) start += carried[index++]!.length;
      value = value * 256 + carried[index]![offset + k - start]!;
    }
    return value | 0;
  }

  /**
   * Records where each field's length word starts; the end of the row, or -1 when it is not all
   * here (then {@link scannedFields} and {@link scannedTo} say how far it got).
   */
  private scan(bytes: Buffer, from: number): number {
    let at = from;
    for (let i = 0; i < FIELD_COUNT; i++) {
      if (at + 4 > bytes.length) {
        this.scannedFields = i;
        this.scannedTo = at;
        return -1;
      }
      this.offsets[i] = at;
      const length = bytes.readInt32BE(at);
      checkFieldLength(length);
      at += 4 + (length > 0 ? length : 0);
    }
    if (at > bytes.length) {
      this.scannedFields = FIELD_COUNT;
      this.scannedTo = at;
      return -1;
    }
    return at;
  }

  private record(bytes: Buffer): StoredRecord {
    const o = this.offsets;
    const prevHash = field(bytes, o[0]!) ?? EMPTY;
    return {
      seq: digits(bytes, o[SEQ]!),
      prevHash,
      hash: field(bytes, o[HASH]!) ?? EMPTY,
      username: text(bytes, o[USERNAME]!),
      account: text(bytes, o[ACCOUNT]!),
      network: text(bytes, o[NETWORK]!),
      strayTime: text(bytes, o[STRAY_TIME]!),
      // `chained` starts 4 bytes after prev_hash's length word, the time 4 bytes after its own.
      timeStart: o[OCCURRED_AT]! - o[0]!,
      timeEnd: o[OCCURRED_AT]! - o[0]! + Math.max(0, bytes.readInt32BE(o[OCCURRED_AT])),
      // From the first byte of prev_hash to the length word of `hash`.
      chained: bytes.subarray(o[0]! + 4, o[HASH]),
    };
  }
}

const EMPTY = Buffer.alloc(0);

/** A field's length word must be -1 (NULL) or a length PostgreSQL can write. */
function checkFieldLength(length: number): void {
  if (length < -1 || length > MAX_FIELD_LENGTH) throw new Error(`a copied field length of ${length} bytes is neither NULL (-1) nor one PostgreSQL writes`);
}

/** The bytes of the field whose length word is at `at`; null for NULL. */
function field(bytes: Buffer, at: number): Buffer | null {
  const length = bytes.readInt32BE(at);
  return length < 0 ? null : bytes.subarray(at + 4, at + 4 + length);
}

function text(bytes: Buffer, at: number): string | null {
  const length = bytes.readInt32BE(at);
  return length < 0 ? null : bytes.toString('utf8', at + 4, at + 4 + length);
}

/** A decimal seq; NaN when the field is not plain digits (a copied record is then out of sequence). */
function digits(bytes: Buffer, at: number): number {
  const length = bytes.readInt32BE(at);
  if (length < 1 || length > 16) return NaN;
  let value = 0;
  for (let i = at + 4; i < at + 4 + length; i++) {
    const d = bytes[i]! - 48;
    if (d < 0 || d > 9) return NaN;
    value = value * 10 + d;
  }
  return value;
}

/**
 * The records after `afterSeq` in `seq` order, a page of at most `pageSize` at a time, each page
 * one binary `COPY` streamed as it arrives. Every later page starts at the last seq read, not
 * after it, and skips that one record: a second row with the same seq (inserted into another
 * month's partition) is then met by the walk instead of falling between two pages. From the
 * genesis (`afterSeq` 0) there is no lower bound: a row with a seq of 0 or below is met too.
 */
export async function* readStoredRecords(db: Pick<Database, 'copyOut'>, afterSeq: number, pageSize: number): AsyncGenerator<StoredRecord[]> {
  let limit = pageSize;
  let sql = storedRecordsSql(afterSeq === 0 ? null : afterSeq, limit);
  let skip: number | undefined;
  for (;;) {
    const decoder = new StoredRecordDecoder();
    let count = 0;
    let last: number | undefined;
    for await (const chunk of db.copyOut(sql)) {
      let records = decoder.push(chunk);
      if (records.length === 0) continue;
      count += records.length;
      if (skip !== undefined && records[0]!.seq === skip) records = records.slice(1);
      skip = undefined;
      last = records.at(-1)?.seq ?? last;
      if (records.length > 0) yield records;
    }
    decoder.finish();
    // A seq that is not a number ends the walk at that record, which the caller reports.
    if (count < limit || last === undefined || !Number.isSafeInteger(last)) return;
    // The record skipped comes again: one more row keeps a page at `pageSize` new ones.
    limit = pageSize + 1;
    sql = storedRecordsSql(last, limit, true);
    skip = last;
  }
}

const sha256 = (data: Uint8Array): Buffer => crypto.hash('sha256', data, 'buffer');

/** SHA-256(prev_hash ‖ canonical(record)), with the stored prev_hash (the walk has checked it is the previous hash). */
export const storedChainHash = (record: StoredRecord): Buffer => sha256(record.chained);

/**
 * The record's Merkle leaf hash, SHA-256(0x00 ‖ canonical(record)): hashed in place, from the
 * last byte of prev_hash set to 0x00 for the call and then restored.
 */
export function storedLeafHash(record: StoredRecord): Buffer {
  const { chained, prevHash } = record;
  if (prevHash.length === 0) return leafHash(chained);
  const at = prevHash.length - 1;
  const kept = chained[at]!;
  chained[at] = 0x00;
  try {
    return sha256(chained.subarray(at));
  } finally {
    chained[at] = kept;
  }
}
