import crypto from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { leafHash } from './merkle.js';

/** `prev_hash` of record 1: 32 zero bytes. */
export const GENESIS_HASH: Buffer = Buffer.alloc(32);

/** First field of every canonical record; a new layout gets a new tag. */
export const RECORD_FORMAT = 'authtrail-audit-v1';

/** One audit record as it is hashed: every value is text (or NULL) exactly as stored. */
export interface ChainRecord {
  seq: number;
  event_id: string;
  /** UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, always six fraction digits. */
  occurred_at: string;
  event_type: string;
  outcome: string;
  reason: string | null;
  username: string | null;
  user_id: string | null;
  /** Host address as text; hashed as its 4 or 16 network-order bytes. */
  ip: string | null;
  user_agent: string | null;
  device_id: string | null;
  mfa_method: string | null;
  session_id: string | null;
  request_id: string | null;
  actor_id: string | null;
  /** The stored JSON text, byte for byte. */
  details: string | null;
}

type Field = Buffer | string | null;

/**
 * Writes length-prefixed fields (int32 big-endian length + bytes; length -1 for NULL) into one
 * buffer reused across records: hashing a long chain would otherwise allocate per field.
 */
class FieldWriter {
  private buf = Buffer.allocUnsafe(16 * 1024);
  private at = 0;

  /** Starts a new message that needs at most `capacity` bytes; the previous view becomes invalid. */
  start(capacity: number): this {
    if (capacity > this.buf.length) this.buf = Buffer.allocUnsafe(Math.max(capacity, this.buf.length * 2));
    this.at = 0;
    return this;
  }

  raw(bytes: Buffer): this {
    this.at += bytes.copy(this.buf, this.at);
    return this;
  }

  field(value: Field): this {
    if (value === null) {
      this.at = this.buf.writeInt32BE(-1, this.at);
    } else if (typeof value === 'string') {
      // Short ASCII text (nearly every field) is copied byte for byte, which is the same bytes as
      // UTF-8 and cheaper than a call into Buffer#write; anything else goes through Buffer#write.
      const length = value.length;
      if (length <= 64) {
        const buf = this.buf;
        let j = this.at + 4;
        let k = 0;
        for (; k < length; k++) {
          const c = value.charCodeAt(k);
          if (c > 0x7f) break;
          buf[j++] = c;
        }
        if (k === length) {
          buf.writeInt32BE(length, this.at);
          this.at += 4 + length;
          return this;
        }
      }
      const n = this.buf.write(value, this.at + 4, 'utf8');
      this.buf.writeInt32BE(n, this.at);
      this.at += 4 + n;
    } else {
      this.at = this.buf.writeInt32BE(value.length, this.at);
      this.raw(value);
    }
    return this;
  }

  /** A host address as its 4 or 16 network-order bytes. */
  ip(value: string | null): this {
    if (value === null) return this.field(null);
    const start = this.at;
    const v4 = writeIpv4(value, this.buf, start + 4);
    if (v4) {
      this.buf.writeInt32BE(4, start);
      this.at = start + 8;
    } else {
      if (!writePlainIpv6(value, this.buf, start + 4)) {
        if (!value.includes(':')) throw new TypeError(`${value} is not an IP address`);
        Buffer.from(ipaddr.IPv6.parse(value).toByteArray()).copy(this.buf, start + 4);
      }
      this.buf.writeInt32BE(16, start);
      this.at = start + 20;
    }
    return this;
  }

  view(): Buffer {
    return this.buf.subarray(0, this.at);
  }
}

/** Dotted-quad IPv4 into 4 bytes at `at`; false when the text is not exactly that form. */
function writeIpv4(text: string, out: Buffer, at: number): boolean {
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46; // a virtual '.' closes the last part
    if (c >= 48 && c <= 57 && digits < 3) {
      value = value * 10 + (c - 48);
      digits += 1;
    } else if (c === 46 && digits > 0 && value <= 255 && part < 4) {
      out[at + part] = value;
      part += 1;
      value = 0;
      digits = 0;
    } else {
      return false;
    }
  }
  return part === 4;
}

