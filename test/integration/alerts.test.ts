import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { ALERT_CURSOR, NEW_DEVICE_SQL, startAlertEngine, type AlertEngine } from '../../src/alerts/engine.js';
import { parseAlertRules, type AlertRules } from '../../src/alerts/rules.js';
import { createWebhookDelivery, SIGNATURE_HEADER, type WebhookDelivery } from '../../src/alerts/webhook.js';
import type { Queryable } from '../../src/db/database.js';
import { createLogger } from '../../src/logger.js';
import { alertMetrics } from '../../src/metrics.js';
import type { Role } from '../../src/users/user-queries.js';
import { startGateway, waitFor, type RunningGateway } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { runTs } from '../helpers/processes.js';
import { createTestGateway, sharedSetup, uniqueName, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';
const WEBHOOK_SECRET = 'test webhook secret, 32 bytes ok';
const ALL_DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const hh = (h: number) => `${String(((h % 24) + 24) % 24).padStart(2, '0')}:00`;
const hourNow = () => new Date().getUTCHours();

/** Short windows and low thresholds, so each attack takes a handful of requests. */
function fastRules(hours: { start: string; end: string }): Record<string, unknown> {
  return {
    password_spraying: { threshold: 5, window_seconds: 120, suppress_seconds: 600 },
    credential_stuffing: { threshold: 4, window_seconds: 120, suppress_seconds: 600 },
    lockout_storm: { threshold: 3, window_seconds: 120, suppress_seconds: 600 },
    success_after_failures: { threshold: 3, window_seconds: 120, suppress_seconds: 600 },
    new_device: { ignore_first_login: true, ignore_missing_device: true },
    admin_off_hours: { time_zone: 'UTC', weekdays: ALL_DAYS, ...hours },
  };
}
/** Working hours that exclude this moment (they start three hours from now), and hours around it. */
const OFF_HOURS_NOW = () => ({ start: hh(hourNow() + 3), end: hh(hourNow() + 5) });
const WORKING_HOURS_NOW = () => ({ start: hh(hourNow() - 2), end: hh(hourNow() + 3) });

interface AlertRecord {
  seq: number;
  details: {
    alert_id: string;
    rule: string;
    severity: string;
    key: string;
    count: number;
    threshold?: number;
    first_seq: number;
    last_seq: number;
    seqs: number[];
    [member: string]: unknown;
  };
}

async function alertRecords(db: Pick<Queryable, 'query'>, rule?: string, key?: string): Promise<AlertRecord[]> {
  const { rows } = await db.query<{ seq: number; details: string }>(
    `SELECT seq, details::text AS details FROM audit_log WHERE event_type = 'alert.raised' AND ($1::text IS NULL OR reason = $1) ORDER BY seq`,
    [rule ?? null],
  );
  return rows.map((r) => ({ seq: r.seq, details: JSON.parse(r.details) as AlertRecord['details'] })).filter((a) => key === undefined || a.details.key === key);
}

const headSeq = async (db: Pick<Queryable, 'query'>): Promise<number> =>
  (await db.query<{ seq: number }>('SELECT coalesce(max(seq), 0)::bigint AS seq FROM audit_log')).rows[0]!.seq;

/** Waits until the engine has judged every record committed so far. */
async function caughtUp(engine: AlertEngine, db: Pick<Queryable, 'query'>): Promise<void> {
  const head = await headSeq(db);
  await waitFor('the alert engine to catch up', () => Promise.resolve(engine.stats().processedSeq >= head ? true : undefined), 10_000);
}

const waitForAlert = (db: Pick<Queryable, 'query'>, rule: string, key: string): Promise<AlertRecord> =>
  waitFor(`a ${rule} alert for ${key}`, async () => (await alertRecords(db, rule, key))[0], 10_000);

function login(gw: TestGateway, username: string, password: string, ip: string, device?: string) {
  let r = request(gw.app).post('/login').set('X-Forwarded-For', ip);
  if (device) r = r.set('X-Device-Id', device);
  return r.send({ username, password });
}

/** A real local HTTP receiver; `status(n)` answers the n-th request (0-based). */
async function webhookReceiver(status: (n: number) => number = () => 204) {
  const received: Array<{ body: string; headers: http.IncomingHttpHeaders; status: number }> = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const answer = status(received.length);
      received.push({ body: Buffer.concat(chunks).toString('utf8'), headers: req.headers, status: answer });
      res.writeHead(answer).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/authtrail`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** What a receiver does: recompute HMAC-SHA256 of the raw body and compare in constant time. */
function signatureValid(body: string, header: string | string[] | undefined): boolean {
  if (typeof header !== 'string') return false;
  const expected = Buffer.from(`sha256=${crypto.createHmac('sha256', WEBHOOK_SECRET).update(body).digest('hex')}`);
  const given = Buffer.from(header);
  return given.length === expected.length && crypto.timingSafeEqual(given, expected);
}

function engineFor(db: Pick<Queryable, 'query'>, gw: TestGateway, rules: AlertRules, webhook?: WebhookDelivery): AlertEngine {
  return startAlertEngine({ db, writer: gw.services.writer, rules, logger: createLogger('silent'), pollIntervalMs: 50, leaseTtlMs: 3000, webhook });
}

/** An alert as GET /admin/alerts answers it. */
interface ApiAlert {
  id: string;
  seq: number;
  rule: string;
  status: string;
  resolution: { actor_id: string; note: string } | null;
}
const itemsOf = (res: request.Response): ApiAlert[] => (res.body as { items: ApiAlert[] }).items;

async function tokenOf(gw: TestGateway, roles: Role[]): Promise<{ id: string; token: string }> {
  const username = uniqueName(roles.join('-'));
  const id = await gw.addUser(username, PASSWORD, roles);
  const res = await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200);
  return { id, token: res.body.access_token as string };
}

describe('alert rules against real attacks through the gateway (PostgreSQL, Redis)', () => {
  let gw: TestGateway;
  let engine: AlertEngine;
  let hook: Awaited<ReturnType<typeof webhookReceiver>>;
  let webhook: WebhookDelivery;

  before(async () => {
    gw = await createTestGateway({ env: { TRUST_PROXY: 'loopback' } });
    // The receiver fails its first request, so the first alert is delivered on a retry.
    hook = await webhookReceiver((n) => (n === 0 ? 503 : 204));
    webhook = createWebhookDelivery({
      url: hook.url,
      secret: Buffer.from(WEBHOOK_SECRET),
      timeoutMs: 2000,
      retries: 3,
      logger: createLogger('silent'),
      backoffMs: () => 50,
    });
    engine = engineFor(gw.t.db, gw, parseAlertRules(fastRules(OFF_HOURS_NOW())), webhook);
    alertMetrics(gw.services.metrics, engine, webhook);
  });
  after(async () => {
    await engine.close();
    await hook.close();
    await gw.close();
  });

  it('password spraying: many usernames from one address raise one alert, and the attack going on raises no second one', async () => {
    const ip = '203.0.113.7';
    for (let i = 0; i < 6; i++) await login(gw, uniqueName(`spray${i}`), 'Winter2026!', ip).expect(401);
    const alert = await waitForAlert(gw.t.db, 'password_spraying', ip);
    assert.equal(alert.details.severity, 'high');
    assert.ok(alert.details.count >= 5 && alert.details.threshold === 5, JSON.stringify(alert.details));
    // The seqs it names are the failed logins from that address.
    const { rows } = await gw.t.db.query<{ event_type: string; ip: string }>('SELECT event_type, host(ip) AS ip FROM audit_log WHERE seq = ANY($1::bigint[])', [alert.details.seqs]);
    assert.equal(rows.length, alert.details.seqs.length);
    assert.ok(rows.every((r) => r.event_type === 'login.failed' && r.ip === ip));
    assert.equal(alert.details.first_seq, alert.details.seqs[0]);

    for (let i = 0; i < 6; i++) await login(gw, uniqueName(`spray-more${i}`), 'Spring2026!', ip).expect(401);
    await caughtUp(engine, gw.t.db);
    assert.equal((await alertRecords(gw.t.db, 'password_spraying', ip)).length, 1, 'suppressed: one attack, one alert');
  });

  it('password spraying from addresses that change inside one IPv6 /64 is one attacker', async () => {
    for (let i = 0; i < 5; i++) await login(gw, uniqueName(`spray6-${i}`), 'Winter2026!', `2001:db8:77:1::${(i + 10).toString(16)}`).expect(401);
    const alert = await waitForAlert(gw.t.db, 'password_spraying', '2001:db8:77:1::/64');
    assert.equal(alert.details.distinct_usernames, 5);
  });

  it('credential stuffing: one username failing from many addresses raises an alert keyed by the account', async () => {
    const username = uniqueName('stuffed');
    await gw.addUser(username, PASSWORD);
    for (let i = 1; i <= 4; i++) await login(gw, username.toUpperCase(), `leaked password ${i}`, `198.51.100.${i}`).expect(401);
    const alert = await waitForAlert(gw.t.db, 'credential_stuffing', username);
    assert.equal(alert.details.distinct_addresses, 4);
    assert.equal(alert.details.records, 4);
  });

  it('lockout storm: accounts locked one after another across the cluster raise one alert', async () => {
    for (let a = 0; a < 3; a++) {
      const victim = uniqueName(`storm${a}`);
      for (let i = 0; i < 5; i++) await login(gw, victim, `guess ${i}`, `192.0.2.${10 + a}`).expect(401);
      await login(gw, victim, 'guess 6', `192.0.2.${10 + a}`).expect(429);
    }
    const alert = await waitForAlert(gw.t.db, 'lockout_storm', 'cluster');
    assert.equal(alert.details.lockouts, 3);
    const { rows } = await gw.t.db.query<{ event_type: string }>('SELECT DISTINCT event_type FROM audit_log WHERE seq = ANY($1::bigint[])', [alert.details.seqs]);
    assert.deepEqual(rows.map((r) => r.event_type), ['lockout.started']);
  });

  it('success after failures: a right password after a run of wrong ones raises an alert naming both', async () => {
    const username = uniqueName('guessed');
    await gw.addUser(username, PASSWORD);
    for (let i = 0; i < 3; i++) await login(gw, username, `guess ${i}`, '192.0.2.50').expect(401);
    await login(gw, username, PASSWORD, '192.0.2.50').expect(200);
    const alert = await waitForAlert(gw.t.db, 'success_after_failures', username);
    assert.equal(alert.details.failures, 3);
    const { rows } = await gw.t.db.query<{ event_type: string }>('SELECT event_type FROM audit_log WHERE seq = $1', [alert.details.success_seq]);
    assert.equal(rows[0]?.event_type, 'login.succeeded');
    assert.equal(alert.details.last_seq, alert.details.success_seq);
  });

  it('new device: a device never seen in the user\'s earlier successful logins raises one alert; known devices, the first login and no device id do not', async () => {
    const username = uniqueName('traveller');
    await gw.addUser(username, PASSWORD);
    await login(gw, username, PASSWORD, '192.0.2.60', 'laptop-1').expect(200);
    await login(gw, username, PASSWORD, '192.0.2.60', 'laptop-1').expect(200);
    await login(gw, username, PASSWORD, '192.0.2.60').expect(200);
    await caughtUp(engine, gw.t.db);
    assert.deepEqual(await alertRecords(gw.t.db, 'new_device', username), []);
    await login(gw, username, PASSWORD, '203.0.113.200', 'unknown-phone').expect(200);
    const alert = await waitForAlert(gw.t.db, 'new_device', username);
    assert.equal(alert.details.device_id, 'unknown-phone');
    assert.equal(alert.details.severity, 'low');
  });

  it('admin off hours: an admin action outside the configured hours raises an alert naming the admin and the action', async () => {
    const admin = await tokenOf(gw, ['admin']);
    const target = await gw.addUser(uniqueName('target'), PASSWORD);
    await request(gw.app).post(`/admin/users/${target}/disable`).set('Authorization', `Bearer ${admin.token}`).expect(200);
    const alert = await waitForAlert(gw.t.db, 'admin_off_hours', admin.id);
    assert.deepEqual([alert.details.event_type, alert.details.user_id, alert.details.time_zone], ['user.disabled', target, 'UTC']);
  });

  it('the alerts are in GET /admin/alerts once each, newest first, in pages; resolving writes alert.resolved with the actor, once', async () => {
    await caughtUp(engine, gw.t.db);
    const security = await tokenOf(gw, ['security']);
    const auditor = await tokenOf(gw, ['auditor']);
    const auth = (t: string) => ({ Authorization: `Bearer ${t}` });
    const inLog = await alertRecords(gw.t.db);

    const all = await request(gw.app).get('/admin/alerts').set(auth(auditor.token)).expect(200);
    assert.deepEqual(itemsOf(all).map((a) => a.seq), inLog.map((a) => a.seq).reverse(), 'every alert once, newest first');
    assert.ok(itemsOf(all).every((a) => a.status === 'open'));
    const queried = await gw.t.db.query<{ details: string }>(`SELECT details::text AS details FROM audit_log WHERE event_type = 'audit.queried' ORDER BY seq DESC LIMIT 1`);
    assert.deepEqual(JSON.parse(queried.rows[0]!.details), { resource: 'alerts', filters: { status: 'open' }, returned: inLog.length });

    const paged: number[] = [];
    let cursor: string | null = null;
    do {
      const res: request.Response = await request(gw.app).get(`/admin/alerts?limit=2${cursor ? `&cursor=${cursor}` : ''}`).set(auth(security.token)).expect(200);
      paged.push(...itemsOf(res).map((a) => a.seq));
      cursor = res.body.next_cursor as string | null;
    } while (cursor);
    assert.deepEqual(paged, inLog.map((a) => a.seq).reverse());

    const spraying = await request(gw.app).get('/admin/alerts?rule=password_spraying').set(auth(security.token)).expect(200);
    assert.ok(itemsOf(spraying).length === 2 && itemsOf(spraying).every((a) => a.rule === 'password_spraying'));
    await request(gw.app).get('/admin/alerts?rule=nonsense').set(auth(security.token)).expect(400);
    await request(gw.app).get('/admin/alerts?cursor=abc').set(auth(security.token)).expect(400);

    const target = itemsOf(spraying)[0]!;
    await request(gw.app).post(`/admin/alerts/${target.id}/resolve`).set(auth(auditor.token)).send({}).expect(403);
    await request(gw.app).post(`/admin/alerts/${target.id}/resolve`).set(auth(security.token)).send({ note: 'blocked at the edge' }).expect(204);
    const again = await request(gw.app).post(`/admin/alerts/${target.id}/resolve`).set(auth(security.token)).send({}).expect(409);
    assert.equal(again.body.code, 'alert_already_resolved');
    await request(gw.app).post(`/admin/alerts/${crypto.randomUUID()}/resolve`).set(auth(security.token)).send({}).expect(404);
    await request(gw.app).post('/admin/alerts/not-an-id/resolve').set(auth(security.token)).send({}).expect(404);

    const resolved = await gw.t.db.query<{ actor_id: string; details: string }>(`SELECT actor_id::text AS actor_id, details::text AS details FROM audit_log WHERE event_type = 'alert.resolved'`);
    assert.equal(resolved.rows.length, 1);
    assert.equal(resolved.rows[0]!.actor_id, security.id);
    assert.deepEqual(JSON.parse(resolved.rows[0]!.details), { alert_id: target.id, rule: 'password_spraying', key: inLog.find((a) => a.seq === target.seq)!.details.key, raised_seq: target.seq, note: 'blocked at the edge' });

    const open = await request(gw.app).get('/admin/alerts').set(auth(security.token)).expect(200);
    assert.ok(!itemsOf(open).some((a) => a.id === target.id));
    const closed = await request(gw.app).get('/admin/alerts?status=resolved').set(auth(security.token)).expect(200);
    assert.deepEqual(itemsOf(closed).map((a) => [a.id, a.resolution?.actor_id, a.resolution?.note]), [
      [target.id, security.id, 'blocked at the edge'],
    ]);

    // Two people resolving one alert at the same moment: one succeeds, the other is told it is done.
    const other = itemsOf(open)[0]!;
    const both = await Promise.all([0, 1].map(() => request(gw.app).post(`/admin/alerts/${other.id}/resolve`).set(auth(security.token)).send({})));
    assert.deepEqual(both.map((r) => r.status).sort(), [204, 409]);
  });

  it('the engine never alerts on alert records, and every alert was delivered to the webhook, signed, the first after a retry', async () => {
    await caughtUp(engine, gw.t.db);
    const inLog = await alertRecords(gw.t.db);
    const named = inLog.flatMap((a) => a.details.seqs);
    const { rows } = await gw.t.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE seq = ANY($1::bigint[]) AND event_type LIKE 'alert.%'`, [named]);
    assert.equal(rows[0]!.n, 0);

    await waitFor('every alert delivered', () => Promise.resolve(hook.received.filter((r) => r.status === 204).length >= inLog.length ? true : undefined), 10_000);
    assert.equal(hook.received[0]!.status, 503);
    assert.equal(hook.received[1]!.body, hook.received[0]!.body, 'the retry sends the same body');
    for (const delivery of hook.received) assert.ok(signatureValid(delivery.body, delivery.headers[SIGNATURE_HEADER.toLowerCase()]), 'HMAC-SHA256 of the body');
    const delivered = hook.received.filter((r) => r.status === 204).map((r) => JSON.parse(r.body) as { seq: number; event_type: string; details: { alert_id: string } });
    assert.deepEqual(delivered.map((d) => d.details.alert_id).sort(), inLog.map((a) => a.details.alert_id).sort());
    assert.ok(delivered.every((d) => d.event_type === 'alert.raised' && inLog.some((a) => a.seq === d.seq)));

    const metrics = (await request(gw.app).get('/metrics').expect(200)).text;
    assert.match(metrics, /authtrail_alerts_raised_total\{rule="password_spraying"\} 2\n/);
    assert.match(metrics, /authtrail_alert_webhook_failures_total\{reason="status"\} 1\n/);
    assert.match(metrics, /authtrail_alert_engine_leading 1\n/);
    assert.match(metrics, /authtrail_alert_engine_lag_records \d+\n/);
  });
});

