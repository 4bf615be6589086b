import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';

/** A formatted JSON document, read by path in the assertions (their shape is what is checked). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = Record<string, any>;
import type { StoredRecord } from '../../src/audit/follow.js';
import { AUDIT_EVENT_TYPES } from '../../src/audit/vocabulary.js';
import { cefHeader, cefValue, toCef } from '../../src/forward/formats/cef.js';
import { toEcs } from '../../src/forward/formats/ecs.js';
import { formatRecord, viewOf } from '../../src/forward/formats/index.js';
import { toNative } from '../../src/forward/formats/native.js';
import { OCSF_VERSION, toOcsf } from '../../src/forward/formats/ocsf.js';
import { backoffMs } from '../../src/forward/sink-loop.js';
import { parseSinks } from '../../src/forward/sinks-file.js';
import { octetFrame, sdValue, syslogMessage } from '../../src/forward/syslog.js';

interface Requirements {
  schema_version: string;
  classes: Record<string, { file: string; extends?: string; class_uid?: number; required: string[]; at_least_one?: string[][] }>;
  objects: Record<string, { file: string; required: string[]; at_least_one?: string[][] }>;
  object_attributes: Record<string, string>;
}

const REQUIRED = JSON.parse(fs.readFileSync(new URL('./vectors/ocsf-1.8.0-required.json', import.meta.url), 'utf8')) as Requirements;
const CTX = { hostname: 'gw-1.example.com', version: '0.1.0' };
const HOSTILE = 'evil|name\\with=equals\nand\rbreaks | CEF:0|x|y';

function record(eventType: string, i: number, overrides: Partial<StoredRecord> = {}): StoredRecord {
  return {
    seq: 1000 + i,
    event_id: `0190f3a4-5b6c-7d8e-9f00-${String(112233445566 + i).padStart(12, '0')}`,
    occurred_at: '2026-01-02T03:04:05.678901Z',
    event_type: eventType,
    outcome: eventType.endsWith('failed') || eventType.includes('refused') || eventType === 'mfa.replayed' || eventType === 'token.reuse_detected' ? 'failure' : 'success',
    reason: null,
    username: 'alice@example.com',
    user_id: '6f1c2a9e-0b7d-4c55-9a43-3e2f1d0c9b8a',
    ip: '192.0.2.1',
    user_agent: 'curl/8.5.0',
    device_id: 'device-1',
    mfa_method: 'totp',
    session_id: null,
    request_id: 'req-1',
    actor_id: null,
    details: '{"attempt":1}',
    hash: 'ab'.repeat(32),
    prev_hash: 'cd'.repeat(32),
    account: 'alice@example.com',
    ...overrides,
  };
}

/** Every event type the gateway writes, the alert engine's two, and one no version knows yet; each with and without the optional fields. */
function everyRecord(): StoredRecord[] {
  const types = [...AUDIT_EVENT_TYPES, 'alert.raised', 'alert.resolved', 'future.event'];
  return types.flatMap((type, i) => [
    record(type, i * 3),
    record(type, i * 3 + 1, { username: null, user_id: null, ip: null, user_agent: null, device_id: null, mfa_method: null, details: null, request_id: null }),
    record(type, i * 3 + 2, { ip: '2001:db8::7', actor_id: '11111111-2222-4333-8444-555555555555', username: HOSTILE, reason: 'wrong_password', details: '{"via":"cli","resource":"login-events","rule":"spray"}' }),
  ]);
}

const present = (v: unknown): boolean => v !== undefined && v !== null && v !== '';

function classChain(name: string): string[] {
  const chain: string[] = [];
  for (let c: string | undefined = name; c; c = REQUIRED.classes[c]!.extends) chain.push(c);
  return chain;
}

function checkObject(value: unknown, objectName: string, where: string): void {
  const spec = REQUIRED.objects[objectName];
  assert.ok(spec, `no requirements transcribed for object ${objectName}`);
  assert.ok(value !== null && typeof value === 'object', `${where} is an object`);
  const obj = value as Record<string, unknown>;
  for (const attr of spec.required) assert.ok(present(obj[attr]), `${where}.${attr} is required (${spec.file})`);
  for (const group of spec.at_least_one ?? []) assert.ok(group.some((a) => present(obj[a])), `${where} needs one of ${group.join(', ')} (${spec.file})`);
}

