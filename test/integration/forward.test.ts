import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createChainWriter, type ChainWriter } from '../../src/audit/chain-writer.js';
import type { AuditEvent } from '../../src/audit/record.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { sampleEvent } from '../helpers/events.js';
import { startCollector, type HttpCollector } from '../helpers/http-sink.js';
import { runTs, spawnTs, untilListening, type ListeningChild } from '../helpers/processes.js';
import { readSyslogFile, requireRsyslog, startRsyslog, type ReceivedSyslog, type Rsyslog } from '../helpers/rsyslog.js';

/**
 * npm run audit:forward end to end, with real parts only: records written through the real chain
 * writer into PostgreSQL, two real forwarder processes (one leads, one stands by), a real rsyslogd
 * (plain TCP with octet counting, and TLS with a self-signed certificate the forwarder verifies),
 * and real HTTP servers acting as Splunk HEC (checking the token) and as a JSON webhook. The sinks
 * are taken down mid-stream and brought back, the active forwarder is killed with SIGKILL, and
 * every sink must end with every record, in seq order, none missing (duplicates only across an
 * outage or a takeover, each one the same record by seq and event_id).
 */

const REQUIRED = JSON.parse(fs.readFileSync(new URL('../unit/vectors/ocsf-1.8.0-required.json', import.meta.url), 'utf8')) as {
  classes: Record<string, { extends?: string; class_uid?: number; required: string[] }>;
};
/** A received JSON message, read by path in the assertions. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = Record<string, any>;
const HEC_TOKEN = `hec-${Math.random().toString(36).slice(2)}-secret`;
const HOSTILE_NAME = 'mallory|x\\y=z\nCEF:0|forged';

let t: TestDatabase;
let writer: ChainWriter;
let rsyslog: Rsyslog;
let hec: HttpCollector;
let hook: HttpCollector;
let dir: string;
let sinksFile: string;
const forwarders: Array<ListeningChild<{ metrics_port: number }>> = [];
let written = 0;
const eventIds = new Map<number, string>();

/** A mix of the gateway's event types, with a hostile username now and then. */
function eventFor(i: number): AuditEvent {
  const base = sampleEvent(i);
  switch (i % 10) {
    case 3:
      return { ...base, eventType: 'user.created', outcome: 'success', reason: null, actorId: '11111111-2222-4333-8444-555555555555', details: { roles: ['user'] } };
    case 5:
      return { ...base, eventType: 'lockout.started', outcome: 'success', reason: 'too_many_failures', details: { failures: 5 } };
    case 6:
      return { ...base, eventType: 'logout', outcome: 'success', reason: null };
    case 7:
      return { ...base, eventType: 'token.refreshed', outcome: 'success', reason: null };
    case 8:
      return { ...base, eventType: 'audit.queried', outcome: 'success', reason: null, actorId: '11111111-2222-4333-8444-555555555555', details: { resource: 'login-events' } };
    case 9:
      return { ...base, eventType: 'login.failed', outcome: 'failure', reason: 'wrong_password', username: HOSTILE_NAME };
    default:
      return { ...base, reason: base.outcome === 'failure' ? 'wrong_password' : null };
  }
}

async function write(n: number): Promise<void> {
  const committed = await Promise.all(Array.from({ length: n }, (_, k) => writer.recordEvent(eventFor(written + k))));
  for (const c of committed) eventIds.set(c.seq, c.eventId);
  written += n;
}

/** seq and event_id of each message a sink received, in arrival order. */
function received(sink: string): Array<{ seq: number; eventId: string }> {
  const ocsf = (e: Doc) => ({ seq: e.metadata.sequence as number, eventId: e.metadata.uid as string });
  const sd = (m: ReceivedSyslog) => ({ seq: Number(/seq="(\d+)"/.exec(m.structuredData)?.[1]), eventId: /event_id="([^"]+)"/.exec(m.structuredData)?.[1] ?? '' });
  switch (sink) {
    case 'hec':
      return hec.events.map((e) => ocsf((e as { event: Doc }).event));
    case 'hook':
      return hook.events.map((e) => ({ seq: (e as Doc).event.sequence as number, eventId: (e as Doc).event.id as string }));
    case 'tcp':
      return readSyslogFile(rsyslog.tcpLog).map(sd);
    case 'tls':
      return readSyslogFile(rsyslog.tlsLog).map(sd);
    default:
      throw new Error(sink);
  }
}