describe('alert rules stay quiet on ordinary traffic', () => {
  it('when users log in from their own addresses and devices, with a few typos and a shared office address, then no alert is raised', async () => {
    const gw = await createTestGateway({ env: { TRUST_PROXY: 'loopback' } });
    const engine = engineFor(gw.t.db, gw, parseAlertRules(fastRules(WORKING_HOURS_NOW())));
    try {
      const users = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
        const username = uniqueName(`ordinary${i}`);
        return { username, id: await gw.addUser(username, PASSWORD), ip: `10.20.${i}.${i + 1}`, device: `device-${i}` };
      }));
      for (const [i, u] of users.entries()) {
        if (i % 3 === 0) await login(gw, u.username, 'correct horse battery stapel', u.ip, u.device).expect(401);
        if (i % 4 === 1) await login(gw, `${u.username}x`, PASSWORD, u.ip, u.device).expect(401);
        await login(gw, u.username, PASSWORD, u.ip, u.device).expect(200);
      }
      // The office: four people behind one address, each mistyping once before logging in.
      for (const u of users.slice(0, 4)) {
        await login(gw, u.username, 'Correct horse battery staple', '198.51.100.200', u.device).expect(401);
        await login(gw, u.username, PASSWORD, '198.51.100.200', u.device).expect(200);
      }
      // Back on their usual address and device; an API client without a device id.
      for (const u of users) await login(gw, u.username, PASSWORD, u.ip, u.device).expect(200);
      await login(gw, users[9]!.username, PASSWORD, users[9]!.ip).expect(200);
      // An admin at work, inside the configured hours.
      const admin = await tokenOf(gw, ['admin']);
      await request(gw.app).post(`/admin/users/${users[0]!.id}/sessions/revoke`).set('Authorization', `Bearer ${admin.token}`).expect(200);

      await caughtUp(engine, gw.t.db);
      assert.ok(engine.stats().processedSeq >= 45, `judged ${engine.stats().processedSeq} records`);
      assert.deepEqual(await alertRecords(gw.t.db), []);
    } finally {
      await engine.close();
      await gw.close();
    }
  });
});

