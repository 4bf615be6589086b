import { ocsfMapping } from './ocsf.js';
import { epochMs, type FormatContext, type RecordView, type Severity } from './record-view.js';

/**
 * ArcSight CEF lines (docs/streaming.md, "CEF"): `CEF:0|authtrail|authtrail|<version>|<event
 * type>|<name>|<severity>|<extension>`. Every value a client controls (username, user agent,
 * device id, reason, details) can carry pipes, backslashes, `=` and line breaks, so the header
 * escapes `\` and `|`, the extension escapes `\`, `=` and CR/LF, and no value can end a field or
 * forge another key. `externalId` = event_id and `cn1` = seq are the de-duplication keys.
 */

const SEVERITY: Record<Severity, number> = { info: 3, low: 5, medium: 7, high: 9 };

/** A header field: `\` and `|` escaped; a line break (never valid in a header) becomes a space. */
export function cefHeader(value: string): string {
  if (!/[\\|\r\n]/.test(value)) return value;
  return value.replace(/[\\|]/g, (c) => `\\${c}`).replace(/\r\n|[\r\n]/g, ' ');
}

/** An extension value: `\` and `=` escaped, CR and LF written as `\r` and `\n`. */
export function cefValue(value: string): string {
  if (!/[\\=\r\n]/.test(value)) return value; // the common case: nothing to escape
  return value.replace(/[\\=\r\n]/g, (c) => (c === '\r' ? '\\r' : c === '\n' ? '\\n' : `\\${c}`));
}

const CATEGORY: Record<number, string> = { 3002: 'authentication', 3001: 'iam', 6003: 'audit-read', 2004: 'finding', 0: 'other' };

export function toCef(view: RecordView, ctx: FormatContext): string {
  const r = view.record;
  const ext: Array<[string, string | number | null]> = [
    ['rt', epochMs(r.occurred_at)],
    ['externalId', r.event_id],
    ['cn1', r.seq],
    ['cn1Label', 'seq'],
    ['cat', CATEGORY[ocsfMapping(r.event_type).cls.class_uid] ?? 'other'],
    ['act', r.event_type],
    ['outcome', r.outcome],
    ['reason', r.reason],
    ['suser', r.username],
    ['suid', r.user_id],
    ['requestClientApplication', r.user_agent],
    ['dvchost', ctx.hostname],
    ['cs1', r.device_id],
    ['cs1Label', r.device_id === null ? null : 'deviceId'],
    ['cs2', r.mfa_method],
    ['cs2Label', r.mfa_method === null ? null : 'mfaMethod'],
    ['cs3', r.session_id],
    ['cs3Label', r.session_id === null ? null : 'sessionId'],
    ['cs4', r.request_id],
    ['cs4Label', r.request_id === null ? null : 'requestId'],
    ['cs5', r.hash],
    ['cs5Label', 'chainHash'],
    ['cs6', r.details],
    ['cs6Label', r.details === null ? null : 'details'],
    ['flexString1', r.actor_id],
    ['flexString1Label', r.actor_id === null ? null : 'actorId'],
  ];
  if (r.ip !== null) {
    if (r.ip.includes(':')) ext.push(['c6a2', r.ip], ['c6a2Label', 'Source IPv6 Address']);
    else ext.push(['src', r.ip]);
  }
  let extension = '';
  for (const [key, value] of ext) {
    if (value === null) continue;
    extension += `${extension === '' ? '' : ' '}${key}=${typeof value === 'number' ? value : cefValue(value)}`;
  }
  const name = r.event_type.replace(/[._]/g, ' ');
  const header = ['CEF:0', 'authtrail', 'authtrail', ctx.version, r.event_type, name, String(SEVERITY[view.severity])].map((f, i) => (i === 0 ? f : cefHeader(f)));
  return `${header.join('|')}|${extension}`;
}
