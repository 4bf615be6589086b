import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { ScureBase32Plugin } from 'otplib';
import request from 'supertest';
import { totpCode } from '../../src/mfa/totp.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { auditRows, createTestGateway, REDIS_URL, uniqueName, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';
const base32 = new ScureBase32Plugin();
const now = (): number => Math.floor(Date.now() / 1000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const login = (gw: TestGateway, username: string, password: string) => request(gw.app).post('/login').send({ username, password });
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

/** Deletes every key of this gateway's prefix: what a Redis restart without persistence, or FLUSHALL, does to it. */
async function wipeRedisKeys(prefix: string, url = REDIS_URL): Promise<void> {
  const redis = new Redis(url);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

const statusCounts = (statuses: number[]): Record<number, number> =>
  statuses.reduce<Record<number, number>>((acc, s) => ({ ...acc, [s]: (acc[s] ?? 0) + 1 }), {});

describe('attack: unlimited guessing of the current password with a stolen access token', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(async () => {
    await gw.close();
  });

  it('when a token holder makes self-service successes between wrong current-password guesses, then the fifth wrong guess still locks the account', async () => {
    const username = uniqueName('stolen-token');
    await gw.addUser(username, PASSWORD);
    const token = (await login(gw, username, PASSWORD).expect(200)).body.access_token as string;
    const guesses: number[] = [];
    let secret: Uint8Array | undefined;
    for (let cycle = 0; cycle < 3; cycle++) {
      for (let i = 0; i < 4; i++) {
        const res = await request(gw.app)
          .post('/me/password')
          .set(bearer(token))
          .send({ current_password: `guess ${cycle}-${i}`, new_password: 'the attacker chose this' });
        guesses.push(res.status);
      }
      // Successes the token holder can make at will: enroll an authenticator and confirm it, then
      // regenerate recovery codes with its codes. (Disabling it would now end the stolen session.)
      if (cycle === 0) {
        const enroll = await request(gw.app).post('/mfa/totp/enroll').set(bearer(token)).expect(200);
        secret = base32.decode(enroll.body.secret as string);
        await request(gw.app).post('/mfa/totp/confirm').set(bearer(token)).send({ otp: totpCode(secret, now() - 30) }).expect(200);
      }
      await request(gw.app).post('/mfa/recovery-codes').set(bearer(token)).send({ otp: totpCode(secret!, now() + 30 * cycle) });
    }
    assert.deepEqual(guesses, [401, 401, 401, 401, 401, 429, 429, 429, 429, 429, 429, 429]);
    const right = await request(gw.app).post('/me/password').set(bearer(token)).send({ current_password: PASSWORD, new_password: 'the attacker chose this' });
    assert.equal(right.status, 429);
    assert.equal(right.body.code, 'account_locked');
    await login(gw, username, 'the attacker chose this').expect(429);

    const records = await auditRows(gw.t, { username });
    assert.equal(records.filter((r) => r.event_type === 'lockout.started').length, 1);
    const refusals = records.filter((r) => r.event_type === 'user.password_change_failed' && r.reason === 'account_locked');
    assert.equal(refusals.length, 8, 'every 429 of /me/password is one record');
    assert.equal(records.filter((r) => r.event_type === 'user.password_changed').length, 0);
  });

  it('when wrong current passwords come from one address, then /me/password answers the per-address limit too', async () => {
    const limited = await createTestGateway({ env: { IP_MAX_FAILURES: '3' } });
    try {
      const username = uniqueName('ip-me');
      await limited.addUser(username, PASSWORD);
      const token = (await login(limited, username, PASSWORD).expect(200)).body.access_token as string;
      const statuses: number[] = [];
      const codes: string[] = [];
      for (let i = 0; i < 4; i++) {
        const res = await request(limited.app).post('/me/password').set(bearer(token)).send({ current_password: `guess ${i}`, new_password: 'the attacker chose this' });
        statuses.push(res.status);
        codes.push(res.body.code as string);
      }
      assert.deepEqual(statuses, [401, 401, 401, 429]);
      assert.equal(codes[3], 'too_many_attempts');
      const refusal = (await auditRows(limited.t, { username })).filter((r) => r.reason === 'too_many_attempts');
      assert.equal(refusal.length, 1);
    } finally {
      await limited.close();
    }
  });
});

describe('attack: refusals that outlast the attempts that caused them', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(async () => {
    await gw.close();
  });

  it('when twenty right passwords arrive in parallel, then the refused ones take no slot and the account is not locked afterwards', async () => {
    const username = uniqueName('parallel-right');
    await gw.addUser(username, PASSWORD);
    const results = await Promise.all(Array.from({ length: 20 }, () => login(gw, username, PASSWORD)));
    assert.ok(results.filter((r) => r.status === 200).length >= 5);
    await login(gw, username, PASSWORD).expect(200);
    assert.equal(await gw.services.lockout.get(username), undefined);
  });

  it('when right current passwords arrive in parallel after four wrong ones, then the right password still logs in', async () => {
    const username = uniqueName('parallel-reauth');
    await gw.addUser(username, PASSWORD);
    const token = (await login(gw, username, PASSWORD).expect(200)).body.access_token as string;
    for (let i = 0; i < 4; i++) await login(gw, username, 'wrong').expect(401);
    await Promise.all(Array.from({ length: 10 }, () => request(gw.app).post('/me/password').set(bearer(token)).send({ current_password: PASSWORD, new_password: 'short' })));
    await login(gw, username, PASSWORD).expect(200);
  });
});