test('every OCSF message has every attribute the schema requires for its class, its parents and its objects', () => {
  const byUid = new Map(Object.entries(REQUIRED.classes).filter(([, c]) => c.class_uid !== undefined).map(([name, c]) => [c.class_uid!, name]));
  const seen = new Set<number>();
  for (const r of everyRecord()) {
    const event = toOcsf(viewOf(r), CTX);
    const className = byUid.get(event.class_uid as number);
    assert.ok(className, `${r.event_type}: class_uid ${String(event.class_uid)} is one of the transcribed classes`);
    seen.add(event.class_uid as number);
    for (const c of classChain(className)) {
      const spec = REQUIRED.classes[c]!;
      for (const attr of spec.required) assert.ok(present(event[attr]), `${r.event_type} (seq ${r.seq}): ${attr} is required by ${spec.file}`);
      for (const group of spec.at_least_one ?? []) assert.ok(group.some((a) => present(event[a])), `${r.event_type}: one of ${group.join(', ')} (${spec.file})`);
    }
    for (const [attrPath, objectName] of Object.entries(REQUIRED.object_attributes)) {
      const value = attrPath.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], event);
      if (value !== undefined) checkObject(value, objectName, `${r.event_type}: ${attrPath}`);
    }
    assert.equal(event.type_uid, (event.class_uid as number) * 100 + (event.activity_id as number));
    assert.equal(typeof event.time, 'number');
    assert.equal(event.time, Date.UTC(2026, 0, 2, 3, 4, 5, 678));
    const metadata = event.metadata as Record<string, unknown>;
    assert.equal(metadata.version, REQUIRED.schema_version);
    assert.equal(metadata.uid, r.event_id, 'metadata.uid is the event_id');
    assert.equal(metadata.sequence, r.seq, 'metadata.sequence is the seq');
    assert.equal((event.unmapped as { authtrail: { hash: string } }).authtrail.hash, r.hash, 'the chain hash is in unmapped.authtrail');
  }
  assert.deepEqual([...seen].sort((a, b) => a - b), [0, 2004, 3001, 3002, 6003]);
  assert.equal(OCSF_VERSION, REQUIRED.schema_version);
});

test('OCSF classes: logins, MFA steps, refreshes and logouts are Authentication; account changes and locks Account Change; alerts Detection Finding', () => {
  const cls = (type: string, overrides: Partial<StoredRecord> = {}) => {
    const e = toOcsf(viewOf(record(type, 1, overrides)), CTX);
    return [e.class_uid, e.activity_id, e.status_id];
  };
  assert.deepEqual(cls('login.succeeded'), [3002, 1, 1]);
  assert.deepEqual(cls('login.failed', { outcome: 'failure' }), [3002, 1, 2]);
  assert.deepEqual(cls('login.mfa_required', { outcome: 'failure' }), [3002, 1, 2]);
  assert.deepEqual(cls('mfa.replayed', { outcome: 'failure' }), [3002, 1, 2]);
  assert.deepEqual(cls('token.refreshed'), [3002, 99, 1]);
  assert.deepEqual(cls('logout'), [3002, 2, 1]);
  assert.deepEqual(cls('user.created'), [3001, 1, 1]);
  assert.deepEqual(cls('user.disabled'), [3001, 5, 1]);
  assert.deepEqual(cls('user.mfa_reset'), [3001, 11, 1]);
  assert.deepEqual(cls('lockout.started'), [3001, 9, 1]);
  assert.deepEqual(cls('audit.queried'), [6003, 2, 1]);
  assert.deepEqual(cls('alert.raised'), [2004, 1, 1]);
  assert.deepEqual(cls('alert.resolved'), [2004, 3, 4]);
  const login = toOcsf(viewOf(record('login.failed', 1, { ip: '2001:db8::7' })), CTX);
  assert.deepEqual(login.src_endpoint, { ip: '2001:db8::7', uid: 'device-1' });
  assert.deepEqual((login.user as Record<string, unknown>).name, 'alice@example.com');
  assert.equal(login.is_mfa, true);
});

