import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import request from 'supertest';
import crypto from 'node:crypto';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { createPostgresDatabase, type Database } from '../../src/db/database.js';
import { readCursor, type StoredRecord } from '../../src/audit/follow.js';
import { createLogger } from '../../src/logger.js';
import { runForwarder } from '../../src/forward/forwarder.js';
import { createForwarderMetrics } from '../../src/forward/metrics.js';
import { parseSinks } from '../../src/forward/sinks-file.js';
import { createSyslogSink } from '../../src/forward/syslog.js';
import { sampleEvent } from '../helpers/events.js';
import { startCollector, type HttpCollector } from '../helpers/http-sink.js';
import { adminQuery, asSuperuser, createTestDatabase, urlFor, type TestDatabase } from '../helpers/postgres.js';
import { ROOT } from '../helpers/processes.js';
import { requireRsyslog, startRsyslog, type Rsyslog } from '../helpers/rsyslog.js';
import { createTestGateway } from '../helpers/test-gateway.js';

/**
 * What the forwarder does when records left the database (were archived) before a sink got
 * them: it stops that sink at the gap and says so, never skipping silently, unless the operator
 * accepted the gap for that sink. Also: the gateway's own /metrics shows each sink's cursor and
 * lag, and a TLS syslog sink refuses a server whose certificate does not chain to its `ca_file`.
 */

let t: TestDatabase;
let hook: HttpCollector;
let dir: string;
let rsyslog: Rsyslog;

before(async () => {
  requireRsyslog();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-forward-gap-'));
  t = await createTestDatabase();
  const writer = createChainWriter(t.db, { batchMax: 64, writeTimeoutMs: 10_000 });
  await Promise.all(Array.from({ length: 40 }, (_, i) => writer.recordEvent(sampleEvent(i))));
  await writer.close();
  [hook, rsyslog] = await Promise.all([startCollector({ mode: 'webhook' }), startRsyslog(path.join(dir, 'rsyslog'))]);
});