describe('attack: parallel requests pass the per-address limiter', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway({ env: { IP_MAX_FAILURES: '20', IP_BLOCK_SECONDS: '1' } });
  });
  after(async () => {
    await gw.close();
  });

  it('when 60 wrong logins from one address arrive in parallel against different accounts, then exactly IP_MAX_FAILURES passwords are checked', async () => {
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => login(gw, uniqueName(`spray-${i}`), 'Winter2026!')));
    assert.deepEqual(statusCounts(results.map((r) => r.status)), { 401: 20, 429: 40 });
    assert.ok(results.filter((r) => r.status === 429).every((r) => r.body.code === 'too_many_attempts'));
    const { rows } = await gw.t.db.query<{ reason: string; n: number }>(
      `SELECT reason, count(*)::int AS n FROM audit_log WHERE event_type = 'login.failed' GROUP BY reason ORDER BY reason`,
    );
    assert.deepEqual(rows, [
      { reason: 'too_many_attempts', n: 40 },
      { reason: 'unknown_user', n: 20 },
    ]);
  });

  it('when the block ends, then the day\'s count is still there and the address is still refused', async () => {
    await sleep(1500);
    const res = await login(gw, uniqueName('after-block'), 'Winter2026!');
    assert.equal(res.status, 429);
    assert.equal(res.body.code, 'too_many_attempts');
  });
});

describe('attack: a failure counter below zero', () => {
  for (const store of ['redis', 'in-process'] as const) {
    it(`when slots are given back after the counter expired (${store}), then the count never goes below zero and five failures still lock`, async () => {
      const gw = await createTestGateway({ redis: store === 'redis' });
      try {
        const { lockout } = gw.services;
        const account = uniqueName('negative');
        for (let i = 0; i < 4; i++) await lockout.releaseSlot(account);
        for (let i = 1; i <= 5; i++) {
          const slot = await lockout.takeAttemptSlot(account);
          assert.ok(slot.allowed);
          assert.equal(slot.slot, i);
          await lockout.recordFailure(account, slot.slot, { ip: null, consumed: 0 });
        }
        const sixth = await lockout.takeAttemptSlot(account);
        assert.equal(sixth.allowed, false);
      } finally {
        await gw.close();
      }
    });
  }
});

describe('attack: a wrong Retry-After while a lock starts', () => {
  let gw: TestGateway;
  before(async () => {
    // Slow bcrypt, so the refused requests come back while the five checked ones are still running.
    gw = await createTestGateway({ env: { BCRYPT_COST: '10', LOCKOUT_WINDOW_SECONDS: '900', LOCKOUT_DURATION_SECONDS: '600' } });
  });
  after(async () => {
    await gw.close();
  });

  const burst = async (username: string) => {
    const results = await Promise.all(Array.from({ length: 20 }, () => login(gw, username, 'not the password')));
    assert.deepEqual(statusCounts(results.map((r) => r.status)), { 401: 5, 429: 15 });
    return results.filter((r) => r.status === 429).map((r) => Number(r.headers['retry-after']));
  };

  it('when 429s race the fifth failure, then every Retry-After is the lock\'s length, not the counting window', async () => {
    const username = uniqueName('retry-after');
    await gw.addUser(username, PASSWORD);
    for (const seconds of await burst(username)) assert.ok(seconds >= 598 && seconds <= 601, `Retry-After ${seconds}`);
  });

  it('when the lock escalates, then the racing 429s carry the doubled length', async () => {
    const username = uniqueName('retry-after-2');
    await gw.addUser(username, PASSWORD);
    await burst(username);
    await gw.services.lockout.clear(username);
    for (const seconds of await burst(username)) assert.ok(seconds >= 1198 && seconds <= 1201, `Retry-After ${seconds}`);
  });
});