/** Splits a CEF line the way a receiver does: seven header fields on unescaped pipes, then key=value pairs. */
function parseCef(line: string): { header: string[]; ext: Record<string, string> } {
  const header: string[] = [];
  let field = '';
  let i = 0;
  for (; i < line.length && header.length < 7; i++) {
    const c = line[i]!;
    if (c === '\\' && (line[i + 1] === '|' || line[i + 1] === '\\')) field += line[++i];
    else if (c === '|') {
      header.push(field);
      field = '';
    } else field += c;
  }
  const rest = line.slice(i);
  const ext: Record<string, string> = {};
  // A key starts the text or follows a space, and its `=` is not escaped.
  const keys = [...rest.matchAll(/(?:^| )([A-Za-z0-9]+)=/g)].filter((m) => {
    let backslashes = 0;
    for (let j = m.index + m[0].length - 2; j >= 0 && rest[j] === '\\'; j--) backslashes++;
    return backslashes % 2 === 0;
  });
  keys.forEach((m, k) => {
    const start = m.index + m[0].length;
    const end = k + 1 < keys.length ? keys[k + 1]!.index : rest.length;
    ext[m[1]!] = rest.slice(start, end).replace(/\\(.)/g, (_, ch: string) => (ch === 'n' ? '\n' : ch === 'r' ? '\r' : ch));
  });
  return { header, ext };
}

test('CEF: hostile values cannot end a header field, forge an extension key or break the line', () => {
  const hostile = record('login.failed', 7, {
    outcome: 'failure',
    username: HOSTILE,
    user_agent: 'ua act=login.succeeded outcome=success\\',
    device_id: 'd=1\\|2',
    reason: 'wrong_password',
    details: '{"note":"a=b\\\\c|d"}',
  });
  const line = toCef(viewOf(hostile), { hostname: 'gw', version: '1|2\\3' });
  assert.ok(!/[\r\n]/.test(line), 'one line');
  const { header, ext } = parseCef(line);
  assert.deepEqual(header, ['CEF:0', 'authtrail', 'authtrail', '1|2\\3', 'login.failed', 'login failed', '5']);
  assert.equal(ext.suser, HOSTILE, 'the username comes back exactly');
  assert.equal(ext.requestClientApplication, hostile.user_agent);
  assert.equal(ext.act, 'login.failed', 'a forged act= in the user agent did not become a key');
  assert.equal(ext.outcome, 'failure');
  assert.equal(ext.cs1, 'd=1\\|2');
  assert.equal(ext.cs6, hostile.details);
  assert.equal(ext.externalId, hostile.event_id);
  assert.equal(ext.cn1, String(hostile.seq));
  assert.equal(ext.cn1Label, 'seq');
  assert.equal(ext.src, '192.0.2.1');
  assert.equal(cefHeader('a|b\\c\nd'), 'a\\|b\\\\c d');
  assert.equal(cefValue('a=b\\c\r\nd|e'), 'a\\=b\\\\c\\r\\nd|e');
  const v6 = parseCef(toCef(viewOf(record('login.failed', 8, { ip: '2001:db8::7' })), CTX)).ext;
  assert.equal(v6.c6a2, '2001:db8::7');
  assert.equal(v6.src, undefined);
});

test('ECS: category, kind, action, outcome, id and sequence, the source and the user', () => {
  const login = toEcs(viewOf(record('login.failed', 3, { outcome: 'failure', reason: 'wrong_password' })), CTX) as Doc;
  assert.deepEqual(login.event.category, ['authentication']);
  assert.equal(login.event.kind, 'event');
  assert.equal(login.event.action, 'login.failed');
  assert.equal(login.event.outcome, 'failure');
  assert.equal(login.event.id, record('login.failed', 3).event_id);
  assert.equal(login.event.sequence, 1003);
  assert.equal(login['@timestamp'], '2026-01-02T03:04:05.678901Z');
  assert.equal(login.source.ip, '192.0.2.1');
  assert.equal(login.user.name, 'alice@example.com');
  assert.equal(login.user_agent.original, 'curl/8.5.0');
  const change = toEcs(viewOf(record('user.disabled', 4, { actor_id: '11111111-2222-4333-8444-555555555555' })), CTX) as Doc;
  assert.deepEqual(change.event.category, ['iam']);
  assert.equal(change.user.id, '11111111-2222-4333-8444-555555555555', 'the admin who acted');
  assert.equal(change.user.target.name, 'alice@example.com', 'the account acted on');
  assert.equal((toEcs(viewOf(record('alert.raised', 5)), CTX) as Doc).event.kind, 'alert');
  assert.equal((toEcs(viewOf(record('future.event', 5, { outcome: 'odd' })), CTX) as Doc).event.outcome, 'unknown');
});

test('native: the record as the API returns it, details parsed, nothing else', () => {
  const r = record('logout', 9);
  const n = toNative(viewOf(r));
  assert.deepEqual(Object.keys(n), ['seq', 'event_id', 'occurred_at', 'event_type', 'outcome', 'reason', 'username', 'user_id', 'ip', 'user_agent', 'device_id', 'mfa_method', 'session_id', 'request_id', 'actor_id', 'details']);
  assert.deepEqual(n.details, { attempt: 1 });
  assert.equal(formatRecord('native', r, CTX) instanceof Object, true);
});

