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
];
const FIELD_COUNT = COLUMNS.length;
const SEQ = 2;
const USERNAME = 8;
const HASH = 18;
const ACCOUNT = 19;
const NETWORK = 20;

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

/**
 * Decodes binary `COPY` output of the columns above into records, chunk by chunk: a row cut
 * between two chunks is completed by the next one.
 */
export class StoredRecordDecoder {
  private rest: Buffer | undefined;
  private headerRead = false;
  private ended = false;
  private readonly offsets = new Int32Array(FIELD_COUNT);

  /** The records completed by `chunk`. */
  push(chunk: Buffer): StoredRecord[] {
    const bytes = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    this.rest = undefined;
    const records: StoredRecord[] = [];
    let at = 0;
    if (!this.headerRead) {
      if (bytes.length < SIGNATURE.length + 8) {
        this.rest = bytes;
        return records;
      }
      if (!bytes.subarray(0, SIGNATURE.length).equals(SIGNATURE)) throw new Error('not binary COPY output');
      const extension = bytes.readUInt32BE(SIGNATURE.length + 4);
      if (bytes.length < SIGNATURE.length + 8 + extension) {
        this.rest = bytes;
        return records;
      }
      at = SIGNATURE.length + 8 + extension;
      this.headerRead = true;
    }
    while (at + 2 <= bytes.length) {
      if (this.ended) throw new Error('bytes after the end of binary COPY output');
      const fields = bytes.readInt16BE(at);
      if (fields === -1) {
        this.ended = true;
        at += 2;
        continue;
      }
      if (fields !== FIELD_COUNT) throw new Error(`a copied record has ${fields} columns, not ${FIELD_COUNT}`);
      const end = this.scan(bytes, at + 2);
      if (end < 0) break;
      records.push(this.record(bytes));
      at = end;
    }
    if (at < bytes.length) this.rest = bytes.subarray(at);
    return records;
  }

  /** Fails when the output stopped inside a row or before its end marker. */
  finish(): void {
    if (!this.ended || this.rest) throw new Error('binary COPY output ended early');
  }

  /** Records where each field's length word starts; the end of the row, or -1 when it is not all here. */
  private scan(bytes: Buffer, from: number): number {
    let at = from;
    for (let i = 0; i < FIELD_COUNT; i++) {
      if (at + 4 > bytes.length) return -1;
      this.offsets[i] = at;
      const length = bytes.readInt32BE(at);
      at += 4 + (length > 0 ? length : 0);
    }
    return at <= bytes.length ? at : -1;
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
      // From the first byte of prev_hash to the length word of `hash`.
      chained: bytes.subarray(o[0]! + 4, o[HASH]),
    };
  }
}

const EMPTY = Buffer.alloc(0);

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