describe('attack: a Redis restart forgets every lock', () => {
  it('when Redis loses its keys (FLUSHALL, or a restart without persistence), then the lock holds and escalation goes on', async () => {
    const gw = await createTestGateway();
    try {
      const username = uniqueName('flushed');
      await gw.addUser(username, PASSWORD);
      const adminName = uniqueName('unlocker');
      await gw.addUser(adminName, PASSWORD, ['admin', 'security']);
      const admin = (await login(gw, adminName, PASSWORD).expect(200)).body.access_token as string;
      const prefix = gw.setup.env.REDIS_KEY_PREFIX!;

      for (let i = 0; i < 5; i++) await login(gw, username, 'wrong').expect(401);
      await wipeRedisKeys(prefix);
      const locked = await login(gw, username, PASSWORD);
      assert.equal(locked.status, 429);
      assert.equal(locked.body.code, 'account_locked');
      assert.ok(Number(locked.headers['retry-after']) > 800, `Retry-After ${locked.headers['retry-after']}`);
      const list = await request(gw.app).get('/admin/lockouts').set(bearer(admin)).expect(200);
      assert.deepEqual((list.body as { items: Array<{ username: string }> }).items.map((i) => i.username), [username]);

      // Unlocked by the security team, then wiped again: the unlock holds, and the next lock is the second.
      await request(gw.app).delete(`/admin/lockouts/${encodeURIComponent(username)}`).set(bearer(admin)).expect(204);
      await wipeRedisKeys(prefix);
      await login(gw, username, PASSWORD).expect(200);
      for (let i = 0; i < 5; i++) await login(gw, username, 'wrong').expect(401);
      await wipeRedisKeys(prefix);
      const second = await login(gw, username, PASSWORD).expect(429);
      const seconds = Number(second.headers['retry-after']);
      assert.ok(seconds > 1700 && seconds <= 1800, `the second lock lasts twice as long: Retry-After ${seconds}`);
    } finally {
      await gw.close();
    }
  });

  it('when the gateway\'s own Redis server restarts without persistence, then the lock holds', async () => {
    const port = await freePort();
    const start = (): ChildProcess => spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    let server = start();
    const url = `redis://127.0.0.1:${port}`;
    await waitForRedis(url);
    const gw = await createTestGateway({ env: { REDIS_URL: url } });
    try {
      const username = uniqueName('restarted');
      await gw.addUser(username, PASSWORD);
      for (let i = 0; i < 5; i++) await login(gw, username, 'wrong').expect(401);
      server.kill('SIGKILL');
      await new Promise((r) => server.once('exit', r));
      server = start();
      await waitForRedis(url);
      await new Promise<void>((resolve) => (gw.services.redis!.status === 'ready' ? resolve() : gw.services.redis!.once('ready', () => resolve())));
      const res = await login(gw, username, PASSWORD);
      assert.equal(res.status, 429);
      assert.equal(res.body.code, 'account_locked');
      const records = await auditRows(gw.t, { username, eventType: 'login.failed' });
      assert.equal(records.at(-1)?.reason, 'account_locked');
      assert.equal(records.at(-1)?.details?.lockout_store, undefined, 'answered from the restored Redis, not the fallback');
    } finally {
      await gw.close();
      server.kill('SIGKILL');
    }
  });

  it('when an embedded gateway restarts (in-process store), then the lock holds', async () => {
    const t: TestDatabase = await createTestDatabase();
    try {
      const first = await createTestGateway({ t, redis: false });
      const username = uniqueName('embedded-restart');
      await first.addUser(username, PASSWORD);
      for (let i = 0; i < 5; i++) await login(first, username, 'wrong').expect(401);
      await first.close();
      const second = await createTestGateway({ t, redis: false });
      try {
        const res = await login(second, username, PASSWORD);
        assert.equal(res.status, 429);
        assert.equal(res.body.code, 'account_locked');
      } finally {
        await second.close();
      }
    } finally {
      await t.drop();
    }
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

async function waitForRedis(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    redis.on('error', () => {});
    try {
      await redis.connect();
      await redis.ping();
      return;
    } catch {
      await sleep(50);
    } finally {
      redis.disconnect();
    }
  }
  throw new Error(`redis at ${url} did not start`);
}