after(async () => {
  await Promise.all([hook?.stop(), rsyslog?.stop()]);
  await t?.drop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs the forwarder in this process until `done` holds, then stops it. */
async function forwardUntil(acceptGap: boolean, done: () => Promise<boolean>, target: { db: Database; name: string; url: string; inFlight?: number } = { db: t.db, name: 'hook', url: hook.url }): Promise<ReturnType<typeof createForwarderMetrics>> {
  const sinks = parseSinks([{ name: target.name, type: 'http', mode: 'webhook', url: target.url, format: 'native', batch_size: 10, in_flight: target.inFlight ?? 1, retry: { initial_ms: 20, max_ms: 100 } }], 'sinks.json', {});
  const metrics = createForwarderMetrics(target.db, [target.name]);
  const stop = new AbortController();
  const running = runForwarder({
    db: target.db,
    sinks,
    holder: 'test',
    leaseTtlMs: 3000,
    idleMs: 20,
    acceptGap: new Set(acceptGap ? [target.name] : []),
    context: { hostname: 'test', version: '0' },
    logger: createLogger('silent'),
    metrics,
    signal: stop.signal,
  });
  const started = Date.now();
  while (!(await done())) {
    if (Date.now() - started > 10_000) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  stop.abort();
  await running;
  return metrics;
}

const seqs = () => hook.events.map((e) => (e as StoredRecord).seq);

test('records archived before delivery stop the sink at the gap; --accept-gap skips exactly them', async () => {
  await asSuperuser(t.name, 'DELETE FROM audit_log WHERE seq BETWEEN 23 AND 27');
  const blocked = await forwardUntil(false, async () => (await readCursor(t.db, 'forward:hook')) >= 22 && hook.requests >= 3);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await readCursor(t.db, 'forward:hook'), 22, 'the sink stops before the gap, though it is inside a page');
  assert.deepEqual(seqs(), Array.from({ length: 22 }, (_, i) => i + 1), 'nothing after the gap was sent');
  assert.match(await blocked.registry.metrics(), /authtrail_forward_gap_blocked\{sink="hook"\} 1/);

  await forwardUntil(true, async () => (await readCursor(t.db, 'forward:hook')) >= 40);
  assert.deepEqual(seqs(), [...Array.from({ length: 22 }, (_, i) => i + 1), ...Array.from({ length: 13 }, (_, i) => i + 28)], 'only the archived records are missing');
});

test("the gateway's /metrics shows each sink's cursor and lag from audit_cursors", async () => {
  const gw = await createTestGateway({ redis: false, t });
  try {
    const res = await request(gw.app).get('/metrics');
    assert.equal(res.status, 200);
    assert.match(res.text, /authtrail_forward_cursor_seq\{sink="hook"\} 40/);
    assert.match(res.text, /authtrail_forward_lag_records\{sink="hook"\} 0/);
  } finally {
    await gw.close();
  }
});

test('a TLS syslog sink refuses a server whose certificate is not signed by its ca_file', async () => {
  const other = path.join(dir, 'other-ca.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', path.join(dir, 'other-key.pem'), '-out', other, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const config = (ca: string) =>
    parseSinks([{ name: 'tls', type: 'syslog', transport: 'tls', host: '127.0.0.1', port: rsyslog.tlsPort, ca_file: ca, format: 'cef', settle_ms: 0 }], path.join(dir, 'sinks.json'), {})[0]!;
  const [record] = (await t.db.query<StoredRecord>(`SELECT seq, event_id::text AS event_id, '2026-01-02T03:04:05.678901Z' AS occurred_at, event_type, outcome, encode(hash, 'hex') AS hash FROM audit_log LIMIT 1`)).rows;
  const wrong = createSyslogSink(config(other) as Parameters<typeof createSyslogSink>[0], { hostname: 'test' });
  await assert.rejects(wrong.send(['x'], [record!]), /syslog tls connect .* failed: (self-signed certificate|unable to verify)/);
  await wrong.close();
  const right = createSyslogSink(config(rsyslog.certFile) as Parameters<typeof createSyslogSink>[0], { hostname: 'test' });
  await right.send(['x'], [record!]);
  await right.close();
});

test("the forwarder runs as its own least-privilege login (docs/runtime-role.sql): reads the log, moves its cursor, reads nothing else", async () => {
  const role = 'authtrail_forwarder';
  await adminQuery(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${role}') THEN CREATE ROLE ${role} LOGIN; END IF; END $$`);
  await adminQuery(`GRANT CONNECT ON DATABASE ${t.name} TO ${role}`);
  // The file as an operator runs it, for a runtime role of this test only.
  const app = `authtrail_app_${crypto.randomBytes(4).toString('hex')}`;
  await adminQuery(`CREATE ROLE ${app} LOGIN`);
  const db = createPostgresDatabase({ url: urlFor(t.name, { user: role }), poolMax: 4, statementTimeoutMs: 10_000, connectTimeoutMs: 3000 });
  const collector = await startCollector({ mode: 'webhook' });
  try {
    await adminQuery(fs.readFileSync(path.join(ROOT, 'docs/runtime-role.sql'), 'utf8').replaceAll('authtrail_app', app), [], t.name);
    await forwardUntil(true, async () => (await readCursor(t.db, 'forward:least')) >= 40, { db, name: 'least', url: collector.url });
    assert.equal(await readCursor(t.db, 'forward:least'), 40);
    assert.equal(collector.events.length, 35, 'every record still in the database');
    await assert.rejects(db.query('SELECT count(*) FROM users'), /permission denied/);
    await assert.rejects(db.query('SELECT count(*) FROM refresh_tokens'), /permission denied/);
    await assert.rejects(db.query("INSERT INTO audit_log (seq) VALUES (1000)"), /permission denied/);
  } finally {
    await collector.stop();
    await db.close();
    await adminQuery(`DROP OWNED BY ${app}`, [], t.name);
    await adminQuery(`DROP ROLE ${app}`);
  }
});

test('in_flight pipelines HTTP requests to a slow receiver, and the cursor still only moves past what every earlier request delivered', async () => {
  const timed = async (name: string, inFlight: number) => {
    const slow = await startCollector({ mode: 'webhook', delayMs: 150 });
    const started = Date.now();
    try {
      await forwardUntil(true, async () => (await readCursor(t.db, `forward:${name}`)) >= 40, { db: t.db, name, url: slow.url, inFlight });
      const got = slow.events.map((e) => (e as StoredRecord).seq).sort((a, b) => a - b);
      assert.deepEqual(got, [...Array.from({ length: 22 }, (_, i) => i + 1), ...Array.from({ length: 13 }, (_, i) => i + 28)]);
      return Date.now() - started;
    } finally {
      await slow.stop();
    }
  };
  const one = await timed('serial', 1);
  const four = await timed('pipelined', 4);
  assert.ok(four < one * 0.75, `4 requests in flight (${four} ms) beat one at a time (${one} ms) against a receiver that takes 150 ms`);
});
