import net from 'node:net';
import ipaddr from 'ipaddr.js';
import type { ChainRecord } from './canonical.js';
import { AUDIT_EVENT_TYPES, type AuditEventType, type AuditReason } from './vocabulary.js';

export type AuditOutcome = 'success' | 'failure';
export type MfaMethod = 'none' | 'totp' | 'recovery_code';

/** What a caller of `recordEvent` describes; the writer adds `seq`, `event_id`, time and hashes. */
export interface AuditEvent {
  /** One of the closed list in vocabulary.ts, e.g. `login.succeeded`, `lockout.started`. */
  eventType: AuditEventType;
  outcome: AuditOutcome;
  reason?: AuditReason | null;
  /** The username as attempted, even when no such user exists. */
  username?: string | null;
  userId?: string | null;
  ip?: string | null;
  userAgent?: string | null;
  deviceId?: string | null;
  mfaMethod?: MfaMethod | null;
  sessionId?: string | null;
  requestId?: string | null;
  actorId?: string | null;
  details?: Record<string, unknown> | null;
}

/** Longest stored text per field: attacker-supplied text is cut there and the cut is noted in `details.truncated`. */
export const FIELD_LIMITS = {
  reason: 128,
  username: 256,
  user_agent: 512,
  device_id: 128,
  request_id: 128,
} as const;

/** Largest `details` JSON text accepted: details are written by the gateway, never by clients. */
export const MAX_DETAILS_BYTES = 8192;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A lower-case hyphenated UUID, as PostgreSQL prints one. */
export const isUuid = (value: string): boolean => UUID.test(value);
const EVENT_TYPE = /^[a-z][a-z_]*(\.[a-z][a-z_]*)*$/;
const MFA_METHODS: ReadonlySet<string> = new Set(['none', 'totp', 'recovery_code']);
const KNOWN_EVENT_TYPES: ReadonlySet<string> = new Set(AUDIT_EVENT_TYPES);

/**
 * Makes client-supplied text storable and unambiguous: PostgreSQL text cannot hold NUL, and a lone
 * UTF-16 surrogate has no UTF-8 form, so both become U+FFFD before hashing.
 */
function storableText(value: string): string {
  return value.toWellFormed().replaceAll('\u0000', '\uFFFD');
}

function cappedText(
  value: string | null | undefined,
  field: keyof typeof FIELD_LIMITS,
  truncated: string[],
): string | null {
  if (value === null || value === undefined) return null;
  const text = storableText(value);
  const limit = FIELD_LIMITS[field];
  if (text.length <= limit) return text;
  truncated.push(field);
  // A surrogate pair cut in half becomes U+FFFD rather than an unencodable lone surrogate.
  return text.slice(0, limit).toWellFormed();
}

function uuidOrNull(value: string | null | undefined, field: string): string | null {
  if (value === null || value === undefined) return null;
  const lower = value.toLowerCase();
  if (!UUID.test(lower)) throw new TypeError(`audit event ${field} must be a UUID`);
  return lower;
}

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/**
 * The RFC 5952 text of an IPv6 address written as hex groups (no embedded IPv4), exactly as
 * ipaddr.js writes it: lower case, no leading zeros, the longest run of two or more zero groups
 * (the leftmost of equal runs) as `::`. Undefined for any other form and for IPv4-mapped
 * addresses, which are left to ipaddr.js. `text` has passed net.isIP as IPv6.
 */
function plainIpv6Text(text: string): string | undefined {
  if (text.includes('.')) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups: number[] = [];
  for (const g of head) {
    if (!HEX_GROUP.test(g)) return undefined;
    groups.push(parseInt(g, 16));
  }
  for (let i = 0; i < missing; i++) groups.push(0);
  for (const g of tail) {
    if (!HEX_GROUP.test(g)) return undefined;
    groups.push(parseInt(g, 16));
  }
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) return undefined;
  let runStart = -1;
  let runLength = 1; // a single zero group is not shortened
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j += 1;
    if (j - i > runLength) {
      runStart = i;
      runLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number): string => groups.slice(from, to).map((g) => g.toString(16)).join(':');
  return runStart < 0 ? hex(0, 8) : `${hex(0, runStart)}::${hex(runStart + runLength, 8)}`;
}

/** Canonical host text for an address; IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes plain IPv4. */
export function normalizeIp(ip: string | null | undefined): string | null {
  if (ip === null || ip === undefined || ip === '') return null;
  const bare = ip.replace(/%.*$/, ''); // zone ids are local to the host and not storable
  const family = net.isIP(bare);
  if (family === 0) throw new TypeError('audit event ip must be an IP address');
  // net.isIP accepts only plain dotted decimal without leading zeros for IPv4: already canonical.
  if (family === 4) return bare;
  // The common IPv6 form without ipaddr.js's general parser (test/unit/record.test.ts compares the two).
  const plain = plainIpv6Text(bare);
  if (plain !== undefined) return plain;
  const addr = ipaddr.parse(bare);
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) {
    return (addr as ipaddr.IPv6).toIPv4Address().toString();
  }
  return addr.toString();
}

/**
 * Validates an event and turns it into the record that will be hashed, minus `seq`.
 * Programming errors (bad event type, non-UUID ids) throw; client-supplied text is made storable.
 */
export function toChainRecord(event: AuditEvent, eventId: string, occurredAt: string): Omit<ChainRecord, 'seq'> {
  if (!EVENT_TYPE.test(event.eventType)) throw new TypeError(`audit event type ${event.eventType} is not a dotted name`);
  if (!KNOWN_EVENT_TYPES.has(event.eventType)) throw new TypeError(`audit event type ${event.eventType} is not in the vocabulary`);
  if (event.outcome !== 'success' && event.outcome !== 'failure') throw new TypeError('audit outcome must be success or failure');
  if (event.mfaMethod != null && !MFA_METHODS.has(event.mfaMethod)) throw new TypeError('audit mfa_method is not known');

  const truncated: string[] = [];
  const record = {
    event_id: eventId,
    occurred_at: occurredAt,
    event_type: event.eventType,
    outcome: event.outcome,
    reason: cappedText(event.reason, 'reason', truncated),
    username: cappedText(event.username, 'username', truncated),
    user_id: uuidOrNull(event.userId, 'user_id'),
    ip: normalizeIp(event.ip),
    user_agent: cappedText(event.userAgent, 'user_agent', truncated),
    device_id: cappedText(event.deviceId, 'device_id', truncated),
    mfa_method: event.mfaMethod ?? null,
    session_id: uuidOrNull(event.sessionId, 'session_id'),
    request_id: cappedText(event.requestId, 'request_id', truncated),
    actor_id: uuidOrNull(event.actorId, 'actor_id'),
    details: null as string | null,
  };

  const details = truncated.length > 0 ? { ...event.details, truncated } : event.details;
  if (details != null) {
    const text = storableText(JSON.stringify(details));
    if (Buffer.byteLength(text) > MAX_DETAILS_BYTES) throw new TypeError(`audit details exceed ${MAX_DETAILS_BYTES} bytes`);
    record.details = text;
  }
  return record;
}