test('syslog: RFC 5424 header, structured data with seq and event_id escaped, octet-counted frames in bytes', () => {
  const r = record('login.failed', 2, { outcome: 'failure' });
  const message = syslogMessage(r, 'héllo ✓', { facility: 10, hostname: 'gw 1', sdId: 'authtrail@32473', procId: '42' });
  assert.equal(message, `<85>1 2026-01-02T03:04:05.678901Z gw_1 authtrail 42 login.failed [authtrail@32473 seq="1002" event_id="${r.event_id}" hash="${r.hash}"] héllo ✓`);
  assert.equal(message.slice(0, 5), '<85>1', 'a refusal: authpriv (10) × 8 + notice (5)');
  assert.equal(syslogMessage(record('login.succeeded', 2), 'x', { facility: 10, hostname: 'h', sdId: 'a@1', procId: '1' }).slice(0, 5), '<86>1', 'success: authpriv.info');
  assert.equal(syslogMessage(record('token.reuse_detected', 2), 'x', { facility: 4, hostname: 'h', sdId: 'a@1', procId: '1' }).slice(0, 5), '<34>1', 'reuse: auth.crit');
  assert.equal(sdValue('a"b\\c]d'), 'a\\"b\\\\c\\]d');
  const frame = octetFrame('héllo');
  assert.equal(frame.toString('utf8'), '6 héllo', 'the length counts bytes, not characters');
});

test('retry backoff grows exponentially with jitter, bounded by max_ms', () => {
  const retry = { initial_ms: 100, max_ms: 1000 };
  assert.equal(backoffMs(1, retry, () => 0), 50);
  assert.equal(backoffMs(1, retry, () => 1), 100);
  assert.equal(backoffMs(3, retry, () => 1), 400);
  assert.equal(backoffMs(10, retry, () => 1), 1000);
  assert.equal(backoffMs(10, retry, () => 0), 500);
});

test('sinks file: every bad field is named, and a token variable that is not set is refused', () => {
  assert.throws(
    () => parseSinks([{ name: 'hec', type: 'http', format: 'ocsf', url: 'ftp://x', mode: 'splunk_hec' }, { name: 'hec', type: 'syslog', format: 'leef', host: 'h', port: 0 }], '/etc/sinks.json', {}),
    (err: Error) =>
      /sinks\[0\]\.url: must be an http/.test(err.message) &&
      /sinks\[1\]\.format/.test(err.message) &&
      /sinks\[1\]\.port/.test(err.message),
  );
  // Checks across fields and sinks run once every sink parses.
  assert.throws(
    () => parseSinks([{ name: 'hec', type: 'http', format: 'ocsf', url: 'http://x/', mode: 'splunk_hec' }, { name: 'hec', type: 'syslog', format: 'cef', host: 'h', port: 514, ca_file: 'ca.pem' }], 'f', {}),
    (err: Error) =>
      /sinks\[0\]\.token_env: is required for mode splunk_hec/.test(err.message) &&
      /sinks\[1\]\.name: "hec" is used by another sink/.test(err.message) &&
      /sinks\[1\]\.ca_file: only applies to transport "tls"/.test(err.message),
  );
  assert.throws(() => parseSinks({ sinks: [{ name: 'x', type: 'kafka', format: 'ocsf' }] }, 'f', {}), /sinks\[0\]\.type: type must be "http" or "syslog"/);
  assert.throws(() => parseSinks({ sinks: [{ name: 'x', type: 'http', format: 'ocsf', url: 'http://h/', mode: 'webhook', token: 's3cret' }] }, 'f', {}), /sinks\[0\]: Unrecognized key: "token"/);
  assert.throws(
    () => parseSinks([{ name: 'hec', type: 'http', format: 'ocsf', url: 'http://h:8088', mode: 'splunk_hec', token_env: 'HEC_TOKEN' }], 'f', {}),
    /sinks\[0\]\.token_env: environment variable HEC_TOKEN is not set/,
  );
  const [sink] = parseSinks([{ name: 'hec', type: 'http', format: 'ocsf', url: 'http://h:8088', mode: 'splunk_hec', token_env: 'HEC_TOKEN' }], 'f', { HEC_TOKEN: 't' });
  assert.equal(sink?.batch_size, 500);
});
