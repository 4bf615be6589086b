import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import ipaddr from 'ipaddr.js';
import pg from 'pg';
import request from 'supertest';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { createCheckpointer, loadSigningKey } from '../../src/audit/checkpoints.js';
import { formatMicros } from '../../src/audit/clock.js';
import type { AuditEvent } from '../../src/audit/record.js';
import { createLogger } from '../../src/logger.js';
import { normalizeUsername } from '../../src/users/usernames.js';
import { startGateway } from '../helpers/gateway.js';
import { createTestDatabase, urlFor, type TestDatabase } from '../helpers/postgres.js';
import { auditRows, createTestGateway, sharedSetup, uniqueName, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';
const ALICE = '6f1c2a9e-0b7d-4c55-9a43-3e2f1d0c9b8a';
const BOB = '0190f3a4-5b6c-7d8e-9f00-112233445566';
const BASE = Date.parse('2026-01-01T00:00:00Z');

interface Seeded {
  seq: number;
  at: number;
  event: AuditEvent;
}

/** 48 records over 48 hours: every filter value appears with several others. */
function seedEvents(): Array<{ at: number; event: AuditEvent }> {
  const users = [
    { username: 'Alice@Example.com', userId: ALICE },
    { username: 'bob', userId: BOB },
    { username: 'ghost', userId: null },
  ];
  const ips = ['10.0.0.5', '10.0.1.7', '10.1.0.1', '192.168.5.5', '2001:db8::1', '2001:db8:1::5', '2001:db9::1'];
  return Array.from({ length: 48 }, (_, i) => {
    const u = users[i % 3]!;
    return {
      at: BASE + i * 3600_000,
      event: {
        eventType: i % 4 === 0 ? 'login.succeeded' : 'login.failed',
        outcome: i % 4 === 0 ? 'success' : 'failure',
        reason: i % 4 === 0 ? null : 'wrong_password',
        username: i % 5 === 0 ? u.username.toUpperCase() : u.username,
        userId: u.userId,
        ip: ips[i % ips.length]!,
        deviceId: i % 2 === 0 ? 'device-a' : 'device-b',
        mfaMethod: 'none',
        userAgent: i === 7 ? '=HYPERLINK("http://evil")' : 'agent',
        details: { i },
      },
    };
  });
}

type Filter = Record<string, string>;

function matches(s: Seeded, f: Filter): boolean {
  const e = s.event;
  if (f.username !== undefined && normalizeUsername(e.username ?? '') !== normalizeUsername(f.username)) return false;
  if (f.user_id !== undefined && e.userId !== f.user_id) return false;
  if (f.event_type !== undefined && e.eventType !== f.event_type) return false;
  if (f.outcome !== undefined && e.outcome !== f.outcome) return false;
  if (f.device_id !== undefined && e.deviceId !== f.device_id) return false;
  if (f.from !== undefined && s.at < Date.parse(f.from)) return false;
  if (f.to !== undefined && s.at >= Date.parse(f.to)) return false;
  if (f.ip !== undefined) {
    const addr = ipaddr.parse(e.ip!);
    if (f.ip.includes('/')) {
      const [net, bits] = ipaddr.parseCIDR(f.ip);
      if (addr.kind() !== net.kind() || !addr.match(net, bits)) return false;
    } else if (addr.toString() !== ipaddr.process(f.ip).toString()) return false; // mapped IPv4 is stored as IPv4
  }
  return true;
}

/** A strict RFC 4180 reader that accepts quoted cells only: an unquoted cell throws. */
function parseQuotedCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let i = 0;
  while (i < text.length) {
    assert.equal(text[i], '"', `cell at offset ${i} is quoted`);
    let cell = '';
    i += 1;
    for (;;) {
      const quote = text.indexOf('"', i);
      assert.ok(quote >= 0, 'every quoted cell is closed');
      cell += text.slice(i, quote);
      i = quote + 1;
      if (text[i] !== '"') break;
      cell += '"';
      i += 1;
    }
    row.push(cell);
    if (text[i] === ',') {
      i += 1;
    } else {
      assert.equal(text.slice(i, i + 2), '\r\n', `a cell ends with a comma or CRLF at offset ${i}`);
      i += 2;
      rows.push(row);
      row = [];
    }
  }
  return rows;
}