/** Hex-group IPv6 (no embedded IPv4, no zone) into 16 bytes at `at`; false when it is not that form. */
function writePlainIpv6(text: string, out: Buffer, at: number): boolean {
  const halves = text.split('::');
  if (halves.length > 2) return false;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return false;
  out.fill(0, at, at + 16);
  const put = (groups: string[], first: number): boolean =>
    groups.every((g, i) => {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return false;
      out.writeUInt16BE(parseInt(g, 16), at + (first + i) * 2);
      return true;
    });
  return put(head, 0) && put(tail, 8 - tail.length);
}

const writer = new FieldWriter();

/** Encodes fields with the length-prefix scheme (a fresh buffer). */
export function encodeFields(fields: readonly Field[]): Buffer {
  let capacity = 0;
  for (const f of fields) capacity += 4 + (f === null ? 0 : typeof f === 'string' ? f.length * 3 : f.length);
  writer.start(capacity);
  for (const f of fields) writer.field(f);
  return Buffer.from(writer.view());
}

/** The 4 (IPv4) or 16 (IPv6) bytes of a host address. */
export function ipBytes(ip: string): Buffer {
  return Buffer.from(writer.start(32).ip(ip).view().subarray(4));
}

const textLength = (v: string | null): number => (v === null ? 0 : v.length * 3);

/** Writes `prefix ‖ canonical(r)` into the shared writer and returns a view of it. */
function writeRecord(r: ChainRecord, prefix?: Buffer): Buffer {
  const capacity =
    (prefix?.length ?? 0) + 17 * 4 + 16 + 64 + 36 * 4 + 27 +
    textLength(r.event_type) + textLength(r.outcome) + textLength(r.reason) + textLength(r.username) +
    textLength(r.user_agent) + textLength(r.device_id) + textLength(r.mfa_method) + textLength(r.request_id) +
    textLength(r.details);
  writer.start(capacity);
  if (prefix) writer.raw(prefix);
  return writer
    .field(RECORD_FORMAT)
    .field(String(r.seq))
    .field(r.event_id)
    .field(r.occurred_at)
    .field(r.event_type)
    .field(r.outcome)
    .field(r.reason)
    .field(r.username)
    .field(r.user_id)
    .ip(r.ip)
    .field(r.user_agent)
    .field(r.device_id)
    .field(r.mfa_method)
    .field(r.session_id)
    .field(r.request_id)
    .field(r.actor_id)
    .field(r.details)
    .view();
}

/** The canonical byte form of a record (docs/audit-chain.md, "Record layout"). */
export function canonicalRecord(r: ChainRecord): Buffer {
  return Buffer.from(writeRecord(r));
}

/** `hash = SHA-256(prev_hash ‖ canonical(record))`. */
export function chainHash(prevHash: Buffer, record: ChainRecord): Buffer {
  return crypto.hash('sha256', writeRecord(record, prevHash), 'buffer');
}

/** The record's Merkle leaf hash, SHA-256(0x00 ‖ canonical(record)) (RFC 9162; docs/audit-chain.md, "The Merkle tree"). */
export function recordLeafHash(record: ChainRecord): Buffer {
  return leafHash(writeRecord(record));
}

/**
 * Both hashes of a record from one encoding (the chain writer's hot path): `hash` =
 * SHA-256(prev_hash ‖ canonical) and `leaf` = SHA-256(0x00 ‖ canonical), the latter by hashing
 * the same bytes from one position earlier with that byte set to 0x00.
 */
export function recordHashes(prevHash: Buffer, record: ChainRecord): { hash: Buffer; leaf: Buffer } {
  const bytes = writeRecord(record, prevHash);
  const hash = crypto.hash('sha256', bytes, 'buffer');
  bytes[prevHash.length - 1] = 0x00;
  return { hash, leaf: crypto.hash('sha256', bytes.subarray(prevHash.length - 1), 'buffer') };
}