const distinct = (sink: string): number => new Set(received(sink).map((r) => r.seq)).size;

async function until(what: string, ok: () => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!ok()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${['hec', 'hook', 'tcp', 'tls'].map((s) => `${s}=${distinct(s)}`).join(' ')} of ${written}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return Date.now() - started;
}

const allSinksHave = (n: number) => ['hec', 'hook', 'tcp', 'tls'].every((s) => distinct(s) >= n);

function startForwarder(): Promise<ListeningChild<{ metrics_port: number }>> {
  const child = spawnTs(
    'src/cli/audit-forward.ts',
    ['--database-url', t.url, '--sinks', sinksFile, '--metrics-port', '0', '--lease-ttl-ms', '1500', '--idle-ms', '50'],
    { HEC_TOKEN, WRONG_TOKEN: 'not-the-token', LOG_LEVEL: 'info' },
  );
  return untilListening<{ metrics_port: number }>(child, 'forwarder', 'forwarder started', 30_000).then((f) => {
    forwarders.push(f);
    return f;
  });
}

async function scrape(f: ListeningChild<{ metrics_port: number }>): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${f.listening.metrics_port}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

function metric(text: string, name: string, sink?: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(sink === undefined ? `${name} ` : `${name}{sink="${sink}"}`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function leader(): Promise<ListeningChild<{ metrics_port: number }>> {
  const { rows } = await t.db.query<{ holder: string }>(`SELECT holder FROM audit_leases WHERE name = 'forwarder' AND lease_until > clock_timestamp()`);
  const holder = rows[0]?.holder ?? '';
  const f = forwarders.find((x) => x.child.exitCode === null && x.child.signalCode === null && holder.endsWith(`:${x.child.pid}`));
  assert.ok(f, `one of the running forwarders holds the lease (holder ${holder})`);
  return f;
}

before(async () => {
  requireRsyslog();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-forward-'));
  t = await createTestDatabase();
  writer = createChainWriter(t.db, { batchMax: 256, writeTimeoutMs: 10_000 });
  [rsyslog, hec, hook] = await Promise.all([
    startRsyslog(path.join(dir, 'rsyslog')),
    startCollector({ mode: 'splunk_hec', token: HEC_TOKEN }),
    startCollector({ mode: 'webhook' }),
  ]);
  const retry = { initial_ms: 50, max_ms: 400 };
  sinksFile = path.join(dir, 'sinks.json');
  fs.writeFileSync(
    sinksFile,
    JSON.stringify({
      sinks: [
        { name: 'hec', type: 'http', mode: 'splunk_hec', url: hec.url, token_env: 'HEC_TOKEN', format: 'ocsf', batch_size: 100, timeout_ms: 2000, retry },
        { name: 'hook', type: 'http', mode: 'webhook', url: hook.url, format: 'ecs', batch_size: 100, timeout_ms: 2000, retry },
        { name: 'tcp', type: 'syslog', transport: 'tcp', host: '127.0.0.1', port: rsyslog.tcpPort, format: 'cef', batch_size: 100, settle_ms: 200, timeout_ms: 2000, retry },
        { name: 'tls', type: 'syslog', transport: 'tls', host: '127.0.0.1', port: rsyslog.tlsPort, ca_file: rsyslog.certFile, format: 'ocsf', batch_size: 100, settle_ms: 200, timeout_ms: 2000, retry },
        // The HEC refuses this one's token (401): retried for ever, never dropped, counted, and no other sink waits for it.
        { name: 'refused', type: 'http', mode: 'splunk_hec', url: hec.url, token_env: 'WRONG_TOKEN', format: 'native', batch_size: 100, timeout_ms: 2000, retry },
      ],
    }),
  );
});

after(async () => {
  await Promise.all(forwarders.map((f) => f.stop('SIGKILL')));
  await writer?.close();
  await Promise.all([rsyslog?.stop(), hec?.stop(), hook?.stop()]);
  await t?.drop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('every record reaches every sink in seq order across sink outages and a SIGKILLed forwarder; OCSF logins are class 3002 with the required attributes', async () => {
  await write(200);
  const [a, b] = await Promise.all([startForwarder(), startForwarder()]);
  await until('the first 200 records on every sink', () => allSinksHave(200), 20_000);

  // From here on records keep coming (about 500/s) while the sinks and the forwarder fail under them.
  let producing = true;
  const producer = (async () => {
    while (producing) {
      await write(5);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();

  // Take the HEC and rsyslog down mid-stream: the webhook sink goes on, promptly.
  await new Promise((r) => setTimeout(r, 150));
  await Promise.all([hec.stop(), rsyslog.stop()]);
  const target = written;
  const hookMs = await until('the webhook to go on while the others are down', () => distinct('hook') >= target, 5000);
  assert.ok(hookMs < 2000, `a sink that is down delays no other (the webhook took ${hookMs} ms)`);
  await new Promise((r) => setTimeout(r, 500)); // failed retries against the dead sinks
  await Promise.all([hec.start(), rsyslog.start()]);
  const recovered = written;
  await until('every sink to catch up after the outage', () => allSinksHave(recovered), 15_000);

  // SIGKILL the active forwarder while records keep coming: the standby takes over when its lease runs out.
  const active = await leader();
  const standby = active === a ? b : a;
  const beforeKill = await scrape(active);
  for (const sink of ['hec', 'tcp', 'tls']) assert.ok((metric(beforeKill, 'authtrail_forward_failures_total', sink) ?? 0) > 0, `the ${sink} outage was counted`);
  assert.equal(metric(beforeKill, 'authtrail_forward_failures_total', 'hook'), 0, 'the webhook never failed');
  assert.equal(metric(await scrape(standby), 'authtrail_forwarder_leading'), 0, 'the other process stands by');
  await active.stop('SIGKILL');
  await new Promise((r) => setTimeout(r, 2000));
  producing = false;
  await producer;
  await until('every sink to get every record after the takeover', () => allSinksHave(written), 20_000);
  assert.equal(await leader(), standby, 'the standby leads now');
  const restarted = await startForwarder();

  const duplicates: Record<string, number> = {};
  for (const sink of ['hec', 'hook', 'tcp', 'tls']) {
    const got = received(sink);
    const firsts: number[] = [];
    const seen = new Set<number>();
    for (const { seq, eventId } of got) {
      assert.equal(eventId, eventIds.get(seq), `${sink}: seq ${seq} carries its record's event_id (de-duplicable)`);
      if (!seen.has(seq)) firsts.push(seq);
      seen.add(seq);
    }
    assert.deepEqual(firsts, Array.from({ length: written }, (_, i) => i + 1), `${sink}: every record, first seen in seq order, none missing`);
    // A resend starts from the cursor, so each message is either the next new record or repeats a run just before it.
    duplicates[sink] = got.length - written;
  }

  // OCSF over HEC and over TLS syslog: logins are Authentication (3002), every required attribute there.
  const ocsfEvents = [
    ...hec.events.map((e) => (e as { event: Record<string, unknown> }).event),
    ...readSyslogFile(rsyslog.tlsLog).map((m) => JSON.parse(m.msg) as Record<string, unknown>),
  ];
  const chain = (name: string | undefined): string[] => (name ? [...REQUIRED.classes[name]!.required, ...chain(REQUIRED.classes[name]!.extends)] : []);
  const byUid = new Map(Object.entries(REQUIRED.classes).filter(([, c]) => c.class_uid !== undefined).map(([n, c]) => [c.class_uid, n]));
  let logins = 0;
  for (const e of ocsfEvents) {
    const type = (e.metadata as { event_code: string }).event_code;
    if (type.startsWith('login.')) {
      logins += 1;
      assert.equal(e.class_uid, 3002, `${type} is OCSF Authentication`);
    }
    for (const attr of chain(byUid.get(e.class_uid as number))) assert.ok(e[attr] !== undefined && e[attr] !== null, `${type}: required ${attr}`);
  }
  assert.ok(logins > written, 'logins were checked on both OCSF sinks');
  console.log(`# ${written} records; duplicates by sink (resends after an outage or the takeover): ${JSON.stringify(duplicates)}`);
  const hostile = hec.events.map((e) => (e as { event: { user?: { name?: string } } }).event).find((e) => e.user?.name === HOSTILE_NAME);
  assert.ok(hostile, 'a hostile username arrives intact inside the JSON');

  // Syslog: RFC 5424 fields as rsyslog parsed them; CEF lines with the de-duplication keys.
  const tcp = readSyslogFile(rsyslog.tcpLog);
  const first = tcp.find((m) => m.msgId === 'login.failed')!;
  assert.equal(first.pri, 10 * 8 + 5, 'authpriv.notice for a refusal');
  assert.equal(first.appName, 'authtrail');
  assert.match(first.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|\+00:00)$/);
  assert.match(first.structuredData, /^\[authtrail@32473 seq="\d+" event_id="[0-9a-f-]{36}" hash="[0-9a-f]{64}"\]$/);
  assert.match(first.msg, /^CEF:0\|authtrail\|authtrail\|[^|]+\|login\.failed\|login failed\|5\|.*externalId=[0-9a-f-]{36} cn1=\d+ cn1Label=seq/);
  assert.ok(tcp.some((m) => m.msg.includes('suser=mallory|x\\\\y\\=z\\nCEF:0|forged')), 'the hostile username escaped in a CEF extension');
  assert.ok(!tcp.some((m) => m.msg.startsWith('CEF:0|forged')), 'no forged line');

  // The refused sink was retried and never delivered; the token was never logged.
  const m = await scrape(standby);
  assert.equal(metric(m, 'authtrail_forwarder_leading'), 1);
  assert.equal(metric(m, 'authtrail_forward_cursor_seq', 'refused'), 0, 'a refused batch is never skipped');
  assert.equal(metric(m, 'authtrail_forward_lag_records', 'refused'), written);
  assert.ok((metric(m, 'authtrail_forward_failures_total', 'refused') ?? 0) > 0);
  for (const sink of ['hec', 'hook', 'tcp', 'tls']) {
    assert.equal(metric(m, 'authtrail_forward_lag_records', sink), 0, `${sink} has no lag`);
    assert.equal(metric(m, 'authtrail_forward_cursor_seq', sink), written);
    assert.ok((metric(m, 'authtrail_forward_delivered_total', sink) ?? 0) > 0);
    assert.ok((metric(m, 'authtrail_forward_last_success_timestamp_seconds', sink) ?? 0) > Date.now() / 1000 - 60);
  }
  assert.equal(metric(await scrape(restarted), 'authtrail_forwarder_leading'), 0, 'the restarted process stands by');
  assert.ok(hec.refused > 0);
  const logs = forwarders.map((f) => f.lines.join('\n') + f.stderr()).join('\n');
  assert.ok(!logs.includes(HEC_TOKEN) && !logs.includes('not-the-token'), 'no token in any log');
  assert.ok(logs.includes('"status":401') && logs.includes('sink refused the batch; retrying'), 'the refusal is logged, with its status');

  // SIGTERM: the active forwarder stops cleanly (exit 0) and releases its lease, so the restarted one takes over at once.
  const stopped = Date.now();
  assert.equal(await standby.stop('SIGTERM'), 0);
  await write(20);
  await until('the restarted forwarder to deliver after a clean stop', () => allSinksHave(written), 5000);
  assert.equal(await leader(), restarted);
  assert.ok(Date.now() - stopped < 1500 + 1000, 'taken over without waiting for the lease to run out');
});

test('a bad sinks file stops the forwarder with exit 2 and names the field', async () => {
  const bad = path.join(dir, 'bad-sinks.json');
  fs.writeFileSync(bad, JSON.stringify([{ name: 'x', type: 'syslog', format: 'ocsf', host: '127.0.0.1', port: 99999 }]));
  const result = await runTs('src/cli/audit-forward.ts', ['--database-url', t.url, '--sinks', bad]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /sinks\[0\]\.port: Too big/);
});
