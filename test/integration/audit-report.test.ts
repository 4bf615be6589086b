import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ScureBase32Plugin } from 'otplib';
import request from 'supertest';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { createCheckpointer, loadSigningKey, readCheckpointNote } from '../../src/audit/checkpoints.js';
import { cosign, parseVerifierKey, verifierKey } from '../../src/audit/note.js';
import { storeCosignatures } from '../../src/audit/witness-cosignatures.js';
import { createEmbeddedDatabase } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { createLogger } from '../../src/logger.js';
import { totpCode } from '../../src/mfa/totp.js';
import { auditReportCli } from '../../src/report/cli.js';
import type { ReportData } from '../../src/report/model.js';
import { chainTail } from '../helpers/chain-fixture.js';
import { sampleEvent } from '../helpers/events.js';
import { adminQuery, asSuperuser, urlFor } from '../helpers/postgres.js';
import { runTs } from '../helpers/processes.js';
import { createTestGateway, uniqueName, type TestGateway } from '../helpers/test-gateway.js';
import { checkpointNow } from '../helpers/transparency.js';

const PASSWORD = 'correct horse battery staple';
const XSS_USERNAME = '<script>alert("pwned")</script>';
const base32 = new ScureBase32Plugin();
const now = () => Math.floor(Date.now() / 1000);
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const CLI = 'src/cli/audit-report.ts';

/** The command line run in this process (as src/cli/audit-report.ts runs it), with an empty environment unless given. */
async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await auditReportCli(args, { env, out: (line) => (stdout += `${line}\n`), err: (line) => (stderr += `${line}\n`) });
  return { code, stdout, stderr };
}

/** What the test did, tallied as it did it: the report must say exactly this. */
class Tally {
  readonly events = new Map<string, { success: number; failure: number }>();
  readonly mfa = new Map<string, { success: number; failure: number }>();
  readonly reasons = new Map<string, number>();
  add(eventType: string, outcome: 'success' | 'failure', options: { mfa?: string; reason?: string; n?: number } = {}): void {
    const n = options.n ?? 1;
    const e = this.events.get(eventType) ?? { success: 0, failure: 0 };
    e[outcome] += n;
    this.events.set(eventType, e);
    if (options.mfa !== undefined) {
      const m = this.mfa.get(options.mfa) ?? { success: 0, failure: 0 };
      m[outcome] += n;
      this.mfa.set(options.mfa, m);
      if (outcome === 'failure') this.reasons.set(options.reason ?? '', (this.reasons.get(options.reason ?? '') ?? 0) + n);
    }
  }
  total(): number {
    return [...this.events.values()].reduce((s, e) => s + e.success + e.failure, 0);
  }
}

const readReport = (dir: string): ReportData => JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8')) as ReportData;

/** A copy of a report directory with one byte of `file` changed. */
function tamperedCopy(dir: string, file: string, at: (bytes: Buffer) => number): string {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-report-tampered-'));
  for (const name of fs.readdirSync(dir)) fs.copyFileSync(path.join(dir, name), path.join(copy, name));
  const bytes = fs.readFileSync(path.join(copy, file));
  const i = at(bytes);
  bytes[i] = bytes[i]! ^ 0x01;
  fs.writeFileSync(path.join(copy, file), bytes);
  return copy;
}

