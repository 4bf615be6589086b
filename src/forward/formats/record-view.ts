import fs from 'node:fs';
import type { StoredRecord } from '../../audit/follow.js';

/**
 * What every format needs from one committed audit record, computed once: its parsed `details`,
 * how serious it is, and the few facts (was it a login, which user) the mappings share. The
 * formats never see anything but committed records, and records hold no secret (no password,
 * code or token is ever a field), so nothing here has to be filtered out.
 */
export interface RecordView {
  record: StoredRecord;
  /** `details` parsed; null when the record has none. */
  details: Record<string, unknown> | null;
  severity: Severity;
}

/**
 * One scale for the syslog PRI, OCSF `severity_id`, ECS `event.severity` and CEF severity:
 * a success is informational, a refusal is a warning, an account locked or a replayed code needs
 * attention, and a stolen refresh token, a witness refusing a checkpoint or a raised alert is high.
 */
export type Severity = 'info' | 'low' | 'medium' | 'high';

const HIGH: ReadonlySet<string> = new Set(['token.reuse_detected', 'audit.witness_refused', 'alert.raised']);
const MEDIUM: ReadonlySet<string> = new Set(['lockout.started', 'mfa.replayed']);

export function severityOf(record: Pick<StoredRecord, 'event_type' | 'outcome'>): Severity {
  if (HIGH.has(record.event_type)) return 'high';
  if (MEDIUM.has(record.event_type)) return 'medium';
  return record.outcome === 'success' ? 'info' : 'low';
}

export function viewOf(record: StoredRecord): RecordView {
  let details: Record<string, unknown> | null = null;
  if (record.details !== null) {
    const parsed = JSON.parse(record.details) as unknown;
    details = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : { value: parsed };
  }
  return { record, details, severity: severityOf(record) };
}

/** Where a format's message came from: the product and the host it names. */
export interface FormatContext {
  /** The host the forwarder runs on (syslog HOSTNAME, OCSF `metadata.product`'s host, ECS `observer.hostname`). */
  hostname: string;
  /** authtrail's version (package.json). */
  version: string;
}

/** The version in package.json, found from this module whether it runs from src/ or dist/. */
export function productVersion(): string {
  try {
    const text = fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8');
    const version = (JSON.parse(text) as { version?: unknown }).version;
    return typeof version === 'string' ? version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** `occurred_at` (`YYYY-MM-DDTHH:MM:SS.ffffffZ`) as milliseconds since the epoch. */
export const epochMs = (occurredAt: string): number => Date.parse(occurredAt);

/** A `details` member as a string, when it is one. */
export function detailText(details: Record<string, unknown> | null, key: string): string | undefined {
  const value = details?.[key];
  return typeof value === 'string' ? value : undefined;
}
