import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcrypt';
import request from 'supertest';
import { auditRows, createTestGateway, uniqueName, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';
const login = (gw: TestGateway, username: string, password: string, headers: Record<string, string> = {}) =>
  request(gw.app).post('/login').set(headers).send({ username, password });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * POSTs `body` to `path` of the gateway over a plain socket, with `headers` as raw bytes (a client
 * library would encode them itself); the answer's status.
 */
async function rawPost(gw: TestGateway, path: string, headers: Record<string, Buffer>, body: string): Promise<number> {
  const server = http.createServer(gw.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const head = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n`;
    const socket = net.connect(port, '127.0.0.1');
    // Written, not ended: the server closes the connection once it has answered.
    socket.write(Buffer.concat([Buffer.from(head), ...Object.entries(headers).flatMap(([name, value]) => [Buffer.from(`${name}: `), value, Buffer.from('\r\n')]), Buffer.from(`\r\n${body}`)]));
    const answer: Buffer[] = [];
    for await (const chunk of socket) answer.push(chunk as Buffer);
    const status = /^HTTP\/1\.1 (\d{3}) /.exec(Buffer.concat(answer).toString('latin1'));
    assert.ok(status, 'an HTTP answer');
    return Number(status[1]);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

describe('POST /login on PostgreSQL and Redis', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(async () => {
    await gw.close();
  });

  it('when the password is right, then 200 with tokens and a login.succeeded record with device, IP and session', async () => {
    const username = uniqueName('ok');
    const id = await gw.addUser(username, PASSWORD);
    const res = await login(gw, username.toUpperCase(), PASSWORD, { 'User-Agent': 'test-agent/1', 'X-Device-Id': 'device-42' }).expect(200);
    assert.deepEqual(Object.keys(res.body).sort(), ['access_token', 'expires_in', 'refresh_expires_in', 'refresh_token', 'token_type']);
    assert.equal(res.body.token_type, 'Bearer');
    assert.equal(res.body.expires_in, 600);
    assert.equal(res.headers['cache-control'], 'no-store');
    const [record] = await auditRows(gw.t, { username: username.toUpperCase(), eventType: 'login.succeeded' });
    assert.equal(record?.user_id, id);
    assert.equal(record?.ip, '127.0.0.1');
    assert.equal(record?.outcome, 'success');
    assert.match(record.session_id!, /^[0-9a-f-]{36}$/);
    assert.deepEqual(record?.details, { amr: ['pwd'] });
    const { rows } = await gw.t.db.query<{ device_id: string; user_agent: string; mfa_method: string }>(
      'SELECT device_id, user_agent, mfa_method FROM audit_log WHERE seq = $1',
      [record.seq],
    );
    assert.deepEqual(rows[0], { device_id: 'device-42', user_agent: 'test-agent/1', mfa_method: 'none' });
  });

  it('when the user is unknown, the password wrong or the user disabled, then the 401 bodies are identical and the records say which', async () => {
    const known = uniqueName('known');
    const disabled = uniqueName('disabled');
    await gw.addUser(known, PASSWORD);
    const disabledId = await gw.addUser(disabled, PASSWORD);
    await gw.t.db.query(`UPDATE users SET status = 'disabled' WHERE id = $1`, [disabledId]);

    const bodies = await Promise.all([
      login(gw, uniqueName('nobody'), PASSWORD).expect(401),
      login(gw, known, 'not the password at all').expect(401),
      login(gw, disabled, PASSWORD).expect(401),
    ]);
    const texts = bodies.map((b) => b.text);
    assert.equal(new Set(texts).size, 1, texts.join('\n'));
    assert.equal(bodies[0].body.code, 'invalid_credentials');
    assert.equal((await auditRows(gw.t, { username: known, eventType: 'login.failed' }))[0]?.reason, 'wrong_password');
    assert.equal((await auditRows(gw.t, { username: disabled, eventType: 'login.failed' }))[0]?.reason, 'user_disabled');
  });

  it('when five wrong passwords arrive, then the account locks, even the right password gets 429 with Retry-After, and lockout.started is recorded once', async () => {
    const username = uniqueName('lock');
    await gw.addUser(username, PASSWORD);
    for (let i = 0; i < 5; i++) await login(gw, username, `wrong password ${i}`).expect(401);
    const locked = await login(gw, username, PASSWORD).expect(429);
    assert.equal(locked.body.code, 'account_locked');
    assert.ok(Number(locked.headers['retry-after']) > 0 && Number(locked.headers['retry-after']) <= 900);
    const started = await auditRows(gw.t, { username, eventType: 'lockout.started' });
    assert.equal(started.length, 1);
    assert.equal(started[0]!.details!.failures, 5);
    assert.equal(started[0]!.details!.lock_count, 1);
    const failed = await auditRows(gw.t, { username, eventType: 'login.failed' });
    assert.deepEqual(failed.map((r) => r.reason), [...Array(5).fill('wrong_password'), 'account_locked']);
  });

  it('when counters, locks and the lockout index are written to Redis, then every key carries a TTL', async () => {
    const username = uniqueName('ttl');
    for (let i = 0; i < 5; i++) await login(gw, username, 'wrong password ttl').expect(401);
    const redis = gw.services.redis!;
    const prefix = gw.setup.env.REDIS_KEY_PREFIX!;
    const keys = await redis.keys(`${prefix}:*`);
    assert.ok(keys.length >= 4, keys.join(', ')); // attempts, locks, ip, lockout index and entry
    for (const key of keys) assert.ok((await redis.pttl(key)) > 0, `${key} has a TTL`);
  });

  it('when a success comes between failures, then the count starts again', async () => {
    const username = uniqueName('reset');
    await gw.addUser(username, PASSWORD);
    for (let i = 0; i < 4; i++) await login(gw, username, 'wrong password xx').expect(401);
    await login(gw, username, PASSWORD).expect(200);
    for (let i = 0; i < 4; i++) await login(gw, username, 'wrong password xx').expect(401);
    await login(gw, username, PASSWORD).expect(200);
  });

  it('when the username does not exist, then five failures lock it exactly the same way (no enumeration)', async () => {
    const ghost = uniqueName('ghost');
    const answers: number[] = [];
    for (let i = 0; i < 6; i++) answers.push((await login(gw, ghost, 'whatever password')).status);
    assert.deepEqual(answers, [401, 401, 401, 401, 401, 429]);
    assert.equal((await auditRows(gw.t, { username: ghost, eventType: 'lockout.started' })).length, 1);
    assert.deepEqual((await auditRows(gw.t, { username: ghost, eventType: 'login.failed' })).map((r) => r.reason).slice(0, 5), Array(5).fill('unknown_user'));
  });

  it('when the configured bcrypt cost rose, then a successful login stores a new hash at the new cost', async () => {
    const username = uniqueName('rehash');
    const id = await gw.addUser(username, PASSWORD); // cost 4
    const stronger = await createTestGateway({ t: gw.t, env: { BCRYPT_COST: '5' } });
    try {
      await login(stronger, username, PASSWORD).expect(200);
      const { rows } = await gw.t.db.query<{ password_hash: string }>('SELECT password_hash FROM users WHERE id = $1', [id]);
      assert.equal(bcrypt.getRounds(rows[0]!.password_hash.slice('hmac-sha256-bcrypt$'.length)), 5);
      await login(stronger, username, PASSWORD).expect(200);
    } finally {
      await stronger.close();
    }
  });

  it('when two passwords share their first 72 bytes, then only the right one logs in (no bcrypt truncation)', async () => {
    const username = uniqueName('long');
    const base = 'x'.repeat(72);
    await gw.addUser(username, `${base}-the-real-tail`);
    await login(gw, username, `${base}-another-tail`).expect(401);
    await login(gw, username, `${base}-the-real-tail`).expect(200);
  });

  it('when a password holds a NUL byte, then every byte after it still counts', async () => {
    const username = uniqueName('nul');
    await gw.addUser(username, 'before\u0000after-the-nul');
    await login(gw, username, 'before\u0000different-tail').expect(401);
    await login(gw, username, 'before\u0000after-the-nul').expect(200);
  });

  it('when User-Agent and X-Device-Id arrive as UTF-8 bytes, then the record holds the text they encode; bytes that are not UTF-8 are kept one character each, never a 500', async () => {
    const recorded = async (username: string) => {
      const { rows } = await gw.t.db.query<{ user_agent: string | null; device_id: string | null; details: string | null }>(
        'SELECT user_agent, device_id, details::text AS details FROM audit_log WHERE username = $1 ORDER BY seq',
        [username],
      );
      assert.equal(rows.length, 1, 'one record');
      return { userAgent: rows[0]!.user_agent, deviceId: rows[0]!.device_id, truncated: (JSON.parse(rows[0]!.details ?? '{}') as { truncated?: string[] }).truncated };
    };
    const attempt = async (headers: Record<string, Buffer>) => {
      const username = uniqueName('agent');
      assert.equal(await rawPost(gw, '/login', headers, JSON.stringify({ username, password: 'some password' })), 401);
      return recorded(username);
    };
    const utf8 = (text: string): Buffer => Buffer.from(text, 'utf8');

    // What `curl -A 'curl/é-test' -H 'X-Device-Id: 設備-7'` sends from a UTF-8 terminal.
    assert.deepEqual(await attempt({ 'User-Agent': utf8('curl/é-test'), 'X-Device-Id': utf8('設備-7') }), { userAgent: 'curl/é-test', deviceId: '設備-7', truncated: undefined });
    assert.deepEqual(await attempt({ 'User-Agent': utf8('Mozilla/5.0 😀') }), { userAgent: 'Mozilla/5.0 😀', deviceId: null, truncated: undefined });
    // Not UTF-8 (a Latin-1 é alone, 0xFF, a cut sequence): each byte is the character of that code, nothing lost.
    for (const bytes of [Buffer.from('curl/\xe9-test', 'latin1'), Buffer.from([0x61, 0xff, 0xfe]), Buffer.from([0x61, 0xe8, 0xa8])]) {
      assert.deepEqual(await attempt({ 'User-Agent': bytes, 'X-Device-Id': bytes }), { userAgent: bytes.toString('latin1'), deviceId: bytes.toString('latin1'), truncated: undefined });
    }
    // The limits count the characters of the recorded text: 300 é (600 bytes) fit in 512, 600 é are cut to 512.
    assert.deepEqual(await attempt({ 'User-Agent': utf8('é'.repeat(300)), 'X-Device-Id': utf8('é'.repeat(128)) }), { userAgent: 'é'.repeat(300), deviceId: 'é'.repeat(128), truncated: undefined });
    assert.deepEqual(await attempt({ 'User-Agent': utf8('é'.repeat(600)), 'X-Device-Id': utf8('é'.repeat(129)) }), { userAgent: 'é'.repeat(512), deviceId: 'é'.repeat(128), truncated: ['user_agent', 'device_id'] });
  });

  it('when a client sends X-Forwarded-For and no proxy is trusted, then the recorded IP is the socket address', async () => {
    const username = uniqueName('xff');
    await login(gw, username, 'some password', { 'X-Forwarded-For': '203.0.113.9' }).expect(401);
    assert.equal((await auditRows(gw.t, { username }))[0]?.ip, '127.0.0.1');

    const behindProxy = await createTestGateway({ t: gw.t, env: { TRUST_PROXY: 'loopback' } });
    try {
      const other = uniqueName('xff');
      await login(behindProxy, other, 'some password', { 'X-Forwarded-For': '203.0.113.9' }).expect(401);
      assert.equal((await auditRows(gw.t, { username: other }))[0]?.ip, '203.0.113.9');
    } finally {
      await behindProxy.close();
    }
  });
});

describe('lockout timing and the per-IP limiter', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway({ env: { LOCKOUT_DURATION_SECONDS: '1', LOCKOUT_MAX_DURATION_SECONDS: '3' } });
  });
  after(async () => {
    await gw.close();
  });

  it('when a lock expires and the account fails five times again, then the second lock lasts twice as long', async () => {
    const username = uniqueName('double');
    await gw.addUser(username, PASSWORD);
    for (let i = 0; i < 5; i++) await login(gw, username, 'wrong password a').expect(401);
    assert.equal((await login(gw, username, PASSWORD).expect(429)).headers['retry-after'], '1');
    await sleep(1200);
    for (let i = 0; i < 5; i++) await login(gw, username, 'wrong password b').expect(401);
    assert.equal((await login(gw, username, PASSWORD).expect(429)).headers['retry-after'], '2');
    await sleep(1200);
    await login(gw, username, PASSWORD).expect(429);
    await sleep(1000);
    await login(gw, username, PASSWORD).expect(200);
    const locks = await auditRows(gw.t, { username, eventType: 'lockout.started' });
    assert.deepEqual(locks.map((l) => l.details!.lock_count), [1, 2]);
  });

  it('when one IP sprays many usernames, then after IP_MAX_FAILURES failures it is throttled with too_many_attempts, costing no password check', async () => {
    const sprayGw = await createTestGateway({ t: gw.t, env: { IP_MAX_FAILURES: '3', IP_BLOCK_SECONDS: '60' } });
    try {
      const victims = [uniqueName('spray'), uniqueName('spray'), uniqueName('spray'), uniqueName('spray')];
      const statuses = [];
      for (const victim of victims) statuses.push((await login(sprayGw, victim, 'Winter2026!')).status);
      assert.deepEqual(statuses, [401, 401, 401, 429]);
      const throttled = await login(sprayGw, uniqueName('spray'), 'Winter2026!').expect(429);
      assert.equal(throttled.body.code, 'too_many_attempts');
      assert.ok(Number(throttled.headers['retry-after']) > 0);
      assert.equal((await auditRows(gw.t, { username: victims[3] }))[0]?.reason, 'too_many_attempts');
      // No account reached its own limit: the IP limiter stopped the spray.
      assert.deepEqual(await sprayGw.services.lockout.list(), []);
    } finally {
      await sprayGw.close();
    }
  });
});

describe('POST /login with the in-process lockout store (embedded path)', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway({ redis: false });
  });
  after(async () => {
    await gw.close();
  });

  it('when twenty wrong passwords arrive in parallel, then exactly five are checked and the rest are refused as locked', async () => {
    const username = uniqueName('memory');
    await gw.addUser(username, PASSWORD);
    const statuses = (await Promise.all(Array.from({ length: 20 }, () => login(gw, username, 'wrong password!')))).map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 401).length, 5);
    assert.equal(statuses.filter((s) => s === 429).length, 15);
    await login(gw, username, PASSWORD).expect(429);
    assert.equal((await gw.services.lockout.list()).filter((l) => l.username === username).length, 1);
  });
});
