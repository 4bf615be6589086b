import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { createPostgresDatabase } from '../../src/db/database.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { createTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { REDIS_URL, auditRows, createTestGateway, sharedSetup, uniqueName, type SharedSetup, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';

async function post(url: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: res.status === 204 ? null : await res.json() };
}

describe('two gateway processes sharing PostgreSQL and Redis', () => {
  let t: TestDatabase;
  let setup: SharedSetup;
  let admin: TestGateway;
  let gateways: RunningGateway[];
  before(async () => {
    t = await createTestDatabase();
    admin = await createTestGateway({ t });
    setup = sharedSetup(t);
    gateways = await Promise.all([startGateway(setup.env), startGateway(setup.env)]);
  });
  after(async () => {
    await Promise.all(gateways.map((g) => g.stop()));
    await admin.close();
    await t.drop();
    fs.rmSync(setup.dir, { recursive: true, force: true });
  });

  it('when 60 wrong passwords for one account arrive in parallel across both, then exactly 5 are answered 401 and 55 429, the right password is refused, and there are 61 records', async () => {
    const username = uniqueName('parallel');
    await admin.addUser(username, PASSWORD);
    const answers = await Promise.all(
      Array.from({ length: 60 }, (_, i) => post(`${gateways[i % 2]!.url}/login`, { username, password: `wrong password ${i}` })),
    );
    const statuses = answers.map((a) => a.status);
    assert.equal(statuses.filter((s) => s === 401).length, 5, statuses.join(','));
    assert.equal(statuses.filter((s) => s === 429).length, 55);
    assert.ok(answers.filter((a) => a.status === 429).every((a) => (a.body as { code: string }).code === 'account_locked'));

    const attackRecords = (await auditRows(t, { username })).filter((r) => r.event_type !== 'user.created');
    assert.equal(attackRecords.length, 61, 'sixty attempts and one lockout.started');
    assert.equal(attackRecords.filter((r) => r.reason === 'wrong_password').length, 5);
    assert.equal(attackRecords.filter((r) => r.reason === 'account_locked').length, 55);
    assert.equal(attackRecords.filter((r) => r.event_type === 'lockout.started').length, 1);

    const right = await post(`${gateways[1]!.url}/login`, { username, password: PASSWORD });
    assert.equal(right.status, 429);
    const last = (await auditRows(t, { username })).at(-1);
    assert.deepEqual([last?.event_type, last?.reason], ['login.failed', 'account_locked']);
  });

  it('when ten parallel refreshes of one token hit both processes, then exactly one wins', async () => {
    const username = uniqueName('race');
    await admin.addUser(username, PASSWORD);
    const tokens = (await post(`${gateways[0]!.url}/login`, { username, password: PASSWORD })).body as { refresh_token: string };
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => post(`${gateways[i % 2]!.url}/refresh`, { refresh_token: tokens.refresh_token })),
    );
    assert.deepEqual(answers.map((a) => a.status).sort(), [200, ...Array(9).fill(401)]);
    assert.equal((await auditRows(t, { eventType: 'token.refreshed' })).length, 1);
  });
});

describe('login while a store fails', () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
  });
  after(async () => {
    await t.drop();
  });

  it('when Redis goes away mid-attack, then guessing stays limited by this instance and the records say degraded', async () => {
    const redisPort = Number(new URL(REDIS_URL).port || 6379);
    const proxy: TcpProxy = await createTcpProxy(redisPort, new URL(REDIS_URL).hostname);
    const gw = await createTestGateway({ t, env: { REDIS_URL: `redis://127.0.0.1:${proxy.port}` } });
    try {
      const username = uniqueName('redis-down');
      await gw.addUser(username, PASSWORD);
      const login = (password: string) => request(gw.app).post('/login').send({ username, password });
      await login('wrong password 1').expect(401);
      await login('wrong password 2').expect(401);

      await proxy.stop();
      const during: number[] = [];
      for (let i = 0; i < 10; i++) during.push((await login(`wrong password during ${i}`)).status);
      // The instance's own limiter starts from zero: at most five more guesses, never more.
      assert.deepEqual(during, [401, 401, 401, 401, 401, 429, 429, 429, 429, 429]);
      await login(PASSWORD).expect(429);
      const degraded = (await auditRows(t, { username })).filter((r) => r.details?.lockout_store === 'degraded');
      assert.ok(degraded.length >= 11, `${degraded.length} records marked degraded`);
      assert.ok(degraded.some((r) => r.event_type === 'lockout.started'));
    } finally {
      await proxy.stop().catch(() => {});
      await gw.close();
    }
  });

  it('when PostgreSQL is unreachable, then /login answers 503, never 200, and the attempt slot is given back', async () => {
    const pgProxy = await createTcpProxy(Number(new URL(t.url).port || 5432), new URL(t.url).hostname);
    const url = new URL(t.url);
    url.port = String(pgProxy.port);
    const viaProxy = createPostgresDatabase({ url: url.toString(), poolMax: 4, statementTimeoutMs: 1000, connectTimeoutMs: 500 });
    const gw = await createTestGateway({ t: { ...t, db: viaProxy } });
    try {
      const username = uniqueName('pg-down');
      await gw.addUser(username, PASSWORD);
      await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200);
      await pgProxy.stop();
      for (let i = 0; i < 7; i++) {
        const res = await request(gw.app).post('/login').send({ username, password: PASSWORD });
        assert.equal(res.status, 503, res.text);
        assert.match(res.body.code, /^(audit|service)_unavailable$/);
        assert.ok(res.headers['retry-after']);
      }
      await pgProxy.start();
      // Seven outage attempts took no lasting slots: the account is not locked.
      await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200);
    } finally {
      await pgProxy.stop().catch(() => {});
      await gw.close();
      await viaProxy.close();
    }
  });
});