describe('a webhook receiver that never answers', () => {
  it('holds up neither the engine nor logins: alerts keep being recorded while the first POST waits', async () => {
    const sockets = new Set<Socket>();
    const silent = http.createServer(() => {}); // reads requests, answers none
    silent.on('connection', (socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const gw = await createTestGateway({ env: { TRUST_PROXY: 'loopback' } });
    const webhook = createWebhookDelivery({
      url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}/`, timeoutMs: 60_000, retries: 0, logger: createLogger('silent'),
    });
    const engine = engineFor(gw.t.db, gw, parseAlertRules(fastRules(WORKING_HOURS_NOW())), webhook);
    try {
      const started = Date.now();
      for (const ip of ['203.0.113.41', '203.0.113.42', '203.0.113.43']) {
        for (let i = 0; i < 5; i++) await login(gw, uniqueName(`hang${i}`), 'Winter2026!', ip).expect(401);
        await waitForAlert(gw.t.db, 'password_spraying', ip);
      }
      assert.ok(Date.now() - started < 5000, `three attacks, three alerts in ${Date.now() - started} ms`);
      assert.equal(sockets.size, 1, 'the first delivery is still waiting for its answer');
    } finally {
      await webhook.close(100);
      await engine.close();
      await gw.close();
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});

describe('a new leader of the alert engine', () => {
  it('warms its windows from the records before its cursor without raising for them, completes an attack that began before, and repeats no alert', async () => {
    const gw = await createTestGateway({ env: { TRUST_PROXY: 'loopback' } });
    const rules = parseAlertRules(fastRules(WORKING_HOURS_NOW()));
    const first = engineFor(gw.t.db, gw, rules);
    const secondPool = gw.t.open();
    let second: AlertEngine | undefined;
    try {
      for (let i = 0; i < 3; i++) await login(gw, uniqueName(`slow${i}`), 'Autumn2026!', '203.0.113.31').expect(401);
      for (let i = 0; i < 5; i++) await login(gw, uniqueName(`fast${i}`), 'Autumn2026!', '203.0.113.32').expect(401);
      await waitForAlert(gw.t.db, 'password_spraying', '203.0.113.32');
      await caughtUp(first, gw.t.db);
      await first.close();

      second = engineFor(secondPool, gw, rules);
      await waitFor('the second engine to lead', () => Promise.resolve(second!.stats().leading ? true : undefined), 10_000);
      await caughtUp(second, gw.t.db);
      assert.equal((await alertRecords(gw.t.db)).length, 1, 'warming raised nothing');

      // Two more usernames complete the slow spray that started under the first leader.
      const slowSeqs = (await gw.t.db.query<{ seq: number }>(`SELECT seq FROM audit_log WHERE ip = '203.0.113.31' ORDER BY seq`)).rows.map((r) => r.seq);
      for (let i = 3; i < 5; i++) await login(gw, uniqueName(`slow${i}`), 'Autumn2026!', '203.0.113.31').expect(401);
      const completed = await waitForAlert(gw.t.db, 'password_spraying', '203.0.113.31');
      assert.equal(completed.details.count, 5);
      assert.deepEqual(completed.details.seqs.slice(0, 3), slowSeqs);

      // The fast spray goes on: the first leader's alert keeps the second one quiet.
      for (let i = 5; i < 8; i++) await login(gw, uniqueName(`fast${i}`), 'Autumn2026!', '203.0.113.32').expect(401);
      await caughtUp(second, gw.t.db);
      assert.equal((await alertRecords(gw.t.db, 'password_spraying', '203.0.113.32')).length, 1);
    } finally {
      await first.close();
      await second?.close();
      await gw.close();
    }
  });
});

describe('the alert engine inside two gateway processes on one database', () => {
  let t: TestDatabase;
  let dir: string;
  let env: Record<string, string>;
  let hook: Awaited<ReturnType<typeof webhookReceiver>>;
  before(async () => {
    t = await createTestDatabase();
    hook = await webhookReceiver();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-alerts-'));
    const rulesFile = path.join(dir, 'rules.json');
    fs.writeFileSync(rulesFile, JSON.stringify(fastRules(WORKING_HOURS_NOW())));
    const secretFile = path.join(dir, 'webhook.secret');
    fs.writeFileSync(secretFile, `${WEBHOOK_SECRET}\n`, { mode: 0o600 });
    env = {
      ...sharedSetup(t, { TRUST_PROXY: 'loopback', AUDIT_ALERT_RULES_FILE: rulesFile, AUDIT_ALERT_POLL_INTERVAL_MS: '50', AUDIT_ALERT_WEBHOOK_URL: hook.url, AUDIT_ALERT_WEBHOOK_SECRET_FILE: secretFile }).env,
    };
  });
  after(async () => {
    await hook.close();
    await t.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('when a rules file is wrong, then the gateway refuses to start, naming the member', async () => {
    const bad = path.join(dir, 'bad-rules.json');
    fs.writeFileSync(bad, JSON.stringify({ password_spraying: { treshold: 3 }, lockout_storm: { window_seconds: 0 } }));
    const out = await runTs('src/main.ts', [], { ...env, AUDIT_ALERT_RULES_FILE: bad, PORT: '0' });
    assert.equal(out.code, 1);
    assert.match(out.stderr, /AUDIT_ALERT_RULES_FILE/);
    assert.match(out.stderr, /password_spraying: unknown member: "treshold"/);
    assert.match(out.stderr, /lockout_storm\.window_seconds: /);
  });

  it('when one attack arrives through both, then one alert is raised and POSTed once, signed; both stop cleanly', async () => {
    const gateways: RunningGateway[] = await Promise.all([startGateway(env), startGateway(env)]);
    try {
      const ip = '203.0.113.99';
      for (let i = 0; i < 8; i++) {
        const res = await fetch(`${gateways[i % 2]!.url}/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-forwarded-for': ip },
          body: JSON.stringify({ username: uniqueName(`both${i}`), password: 'Summer2026!' }),
        });
        assert.equal(res.status, 401);
      }
      await waitFor('the webhook delivery', () => Promise.resolve(hook.received.length > 0 ? true : undefined), 15_000);
      // Both processes have had time to judge every record: the cursor is past the head.
      const head = await headSeq(t.db);
      await waitFor('the alerts cursor to pass the head', async () => {
        const { rows } = await t.db.query<{ seq: number }>('SELECT seq FROM audit_cursors WHERE name = $1', [ALERT_CURSOR]);
        return (rows[0]?.seq ?? 0) >= head ? true : undefined;
      }, 10_000);
      const alerts = await alertRecords(t.db, 'password_spraying', ip);
      assert.equal(alerts.length, 1);
      assert.equal(hook.received.length, 1);
      const delivery = hook.received[0]!;
      assert.ok(signatureValid(delivery.body, delivery.headers['x-authtrail-signature']));
      assert.equal((JSON.parse(delivery.body) as { details: { alert_id: string } }).details.alert_id, alerts[0]!.details.alert_id);
      const leases = await t.db.query<{ holder: string }>(`SELECT holder FROM audit_leases WHERE name = 'alerts'`);
      assert.equal(leases.rows.length, 1);
    } finally {
      const codes = await Promise.all(gateways.map((g) => g.stop()));
      assert.deepEqual(codes, [0, 0], gateways.map((g) => g.stderr()).join('\n'));
    }
  });
});