describe('security API: login history, summaries, lockouts, integrity', () => {
  let gw: TestGateway;
  let seeded: Seeded[];
  let security: string;
  let adminToken: string;
  let plain: string;

  const loginToken = async (roles: Array<'user' | 'security' | 'admin'>) => {
    const username = uniqueName(roles.join('-'));
    await gw.addUser(username, PASSWORD, roles);
    return (await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200)).body.access_token as string;
  };

  before(async () => {
    gw = await createTestGateway();
    // The real writer with a clock that returns chosen times, so from/to filters have known answers.
    const times = seedEvents();
    let next = 0;
    const writer = createChainWriter(gw.t.db, { batchMax: 64, writeTimeoutMs: 5000, clock: () => formatMicros(BigInt(times[next++]!.at) * 1000n) });
    seeded = [];
    for (const { at, event } of times) seeded.push({ seq: (await writer.recordEvent(event)).seq, at, event });
    await writer.close();
    security = await loginToken(['security']);
    adminToken = await loginToken(['admin']);
    plain = await loginToken(['user']);
  });
  after(async () => {
    await gw.close();
  });

  const get = (path: string, token = security) => request(gw.app).get(path).set('Authorization', `Bearer ${token}`);

  it('when each filter and combinations of them are applied, then exactly the right records come back, newest first', async () => {
    const singles: Filter[] = [
      { username: 'alice@example.com' }, { username: '  ALICE@EXAMPLE.COM ' }, { username: 'ghost' }, { user_id: BOB },
      { ip: '10.0.0.5' }, { ip: '10.0.0.0/16' }, { ip: '10.0.0.0/8' }, { ip: '192.168.0.0/16' }, { ip: '2001:db8::1' },
      { ip: '2001:db8::/32' }, { ip: '2001:db8::/48' }, { ip: '::ffff:10.0.0.5' }, { event_type: 'login.succeeded' },
      { outcome: 'failure' }, { device_id: 'device-a' }, { from: '2026-01-01T10:00:00Z' }, { to: '2026-01-01T10:00:00Z' },
      { from: '2026-01-01T05:00:00+02:00', to: '2026-01-01T20:00:00Z' },
    ];
    const pairs: Filter[] = [];
    for (let i = 0; i < singles.length; i++) for (let j = i + 1; j < singles.length; j++) pairs.push({ ...singles[i], ...singles[j] });
    const combos = [...singles, ...pairs.filter((_, k) => k % 4 === 0), { username: 'bob', ip: '10.0.0.0/8', outcome: 'failure', device_id: 'device-b', from: '2026-01-01T03:00:00Z' }];
    for (const filter of combos) {
      const expected = seeded.filter((s) => matches(s, filter)).map((s) => s.seq).reverse();
      const res = await get('/admin/login-events').query({ ...filter, limit: 1000 }).expect(200);
      // Other records (user.created, logins of the readers, audit.queried) are not in the seed: keep to seeded seqs.
      const got = (res.body.items as Array<{ seq: number }>).map((i) => i.seq).filter((seq) => seq <= seeded.at(-1)!.seq);
      assert.deepEqual(got, expected, JSON.stringify(filter));
    }
  });

  it('when a record is returned, then it has every field docs/api.md lists', async () => {
    const res = await get('/admin/login-events').query({ user_id: ALICE, limit: 1 }).expect(200);
    assert.deepEqual(Object.keys(res.body.items[0]).sort(), [
      'actor_id', 'details', 'device_id', 'event_id', 'event_type', 'ip', 'mfa_method', 'occurred_at', 'outcome', 'reason',
      'request_id', 'seq', 'session_id', 'user_agent', 'user_id', 'username',
    ]);
    assert.match(res.body.items[0].occurred_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  });

  it('when paging while new records arrive, then every matching record appears exactly once', async () => {
    const head = seeded.at(-1)!.seq;
    const seen: number[] = [];
    let cursor: string | null = null;
    const writer = createChainWriter(gw.t.db, { batchMax: 8, writeTimeoutMs: 5000 });
    do {
      const res: request.Response = await get('/admin/login-events').query({ event_type: 'login.failed', limit: 5, ...(cursor ? { cursor } : {}) }).expect(200);
      seen.push(...(res.body.items as Array<{ seq: number }>).map((i) => i.seq));
      cursor = res.body.next_cursor;
      await writer.recordEvent({ eventType: 'login.failed', outcome: 'failure', username: 'newcomer' });
    } while (cursor);
    await writer.close();
    const seededFailures = seeded.filter((s) => s.event.eventType === 'login.failed').map((s) => s.seq);
    const inSeed = seen.filter((seq) => seq <= head);
    assert.equal(new Set(seen).size, seen.length, 'no record twice');
    assert.deepEqual(inSeed.sort((a, b) => a - b), seededFailures);
  });

  it('when bad filters are sent, then 400 invalid_request naming them', async () => {
    for (const [query, field] of [
      [{ ip: '10.0.0.0/33' }, 'ip'], [{ ip: 'not-an-ip' }, 'ip'], [{ ip: '1.2.3' }, 'ip'], [{ from: 'yesterday' }, 'from'], [{ limit: '1001' }, 'limit'],
      [{ limit: '0' }, 'limit'], [{ outcome: 'maybe' }, 'outcome'], [{ user_id: '42' }, 'user_id'], [{ cursor: 'garbage' }, 'cursor'],
      [{ from: '2026-01-02T00:00:00Z', to: '2026-01-01T00:00:00Z' }, 'from'],
    ] as Array<[Filter, string]>) {
      const res = await get('/admin/login-events').query(query).expect(400);
      assert.ok((res.body.fields as string[]).includes(field), JSON.stringify(query));
    }
  });

  it('when exported as NDJSON or CSV, then the full result streams (beyond one page) and the export is recorded', async () => {
    const expected = seeded.filter((s) => s.event.outcome === 'failure').length;
    const nd = await get('/admin/login-events').query({ outcome: 'failure', from: '2026-01-01T00:00:00Z', to: '2026-01-03T00:00:00Z', limit: 5 }).set('Accept', 'application/x-ndjson').expect(200);
    assert.match(nd.headers['content-type']!, /application\/x-ndjson/);
    const lines = nd.text.trim().split('\n').map((l) => JSON.parse(l) as { seq: number; outcome: string });
    assert.equal(lines.length, expected);
    assert.ok(lines.every((l) => l.outcome === 'failure'));

    const csv = await get('/admin/login-events').query({ from: '2026-01-01T00:00:00Z', to: '2026-01-03T00:00:00Z' }).set('Accept', 'text/csv').expect(200);
    const rows = csv.text.trim().split('\r\n');
    assert.equal(rows[0], '"seq","event_id","occurred_at","event_type","outcome","reason","username","user_id","ip","user_agent","device_id","mfa_method","session_id","request_id","actor_id","details"');
    assert.equal(rows.length, seeded.length + 1);
    assert.ok(csv.text.includes(`"'=HYPERLINK(""http://evil"")"`), 'a formula-looking cell is neutralized');
    const exports = await auditRows(gw.t, { eventType: 'audit.exported' });
    assert.deepEqual(exports.slice(-2).map((r) => r.details?.rows), [expected, seeded.length]);
  });

  it('when exported as CSV, then every cell is quoted, so no separator a spreadsheet may use starts a cell, and formulas keep their prefix', async () => {
    const hostile = [
      `x;=cmd|' /C calc'!A0`, 'a,b', 'tab\there', 'say "hi"', 'line1\nline2', 'cr\r\nlf', '=1+2', '+SUM(A1)', '-2+3', '@SUM(A1)', '\tlead', 'plain',
    ];
    const writer = createChainWriter(gw.t.db, { batchMax: 8, writeTimeoutMs: 5000 });
    for (const [i, text] of hostile.entries()) {
      await writer.recordEvent({ eventType: 'login.failed', outcome: 'failure', reason: text as never, username: text, userAgent: hostile[(i + 1) % hostile.length]!, deviceId: 'csv-attack', details: { text } });
    }
    await writer.close();
    const csv = await get('/admin/login-events').query({ device_id: 'csv-attack' }).set('Accept', 'text/csv').expect(200);

    // Outside the quoted cells there is nothing but the comma and the line break: no `;` or tab a spreadsheet could split on.
    assert.match(csv.text.replace(/"(?:[^"]|"")*"/g, ''), /^[,\r\n]*$/);
    const table = parseQuotedCsv(csv.text);
    assert.equal(table.length, hostile.length + 1);
    const header = table[0]!;
    const column = (name: string) => header.indexOf(name);
    const neutralized = (text: string) => (/^[=+\-@\t\r]/.test(text) ? `'${text}` : text);
    const rows = table.slice(1).reverse(); // newest first
    for (const [i, text] of hostile.entries()) {
      const row = rows[i]!;
      assert.equal(row.length, header.length);
      assert.equal(row[column('username')], neutralized(text), JSON.stringify(text));
      assert.equal(row[column('reason')], neutralized(text));
      assert.equal(row[column('user_agent')], neutralized(hostile[(i + 1) % hostile.length]!));
      assert.deepEqual(JSON.parse(row[column('details')]!), { text });
      assert.equal(row[column('session_id')], '', 'NULL is the empty quoted cell');
    }
  });

  it('when a cursor was not issued by the gateway, then 400 naming cursor, for login events and the user list alike', async () => {
    const issued = async (path: string, token: string) => {
      const res = await get(path, token).query({ limit: 1 }).expect(200);
      assert.equal(typeof res.body.next_cursor, 'string', `${path} issues a cursor`);
      return res.body.next_cursor as string;
    };
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const routes = [
      { path: '/admin/login-events', token: security, cursor: await issued('/admin/login-events', security) },
      { path: '/admin/users', token: adminToken, cursor: await issued('/admin/users', adminToken) },
    ];
    for (const [n, route] of routes.entries()) {
      await get(route.path, route.token).query({ cursor: route.cursor, limit: 1 }).expect(200);
      const body = JSON.parse(Buffer.from(route.cursor, 'base64url').toString('utf8')) as Record<string, unknown>;
      const forged: string[] = [
        encode({ after: '\u0000' }), encode({ after: 'carol' }), encode({ before: 5 }), encode([body]), encode('x'), encode(null), encode(42),
        encode({ ...body, extra: 1 }), `${route.cursor}=`, `${route.cursor}.`, 'garbage!', routes[1 - n]!.cursor,
        Buffer.from(JSON.stringify(body, null, 1)).toString('base64url'),
      ];
      for (const key of Object.keys(body)) {
        const rest = { ...body };
        delete rest[key];
        forged.push(encode(rest));
        const bad = typeof body[key] === 'string' ? ['\u0000', 'a\u0000b', '\ud800', 'x\udc00', 1, null, true, {}] : [2 ** 60, 1.5, -1, 0, '1', null, true, {}];
        for (const value of bad) forged.push(encode({ ...body, [key]: value }));
        forged.push(Buffer.from(JSON.stringify({ ...body, [key]: 'UNSAFE' }).replace('"UNSAFE"', '9007199254740993')).toString('base64url'));
      }
      if (typeof body.v === 'number') forged.push(encode({ ...body, v: body.v + 1 }));
      for (const cursor of forged) {
        const res = await get(route.path, route.token).query({ cursor });
        assert.equal(res.status, 400, `${route.path} cursor ${Buffer.from(cursor, 'base64url').toString('utf8')}`);
        assert.ok((res.body.fields as string[]).includes('cursor'), JSON.stringify(res.body));
      }
    }
  });

  it('when the user list gets a cursor naming a NUL username, then 400 naming cursor, and nothing reaches PostgreSQL', async () => {
    const cursor = Buffer.from(JSON.stringify({ after: '\u0000' })).toString('base64url');
    const res = await get('/admin/users', adminToken).query({ cursor }).expect(400);
    assert.deepEqual([res.body.code, res.body.fields], ['invalid_request', ['cursor']]);
  });

  it('when the user list is paged, then the cursor it issues walks every user exactly once', async () => {
    const all = ((await get('/admin/users', adminToken).query({ limit: 1000 }).expect(200)).body.items as Array<{ id: string }>).map((u) => u.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res: request.Response = await get('/admin/users', adminToken).query({ limit: 1, ...(cursor ? { cursor } : {}) }).expect(200);
      seen.push(...(res.body.items as Array<{ id: string }>).map((u) => u.id));
      cursor = res.body.next_cursor;
    } while (cursor);
    assert.deepEqual(seen, all);
  });

  it('when the summary is asked for, then counts per bucket, failing IPs, targeted usernames and spraying IPs match the seed', async () => {
    const res = await get('/admin/login-events/summary').query({ from: '2026-01-01T00:00:00Z', to: '2026-01-03T00:00:00Z', bucket: 'day' }).expect(200);
    const day1 = seeded.filter((s) => s.at < BASE + 24 * 3600_000);
    assert.deepEqual(res.body.buckets[0], {
      start: '2026-01-01T00:00:00.000000Z',
      success: day1.filter((s) => s.event.outcome === 'success').length,
      failure: day1.filter((s) => s.event.outcome === 'failure').length,
    });
    const failures = seeded.filter((s) => s.event.outcome === 'failure');
    const byIp = new Map<string, number>();
    for (const s of failures) byIp.set(s.event.ip!, (byIp.get(s.event.ip!) ?? 0) + 1);
    const topIp = [...byIp.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]!;
    assert.deepEqual(res.body.top_failing_ips[0], { ip: topIp[0], failures: topIp[1] });
    const ghostIps = new Set(failures.filter((s) => normalizeUsername(s.event.username!) === 'ghost').map((s) => s.event.ip));
    assert.ok((res.body.most_targeted_usernames as Array<{ username: string; distinct_ips: number }>).some((u) => u.username === 'ghost' && u.distinct_ips === ghostIps.size));
    assert.ok(res.body.spraying_ips.length > 0);
    const hourly = await get('/admin/login-events/summary').query({ from: '2026-01-01T00:00:00Z', to: '2026-01-01T06:00:00Z' }).expect(200);
    assert.equal(hourly.body.buckets.length, 6);
  });

  it('when a security token reads, then 200; a user token 403; no token 401; and every read leaves audit.queried with filters and count', async () => {
    const before = (await auditRows(gw.t, { eventType: 'audit.queried' })).length;
    const res = await get('/admin/login-events').query({ username: 'bob', limit: 3 }).expect(200);
    await get('/admin/login-events', adminToken).expect(200);
    await get('/admin/login-events', plain).expect(403);
    await request(gw.app).get('/admin/login-events').expect(401);
    for (const path of ['/admin/lockouts', '/admin/audit/checkpoints', '/admin/login-events/summary', '/admin/audit/verify']) {
      await get(path, plain).expect(403);
      await get(path).expect(200);
    }
    const queried = await auditRows(gw.t, { eventType: 'audit.queried' });
    assert.equal(queried.length, before + 6);
    const first = queried[before]!;
    assert.deepEqual(first.details, { resource: 'login-events', filters: { username: 'bob' }, returned: res.body.items.length });
    assert.ok(first.actor_id);
    await request(gw.app).delete('/admin/lockouts/someone').set('Authorization', `Bearer ${security}`).expect(403);
  });

  it('when integrity is checked, then it verifies incrementally from the last checkpoint, in full on request, and finds tampering', async () => {
    const checkpointer = createCheckpointer({
      db: gw.t.db,
      writer: createChainWriter(gw.t.db, { batchMax: 8, writeTimeoutMs: 5000 }),
      key: loadSigningKey(gw.setup.env.AUDIT_SIGNING_KEY_FILE!, { generate: false }),
      file: gw.setup.env.AUDIT_CHECKPOINT_FILE!,
      everyRecords: 1000,
      everySeconds: 3600,
      logger: createLogger('silent'),
    });
    const cp = await checkpointer.close();
    const first = await get('/admin/audit/verify').expect(200);
    assert.equal(first.body.valid, true);
    assert.ok(first.body.checkpoints_checked >= 1);
    const second = await get('/admin/audit/verify').expect(200);
    assert.equal(second.body.from_seq, cp!.seq + 1);
    assert.ok(second.body.checked < first.body.checked);
    const full = await get('/admin/audit/verify').query({ full: 'true' }).expect(200);
    assert.equal(full.body.from_seq, 1);
    const listed = await get('/admin/audit/checkpoints').expect(200);
    assert.equal(listed.body.items[0].seq, cp!.seq);

    const client = new pg.Client({ connectionString: urlFor(gw.t.name) });
    await client.connect();
    await client.query(`SET session_replication_role = replica; UPDATE audit_log SET username = 'mallory' WHERE seq = 5`);
    await client.end();
    const broken = await get('/admin/audit/verify').query({ full: 'true' }).expect(200);
    assert.deepEqual([broken.body.valid, broken.body.first_invalid_seq, broken.body.problem], [false, 5, 'hash_mismatch']);
  });
});

