import crypto from 'node:crypto';
import ipaddr from 'ipaddr.js';

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

const NULL_LENGTH = Buffer.from([0xff, 0xff, 0xff, 0xff]); // int32 -1, as in the PostgreSQL wire protocol

/** Encodes fields as int32 big-endian length + bytes, with length -1 for NULL. */
export function encodeFields(fields: ReadonlyArray<Buffer | string | null>): Buffer {
  const parts: Buffer[] = [];
  for (const field of fields) {
    if (field === null) {
      parts.push(NULL_LENGTH);
      continue;
    }
    const bytes = typeof field === 'string' ? Buffer.from(field, 'utf8') : field;
    const length = Buffer.allocUnsafe(4);
    length.writeInt32BE(bytes.length);
    parts.push(length, bytes);
  }
  return Buffer.concat(parts);
}

/** The 4 (IPv4) or 16 (IPv6) bytes of a host address. */
export function ipBytes(ip: string): Buffer {
  return Buffer.from(ipaddr.parse(ip).toByteArray());
}

/** The canonical byte form of a record (docs/audit-chain.md, "Record layout"). */
export function canonicalRecord(r: ChainRecord): Buffer {
  return encodeFields([
    RECORD_FORMAT,
    String(r.seq),
    r.event_id,
    r.occurred_at,
    r.event_type,
    r.outcome,
    r.reason,
    r.username,
    r.user_id,
    r.ip === null ? null : ipBytes(r.ip),
    r.user_agent,
    r.device_id,
    r.mfa_method,
    r.session_id,
    r.request_id,
    r.actor_id,
    r.details,
  ]);
}

/** `hash = SHA-256(prev_hash ‖ canonical(record))`. */
export function chainHash(prevHash: Buffer, record: ChainRecord): Buffer {
  return crypto.createHash('sha256').update(prevHash).update(canonicalRecord(record)).digest();
}