describe('the new_device history query', () => {
  it('is answered from indexes, not by scanning the log', async () => {
    const t = await createTestDatabase();
    try {
      await t.db.query(
        `INSERT INTO audit_log (seq, event_id, occurred_at, event_type, outcome, user_id, device_id, prev_hash, hash)
         SELECT i, gen_random_uuid(), now() - (40000 - i) * interval '1 second',
                (ARRAY['login.succeeded', 'login.failed', 'token.refreshed'])[i % 3 + 1], CASE WHEN i % 3 = 1 THEN 'failure' ELSE 'success' END,
                ('00000000-0000-4000-8000-' || lpad((i % 2000)::text, 12, '0'))::uuid, 'device-' || (i % 4000),
                sha256(('p' || i)::bytea), sha256(('h' || i)::bytea)
           FROM generate_series(1, 40000) AS i`,
      );
      await t.db.query('ANALYZE audit_log');
      const user = '00000000-0000-4000-8000-000000000003';
      // A page of three logins: a known device, a device the user never used, and no device id.
      const page = [[39_000, user, 'device-3'], [39_001, user, 'device-4'], [39_002, '00000000-0000-4000-8000-000000001999', null]] as const;
      const params = [page.map((p) => p[0]), page.map((p) => p[1]), page.map((p) => p[2])];
      const { rows } = await t.db.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${NEW_DEVICE_SQL}`, params);
      // audit_log is partitioned by month: each EXISTS reads every partition, and may scan the empty
      // ones (the months made ahead) whole, but reads a partition holding records only by an index.
      const held = await t.db.query<{ part: string }>('SELECT DISTINCT tableoid::regclass::text AS part FROM audit_log');
      const withRecords = new Set(held.rows.map((r) => r.part));
      const scans: Array<{ type: string; relation: string }> = [];
      const walk = (node: Record<string, unknown>) => {
        if (typeof node['Relation Name'] === 'string') scans.push({ type: String(node['Node Type']), relation: node['Relation Name'] });
        for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
      };
      walk((rows[0]!['QUERY PLAN'] as Array<{ Plan: Record<string, unknown> }>)[0]!.Plan);
      const onRecords = scans.filter((s) => withRecords.has(s.relation));
      const shown = scans.map((s) => `${s.type} on ${s.relation}`).join(', ');
      assert.ok(onRecords.every((s) => s.type !== 'Seq Scan'), shown);
      assert.equal(onRecords.filter((s) => /Index|Bitmap Heap/.test(s.type)).length, 3 * withRecords.size, `one index scan per EXISTS and partition with records: ${shown}`);
      const answer = await t.db.query<{ seq: number; seen: boolean; earlier: boolean }>(NEW_DEVICE_SQL, params);
      assert.deepEqual(answer.rows, [
        { seq: 39_000, seen: true, earlier: true },
        { seq: 39_001, seen: false, earlier: true },
        { seq: 39_002, seen: false, earlier: true },
      ]);
    } finally {
      await t.drop();
    }
  });
});