describe('lockouts through the API', () => {
  it('when an admin unlocks an account via one gateway process, then the other process lets the right password in, and the unlock is recorded', async () => {
    const t: TestDatabase = await createTestDatabase();
    const admin = await createTestGateway({ t });
    const setup = sharedSetup(t);
    const [a, b] = await Promise.all([startGateway(setup.env), startGateway(setup.env)]);
    try {
      const victim = uniqueName('victim');
      await admin.addUser(victim, PASSWORD);
      const adminName = uniqueName('unlocker');
      await admin.addUser(adminName, PASSWORD, ['admin']);
      const post = (url: string, body: unknown) => fetch(`${url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const token = ((await (await post(b.url, { username: adminName, password: PASSWORD })).json()) as { access_token: string }).access_token;
      for (let i = 0; i < 5; i++) assert.equal((await post(a.url, { username: victim, password: 'wrong wrong wrong' })).status, 401);
      assert.equal((await post(a.url, { username: victim, password: PASSWORD })).status, 429);

      const auth = { authorization: `Bearer ${token}` };
      const list = (await (await fetch(`${b.url}/admin/lockouts`, { headers: auth })).json()) as { items: Array<{ username: string; failures: number; lock_count: number; locked_until: string }> };
      const entry = list.items.find((l) => l.username === victim);
      assert.ok(entry, 'the lock set by one process is listed by the other');
      assert.deepEqual([entry.failures, entry.lock_count], [5, 1]);
      assert.ok(Date.parse(entry.locked_until) > Date.now());
      assert.equal((await fetch(`${b.url}/admin/lockouts/${encodeURIComponent(victim.toUpperCase())}`, { headers: auth })).status, 200);

      assert.equal((await fetch(`${b.url}/admin/lockouts/${encodeURIComponent(victim)}`, { method: 'DELETE', headers: auth })).status, 204);
      assert.equal((await post(a.url, { username: victim, password: PASSWORD })).status, 200);
      assert.equal((await fetch(`${b.url}/admin/lockouts/${encodeURIComponent(victim)}`, { headers: auth })).status, 404);
      const cleared = await auditRows(t, { eventType: 'lockout.cleared' });
      assert.equal(cleared.length, 1);
      assert.equal(cleared[0]!.details?.was_locked, true);
      assert.ok(cleared[0]!.actor_id);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await admin.close();
      await t.drop();
      fs.rmSync(setup.dir, { recursive: true, force: true });
    }
  });

  it('when the in-process store is used (embedded path), then lockouts are listed and cleared the same way', async () => {
    const gw = await createTestGateway({ redis: false });
    try {
      const victim = uniqueName('local-victim');
      await gw.addUser(victim, PASSWORD);
      const adminName = uniqueName('local-admin');
      await gw.addUser(adminName, PASSWORD, ['admin']);
      const token = (await request(gw.app).post('/login').send({ username: adminName, password: PASSWORD }).expect(200)).body.access_token as string;
      for (let i = 0; i < 5; i++) await request(gw.app).post('/login').send({ username: victim, password: 'wrong wrong wrong' }).expect(401);
      const list = await request(gw.app).get('/admin/lockouts').set('Authorization', `Bearer ${token}`).expect(200);
      assert.deepEqual((list.body.items as Array<{ username: string }>).map((l) => l.username), [victim]);
      await request(gw.app).delete(`/admin/lockouts/${encodeURIComponent(victim)}`).set('Authorization', `Bearer ${token}`).expect(204);
      await request(gw.app).post('/login').send({ username: victim, password: PASSWORD }).expect(200);
      assert.deepEqual((await request(gw.app).get('/admin/lockouts').set('Authorization', `Bearer ${token}`).expect(200)).body.items, []);
    } finally {
      await gw.close();
    }
  });
});