describe('npm run audit:report on PostgreSQL: a period of real gateway traffic', () => {
  let gw: TestGateway;
  let work: string;
  let vkey: string;
  let admin: { id: string; username: string; token: string };
  let alice: { id: string; username: string };
  let period: { from: string; to: string };
  const tally = new Tally();
  let lastPeriodSeq = 0;
  let out: string;
  let result: { code: number | null; stdout: string; stderr: string };

  const flags = (): string[] => ['--database-url', gw.t.url, '--key', gw.setup.env.AUDIT_SIGNING_KEY_FILE!];

  before(async () => {
    gw = await createTestGateway();
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-report-'));
    const key = loadSigningKey(gw.setup.env.AUDIT_SIGNING_KEY_FILE!, { generate: false });
    vkey = verifierKey(gw.services.config.audit.logOrigin, key.publicKey);

    // Before the period: accounts, the admin's login, carol's MFA enrollment.
    const adminName = uniqueName('admin');
    const adminId = await gw.addUser(adminName, PASSWORD, ['admin', 'security']);
    const adminLogin = await request(gw.app).post('/login').send({ username: adminName, password: PASSWORD }).expect(200);
    admin = { id: adminId, username: adminName, token: adminLogin.body.access_token };
    alice = { username: uniqueName('alice'), id: '' };
    alice.id = await gw.addUser(alice.username, PASSWORD);
    const bob = uniqueName('bob');
    await gw.addUser(bob, PASSWORD);
    const carol = uniqueName('carol');
    await gw.addUser(carol, PASSWORD);
    const carolLogin = await request(gw.app).post('/login').send({ username: carol, password: PASSWORD }).expect(200);
    const carolAuth = { Authorization: `Bearer ${carolLogin.body.access_token}` };
    const enrolled = await request(gw.app).post('/mfa/totp/enroll').set(carolAuth).expect(200);
    const secret = base32.decode(enrolled.body.secret as string);
    await request(gw.app).post('/mfa/totp/confirm').set(carolAuth).send({ otp: totpCode(secret, now() - 30) }).expect(200);
    await gw.services.writer.flush();

    await pause(10);
    period = { from: new Date().toISOString(), to: '' };
    await pause(10);
    const bearer = { Authorization: `Bearer ${admin.token}` };

    // In the period. Alice logs in three times.
    for (let i = 0; i < 3; i++) {
      await request(gw.app).post('/login').send({ username: alice.username, password: PASSWORD }).expect(200);
      tally.add('login.succeeded', 'success', { mfa: 'none' });
    }
    // Bob mistypes twice.
    for (let i = 0; i < 2; i++) {
      await request(gw.app).post('/login').send({ username: bob, password: 'not the password' }).expect(401);
      tally.add('login.failed', 'failure', { mfa: 'none', reason: 'wrong_password' });
    }
    // Someone guesses a hostile username five times (no such user): it gets locked, as any name does.
    for (let i = 0; i < 5; i++) {
      await request(gw.app).post('/login').set('User-Agent', '<img src=x onerror=alert(1)>').send({ username: XSS_USERNAME, password: 'guess guess guess' }).expect(401);
      tally.add('login.failed', 'failure', { mfa: 'none', reason: 'unknown_user' });
    }
    tally.add('lockout.started', 'success');
    // A sixth try is refused unchecked, and recorded.
    await request(gw.app).post('/login').send({ username: XSS_USERNAME, password: 'guess guess guess' }).expect(429);
    tally.add('login.failed', 'failure', { mfa: 'none', reason: 'account_locked' });
    const firstCheckpoint = await checkpointNow(gw); // a checkpoint signed during the period
    assert.ok(firstCheckpoint);

    // Carol: password only (a second factor is required), a wrong code, then both at once.
    const step = await request(gw.app).post('/login').send({ username: carol, password: PASSWORD }).expect(401);
    tally.add('login.mfa_required', 'failure', { mfa: 'none', reason: 'mfa_required' });
    const wrong = totpCode(secret, now()) === '000000' ? '111111' : '000000';
    await request(gw.app).post('/login/mfa').send({ mfa_token: step.body.mfa_token, otp: wrong }).expect(401);
    tally.add('login.failed', 'failure', { mfa: 'totp', reason: 'invalid_otp' });
    await request(gw.app).post('/login').send({ username: carol, password: PASSWORD, otp: totpCode(secret, now()) }).expect(200);
    tally.add('login.succeeded', 'success', { mfa: 'totp' });

    // The admin unlocks the hostile name, changes alice's roles and disables her, and reads the log twice.
    await request(gw.app).delete(`/admin/lockouts/${encodeURIComponent(XSS_USERNAME)}`).set(bearer).expect(204);
    tally.add('lockout.cleared', 'success');
    await request(gw.app).put(`/admin/users/${alice.id}/roles`).set(bearer).send({ roles: ['user', 'security'] }).expect(200);
    tally.add('user.roles_changed', 'success');
    await request(gw.app).post(`/admin/users/${alice.id}/disable`).set(bearer).expect(200);
    tally.add('user.disabled', 'success');
    await request(gw.app).get('/admin/login-events').query({ limit: 5 }).set(bearer).expect(200);
    tally.add('audit.queried', 'success');
    await request(gw.app).get('/admin/lockouts').set(bearer).expect(200);
    tally.add('audit.queried', 'success');
    await gw.services.writer.flush();
    lastPeriodSeq = (await chainTail(gw.t.db)).seq;

    await pause(10);
    period.to = new Date().toISOString();
    await pause(10);
    // After the period: not in the report.
    await request(gw.app).post('/login').send({ username: alice.username, password: PASSWORD }).expect(401);
    await request(gw.app).post('/login').send({ username: bob, password: 'after the period' }).expect(401);
    const covering = await checkpointNow(gw);
    assert.ok(covering);
    // A witness cosigned the covering checkpoint (stored as the gateway's witness client stores it).
    const witnessKey = crypto.generateKeyPairSync('ed25519').privateKey;
    const witnessName = 'witness.example/w1';
    const text = readCheckpointNote(covering.note!)!.text;
    const line = cosign(text, { name: witnessName, privateKey: witnessKey, time: now() });
    await storeCosignatures(gw.t.db, covering.seq, parseVerifierKey(verifierKey(witnessName, witnessKey, 0x04))!, [line]);

    out = path.join(work, 'report');
    result = await runTs(CLI, ['--from', period.from, '--to', period.to, '--out', out, ...flags(), '--checkpoint-file', gw.setup.env.AUDIT_CHECKPOINT_FILE!]);
  });

  after(async () => {
    await gw.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('when a report is generated for the period, then it exits 0 and every count equals the traffic the test made', () => {
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr, '', 'no warning, no error');
    assert.match(result.stdout, /report written to .*: \d+ records/);
    const data = readReport(out);
    assert.equal(data.format, 'authtrail-audit-report/v1');
    assert.equal(data.log_origin, gw.services.config.audit.logOrigin);
    assert.equal(Date.parse(data.period.from), Date.parse(period.from));
    assert.equal(Date.parse(data.period.to), Date.parse(period.to));
    assert.equal(data.records.count, tally.total());
    assert.equal(data.records.last_seq, lastPeriodSeq);
    assert.equal(data.records.last_seq - data.records.first_seq! + 1, tally.total(), 'the period is one contiguous run of records');

    const events = Object.fromEntries(data.events.map((e) => [e.event_type, { success: e.success, failure: e.failure }]));
    assert.deepEqual(events, Object.fromEntries(tally.events));
    const la = data.login_attempts;
    const mfa = Object.fromEntries(la.by_mfa_method.map((m) => [m.mfa_method ?? '', { success: m.success, failure: m.failure }]));
    assert.deepEqual(mfa, Object.fromEntries(tally.mfa));
    assert.equal(la.success, 4);
    assert.equal(la.failure, 10);
    assert.deepEqual(Object.fromEntries(la.failure_reasons.map((r) => [r.reason ?? '', r.count])), Object.fromEntries(tally.reasons));
  });

  it('when the report lists lockouts, user changes and reads, then each names its actor by username, and alerts say none', () => {
    const data = readReport(out);
    assert.equal(data.lockouts.started.count, 1);
    assert.equal(data.lockouts.started.rows[0]!.username, XSS_USERNAME);
    assert.equal(data.lockouts.started.rows[0]!.lock_count, '1');
    assert.equal(data.lockouts.cleared.count, 1);
    assert.deepEqual(
      { username: data.lockouts.cleared.rows[0]!.username, actor: data.lockouts.cleared.rows[0]!.actor, actor_id: data.lockouts.cleared.rows[0]!.actor_id, was_locked: data.lockouts.cleared.rows[0]!.was_locked },
      { username: XSS_USERNAME, actor: admin.username, actor_id: admin.id, was_locked: 'true' },
    );
    assert.deepEqual(
      data.user_changes.rows.map((r) => ({ type: r.event_type, user: r.username, actor: r.actor, from: r.roles_from, to: r.roles_to })),
      [
        { type: 'user.roles_changed', user: alice.username, actor: admin.username, from: ['user'], to: ['user', 'security'] },
        { type: 'user.disabled', user: alice.username, actor: admin.username, from: null, to: null },
      ],
    );
    assert.deepEqual(
      data.log_reads.rows.map((r) => ({ resource: r.resource, actor: r.actor })),
      [
        { resource: 'login-events', actor: admin.username },
        { resource: 'lockouts', actor: admin.username },
      ],
    );
    assert.deepEqual(data.alerts, { count: 0, truncated: false, rows: [] });
    const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
    const alerts = html.slice(html.indexOf('<h2>Alerts</h2>'), html.indexOf('<h2>Integrity evidence</h2>'));
    assert.match(alerts, /<p class="none">none<\/p>/);
  });

  it('when the report shows the integrity evidence, then the verification ran over the whole log and the covering checkpoint and its cosignature are listed', () => {
    const data = readReport(out);
    const ig = data.integrity;
    assert.equal(ig.valid, true);
    assert.ok(ig.chain.checked >= lastPeriodSeq + 2);
    assert.equal(ig.tree.valid, true);
    assert.equal(ig.export_file?.valid, true);
    assert.ok(ig.covering_checkpoint);
    assert.equal(ig.covering_checkpoint.tree_size, lastPeriodSeq + 2, 'the first checkpoint at or after the last record before the period ended');
    assert.equal(ig.covering_checkpoint.signature, 'ok');
    assert.equal(ig.covering_checkpoint.cosignatures.length, 1);
    assert.equal(ig.covering_checkpoint.cosignatures[0]!.witness, 'witness.example/w1');
    assert.equal(ig.checkpoints_in_period.count, 1, 'the checkpoint signed during the period');
    assert.ok(ig.checkpoints_in_period.rows[0]!.tree_size < lastPeriodSeq);
    // The report's own read is in the log, after everything it counted.
    assert.ok(data.recorded_as.seq > ig.chain.head_seq);
  });

  it('when the report is generated, then that read is one audit.queried record through the chain writer', async () => {
    const data = readReport(out);
    const { rows } = await gw.t.db.query<{ event_type: string; actor_id: string | null; details: string }>(
      'SELECT event_type, actor_id::text AS actor_id, details::text AS details FROM audit_log WHERE seq = $1',
      [data.recorded_as.seq],
    );
    assert.equal(rows[0]!.event_type, 'audit.queried');
    assert.equal(rows[0]!.actor_id, null);
    assert.deepEqual(JSON.parse(rows[0]!.details), { resource: 'report', via: 'cli', filters: { from: data.period.from, to: data.period.to }, returned: tally.total() });
    assert.equal((await chainTail(gw.t.db)).seq, data.recorded_as.seq, 'exactly one record');
  });

  it('when a username or user agent holds markup, then report.html shows it escaped, with no script and no external resource', () => {
    const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
    assert.ok(!html.includes(XSS_USERNAME), 'the raw username never appears');
    assert.ok(html.includes('&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;'), 'it appears escaped');
    assert.doesNotMatch(html, /<script|onerror=|<img|<link|<iframe|src=|href=|@import|url\(/i);
    assert.match(html, /<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">/);
  });

  it('when the report directory is verified with the log key, then it exits 0; a changed byte in report.html or report.json exits 1', async () => {
    const pem = path.join(work, 'public.pem');
    fs.writeFileSync(pem, crypto.createPublicKey(fs.readFileSync(gw.setup.env.AUDIT_SIGNING_KEY_FILE!)).export({ format: 'pem', type: 'spki' }));
    const htmlCopy = tamperedCopy(out, 'report.html', (b) => b.indexOf('</h1>') - 3);
    const jsonCopy = tamperedCopy(out, 'report.json', (b) => b.indexOf('"count"') + 10);
    const otherKey = verifierKey(gw.services.config.audit.logOrigin, crypto.generateKeyPairSync('ed25519').publicKey);
    const [byVkey, byPem, html, json, untrusted] = await Promise.all([
      runTs(CLI, ['--verify', out, '--trusted-key', vkey]),
      cli(['--verify', out, '--trusted-key', pem]),
      runTs(CLI, ['--verify', htmlCopy, '--trusted-key', vkey]),
      cli(['--verify', jsonCopy, '--trusted-key', vkey]),
      cli(['--verify', out, '--trusted-key', otherKey]),
    ]);
    assert.equal(byVkey.code, 0, byVkey.stdout + byVkey.stderr);
    assert.match(byVkey.stdout, /^report intact/);
    assert.equal(byPem.code, 0, byPem.stdout + byPem.stderr);
    assert.equal(html.code, 1);
    assert.match(html.stdout, /report\.html does not match its signed SHA-256/);
    assert.equal(json.code, 1);
    assert.match(json.stdout, /report\.json does not match its signed SHA-256/);
    assert.equal(untrusted.code, 1);
    assert.match(untrusted.stdout, /not signed by a trusted key/);
    for (const dir of [htmlCopy, jsonCopy]) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('when the signed note itself is changed or removed, then --verify exits 1', async () => {
    const signed = tamperedCopy(out, 'report.note', (b) => b.indexOf('  report.json') - 1);
    const unsigned = tamperedCopy(out, 'report.note', () => 0);
    fs.rmSync(path.join(unsigned, 'report.note'));
    const [changed, missing] = await Promise.all([
      cli(['--verify', signed, '--trusted-key', vkey]),
      cli(['--verify', unsigned, '--trusted-key', vkey]),
    ]);
    assert.equal(changed.code, 1);
    assert.match(changed.stdout, /does not verify/);
    assert.equal(missing.code, 1);
    assert.match(missing.stdout, /report\.note is missing/);
    for (const dir of [signed, unsigned]) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('when flags are bad or the report cannot be made, then it exits 2 with a clear message and writes nothing', async () => {
    const fresh = path.join(work, 'never');
    const base = ['--out', fresh, ...flags()];
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const cases: Array<{ args: string[]; message: RegExp }> = [
      { args: ['--to', period.to, ...base], message: /--from is required/ },
      { args: ['--from', 'yesterday', '--to', period.to, ...base], message: /--from must be an RFC 3339 date-time/ },
      { args: ['--from', '2026-02-30T00:00:00Z', '--to', period.to, ...base], message: /--from must be an RFC 3339 date-time/ },
      { args: ['--from', period.to, '--to', period.from, ...base], message: /--from must be before --to/ },
      { args: ['--from', period.from, '--to', future, ...base], message: /--to is in the future/ },
      { args: ['--from', period.from, '--to', period.to, '--out', out, ...flags()], message: /already holds report\.html, report\.json, report\.note/ },
      { args: ['--from', period.from, '--to', period.to, ...base, '--data-dir', work], message: /not both/ },
      { args: ['--from', period.from, '--to', period.to, ...base, '--max-rows', '0'], message: /--max-rows must be/ },
      { args: ['--from', period.from, '--to', period.to, ...base, '--colour'], message: /Unknown option '--colour'/ },
      { args: ['--from', period.from, '--to', period.to, '--out', fresh, '--database-url', gw.t.url], message: /no signing key/ },
      { args: ['--from', period.from, '--to', period.to, '--out', fresh, '--database-url', 'postgres://root@127.0.0.1:1/none', '--key', gw.setup.env.AUDIT_SIGNING_KEY_FILE!], message: /could not run: .*unavailable/ },
      { args: ['--verify', out], message: /needs at least one --trusted-key/ },
      { args: ['--verify', path.join(work, 'nothing-here'), '--trusted-key', vkey], message: /does not exist/ },
      { args: ['--verify', out, '--trusted-key', 'not-a-key'], message: /neither a note verifier key nor a readable file/ },
    ];
    // One as its own process (the exit status itself), the rest in this process.
    const runs = await Promise.all(cases.map((c, i) => (i === 1 ? runTs(CLI, c.args) : cli(c.args))));
    runs.forEach((run, i) => {
      assert.equal(run.code, 2, `${cases[i]!.args.join(' ')}: ${run.stdout}${run.stderr}`);
      assert.match(run.stderr, cases[i]!.message);
      assert.match(run.stderr, /^audit:report could not run: /);
    });
    assert.ok(!fs.existsSync(path.join(fresh, 'report.json')), 'nothing written');
  });

  it('when alerts were raised in the period and --max-rows cuts the lists, then alerts are listed escaped and counts stay exact', async () => {
    // Raised as the alert engine raises one: through the chain writer.
    const raised = await gw.services.writer.recordEvent({
      eventType: 'alert.raised',
      outcome: 'failure',
      reason: 'password_spraying',
      username: XSS_USERNAME,
      ip: '192.0.2.7',
      details: { secretish: 'never shown' },
    });
    const record = { seq: raised.seq, occurred_at: raised.occurredAt };
    await pause(5);
    const dir = path.join(work, 'alerts');
    const run = await cli(['--from', period.from, '--to', new Date().toISOString(), '--out', dir, '--max-rows', '1', ...flags()]);
    assert.equal(run.code, 0, run.stderr);
    const data = readReport(dir);
    assert.equal(data.alerts.count, 1);
    assert.deepEqual(data.alerts.rows, [{ seq: record.seq, occurred_at: record.occurred_at, outcome: 'failure', reason: 'password_spraying', username: XSS_USERNAME, ip: '192.0.2.7' }]);
    assert.equal(data.log_reads.count, 3, 'two admin reads and the first report');
    assert.equal(data.log_reads.rows.length, 1);
    assert.equal(data.log_reads.truncated, true);
    assert.equal(data.integrity.valid, true);
    const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
    assert.ok(!html.includes(XSS_USERNAME) && !html.includes('never shown'));
    assert.match(html, /3 records; the first 1 by seq are listed/);
  });

  it('when the database login may only read the log (an auditor\'s), then the read cannot be recorded, no file is written, and it exits 2', async () => {
    const role = `authtrail_report_ro_${crypto.randomBytes(4).toString('hex')}`;
    await adminQuery(`CREATE ROLE ${role} LOGIN`);
    try {
      await adminQuery(`GRANT CONNECT ON DATABASE ${gw.t.name} TO ${role}`);
      await adminQuery(`GRANT USAGE ON SCHEMA public TO ${role}; GRANT SELECT ON audit_log, audit_checkpoints, audit_tiles, audit_cosignatures, audit_archives TO ${role}`, [], gw.t.name);
      const before = (await chainTail(gw.t.db)).seq;
      const dir = path.join(work, 'read-only');
      const run = await cli(['--from', period.from, '--to', period.to, '--out', dir, '--database-url', urlFor(gw.t.name, { user: role }), '--key', gw.setup.env.AUDIT_SIGNING_KEY_FILE!]);
      assert.equal(run.code, 2);
      assert.match(run.stderr, /could not be recorded in the audit log, so no report was written .*SQLSTATE 42501/);
      assert.deepEqual(fs.readdirSync(dir), [], 'no file, not even a partial one');
      assert.equal((await chainTail(gw.t.db)).seq, before);
    } finally {
      await adminQuery(`DROP OWNED BY ${role}`, [], gw.t.name);
      await adminQuery(`DROP ROLE ${role}`);
    }
  });

  it('when a record of the period was edited in the database, then the report is still written, says so, and exits 1', async () => {
    await asSuperuser(gw.t.name, `UPDATE audit_log SET reason = 'unknown_user' WHERE seq = $1`, [lastPeriodSeq - 3]);
    const dir = path.join(work, 'tampered');
    const run = await cli(['--from', period.from, '--to', period.to, '--out', dir, ...flags()]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stdout, /LOG NOT INTACT at seq/);
    const data = readReport(dir);
    assert.equal(data.integrity.valid, false);
    assert.ok(data.integrity.chain.first_invalid_seq! <= lastPeriodSeq - 3);
    assert.match(fs.readFileSync(path.join(dir, 'report.html'), 'utf8'), /class="verdict bad">The log FAILED verification/);
    const verified = await cli(['--verify', dir, '--trusted-key', vkey]);
    assert.equal(verified.code, 0, 'the report itself is intact: it reports the tampering faithfully');
  });
});

describe('npm run audit:report on the embedded database (--data-dir)', () => {
  let dataDir: string;
  before(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-report-embedded-'));
    const db = await createEmbeddedDatabase(path.join(dataDir, 'pgdata'));
    try {
      await migrate(db);
      const key = loadSigningKey(path.join(dataDir, 'keys', 'audit-ed25519.pem'), { generate: true });
      const writer = createChainWriter(db, { batchMax: 16, writeTimeoutMs: 10_000 });
      await Promise.all(Array.from({ length: 12 }, (_, i) => writer.recordEvent(sampleEvent(i))));
      const checkpointer = createCheckpointer({
        db,
        writer,
        key,
        file: path.join(dataDir, 'audit-checkpoints.jsonl'),
        everyRecords: Number.MAX_SAFE_INTEGER,
        everySeconds: 86_400,
        logger: createLogger('silent'),
      });
      await writer.close();
      await checkpointer.close();
    } finally {
      await db.close();
    }
  });
  after(() => {
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('when a stopped gateway\'s data directory is given, then the key and export file are found there, the report is signed, and audit:key\'s verifier key verifies it', async () => {
    const out = path.join(dataDir, 'report-out');
    const run = await runTs(CLI, ['--from', '2000-01-01T00:00:00Z', '--to', new Date().toISOString(), '--out', out, '--data-dir', dataDir]);
    assert.equal(run.code, 0, run.stderr);
    const data = readReport(out);
    // sampleEvent(i): every third is a success, a quarter TOTP.
    const successes = Array.from({ length: 12 }, (_, i) => i).filter((i) => i % 3 === 0).length;
    assert.equal(data.records.count, 12);
    assert.equal(data.login_attempts.success, successes);
    assert.equal(data.login_attempts.failure, 12 - successes);
    assert.equal(data.login_attempts.by_mfa_method.find((m) => m.mfa_method === 'totp')!.success + data.login_attempts.by_mfa_method.find((m) => m.mfa_method === 'totp')!.failure, 3);
    assert.equal(data.integrity.valid, true);
    assert.equal(data.integrity.export_file?.valid, true);
    assert.equal(data.integrity.covering_checkpoint?.tree_size, 12);
    assert.equal(data.recorded_as.seq, 13);
    const key = await runTs('src/cli/audit-key.ts', ['--key', path.join(dataDir, 'keys', 'audit-ed25519.pem')]);
    assert.equal(key.code, 0, key.stderr);
    const verified = await cli(['--verify', out, '--trusted-key', key.stdout.trim()]);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    const missing = await cli(['--from', '2000-01-01T00:00:00Z', '--to', '2001-01-01T00:00:00Z', '--out', path.join(dataDir, 'x'), '--data-dir', path.join(dataDir, 'nope')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no embedded database there/);
  });
});
