import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as jose from 'jose';
import request from 'supertest';
import { refreshTokenHash } from '../../src/tokens/refresh-tokens.js';
import { auditRows, createTestGateway, uniqueName, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';
const ORIGIN = 'https://app.example.com';

interface Tokens {
  access_token: string;
  refresh_token: string;
  refresh_expires_in: number;
}

async function loginNew(gw: TestGateway): Promise<Tokens & { userId: string }> {
  const username = uniqueName('refresh');
  const userId = await gw.addUser(username, PASSWORD);
  const res = await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200);
  return { ...(res.body as Tokens), userId };
}

const refresh = (gw: TestGateway, token: string) => request(gw.app).post('/refresh').send({ refresh_token: token });

describe('refresh tokens', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway({ env: { REFRESH_COOKIE_ORIGINS: ORIGIN } });
  });
  after(async () => {
    await gw.close();
  });

  it('when a refresh token is used, then a new pair is issued in the same session and only the hash is stored', async () => {
    const first = await loginNew(gw);
    assert.match(first.refresh_token, /^[A-Za-z0-9_-]{43}$/);
    const res = await refresh(gw, first.refresh_token).expect(200);
    assert.notEqual(res.body.refresh_token, first.refresh_token);
    assert.equal(jose.decodeJwt(res.body.access_token).sid, jose.decodeJwt(first.access_token).sid);
    const { rows } = await gw.t.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM refresh_tokens WHERE token_hash = $1`, [
      refreshTokenHash(first.refresh_token),
    ]);
    assert.equal(rows[0]!.n, 1);
    const { rows: plain } = await gw.t.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM refresh_tokens WHERE encode(token_hash, 'escape') LIKE '%' || $1 || '%'`,
      [first.refresh_token.slice(0, 20)],
    );
    assert.equal(plain[0]!.n, 0);
    const [record] = await auditRows(gw.t, { eventType: 'token.refreshed' });
    assert.equal(record?.user_id, first.userId);
  });

  it('when a rotated token is replayed, then the whole family is revoked and token.reuse_detected is recorded', async () => {
    const first = await loginNew(gw);
    const second = (await refresh(gw, first.refresh_token).expect(200)).body as Tokens;
    const replay = await refresh(gw, first.refresh_token).expect(401);
    assert.equal(replay.body.code, 'invalid_refresh_token');
    await refresh(gw, second.refresh_token).expect(401); // the legitimate successor died with the family
    const reuse = (await auditRows(gw.t, { eventType: 'token.reuse_detected' })).filter((r) => r.user_id === first.userId);
    assert.equal(reuse.length, 1);
    assert.equal(reuse[0]!.session_id, jose.decodeJwt(first.access_token).sid);
  });

  it('when ten refreshes of one token run in parallel, then exactly one wins', async () => {
    const first = await loginNew(gw);
    const statuses = (await Promise.all(Array.from({ length: 10 }, () => refresh(gw, first.refresh_token)))).map((r) => r.status);
    assert.deepEqual(statuses.sort(), [200, ...Array(9).fill(401)]);
  });

  it('when the idle or the absolute lifetime has passed, then the token is refused as expired', async () => {
    const idle = await loginNew(gw);
    await gw.t.db.query(`UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1`, [refreshTokenHash(idle.refresh_token)]);
    await refresh(gw, idle.refresh_token).expect(401);

    const absolute = await loginNew(gw);
    await gw.t.db.query(`UPDATE refresh_families SET absolute_expires_at = now() - interval '1 second' WHERE user_id = $1`, [absolute.userId]);
    await refresh(gw, absolute.refresh_token).expect(401);
    const reasons = (await auditRows(gw.t, { eventType: 'token.refresh_failed' })).filter((r) => [idle.userId, absolute.userId].includes(r.user_id!));
    assert.deepEqual(reasons.map((r) => r.reason), ['expired', 'expired']);
  });

  it('when the absolute lifetime is near, then the new token does not outlive it', async () => {
    const first = await loginNew(gw);
    await gw.t.db.query(`UPDATE refresh_families SET absolute_expires_at = now() + interval '120 seconds' WHERE user_id = $1`, [first.userId]);
    const res = await refresh(gw, first.refresh_token).expect(200);
    assert.ok(res.body.refresh_expires_in <= 120 && res.body.refresh_expires_in >= 118, String(res.body.refresh_expires_in));
  });

  it('when the user is disabled, then refresh fails and the family is revoked', async () => {
    const first = await loginNew(gw);
    await gw.t.db.query(`UPDATE users SET status = 'disabled' WHERE id = $1`, [first.userId]);
    await refresh(gw, first.refresh_token).expect(401);
    const { rows } = await gw.t.db.query<{ revoked_reason: string }>('SELECT revoked_reason FROM refresh_families WHERE user_id = $1', [first.userId]);
    assert.equal(rows[0]!.revoked_reason, 'user_disabled');
  });

  it('when a user logs out, then 204, the family is revoked, and unknown or garbage tokens also get 204', async () => {
    const first = await loginNew(gw);
    await request(gw.app).post('/logout').send({ refresh_token: first.refresh_token }).expect(204);
    await refresh(gw, first.refresh_token).expect(401);
    await request(gw.app).post('/logout').send({ refresh_token: 'A'.repeat(43) }).expect(204);
    await request(gw.app).post('/logout').send({ refresh_token: 'garbage' }).expect(204);
    await request(gw.app).post('/logout').expect(204);
    const logouts = await auditRows(gw.t, { eventType: 'logout' });
    assert.deepEqual(logouts.map((r) => r.outcome), ['success', 'failure', 'failure', 'failure']);
    assert.equal(logouts[0]!.user_id, first.userId);
  });

  it('when a browser from an allowed Origin logs in, then the refresh token travels only in a __Host- cookie', async () => {
    const username = uniqueName('browser');
    await gw.addUser(username, PASSWORD);
    const res = await request(gw.app).post('/login').set('Origin', ORIGIN).send({ username, password: PASSWORD }).expect(200);
    assert.equal(res.body.refresh_token, undefined);
    const setCookie = res.headers['set-cookie'] as unknown as string[];
    assert.match(setCookie[0]!, /^__Host-authtrail_refresh=[A-Za-z0-9_-]{43}; Max-Age=\d+; Path=\/; Expires=.*; HttpOnly; Secure; SameSite=Strict$/);
    const cookie = setCookie[0]!.split(';')[0]!;

    // The cookie alone, without an allowed Origin, is not enough.
    await request(gw.app).post('/refresh').set('Cookie', cookie).expect(401);
    await request(gw.app).post('/refresh').set('Cookie', cookie).set('Origin', 'https://evil.example').expect(401);
    const refreshed = await request(gw.app).post('/refresh').set('Cookie', cookie).set('Origin', ORIGIN).expect(200);
    assert.equal(refreshed.body.refresh_token, undefined);
    const next = (refreshed.headers['set-cookie'] as unknown as string[])[0]!.split(';')[0]!;
    assert.notEqual(next, cookie);
    const out = await request(gw.app).post('/logout').set('Cookie', next).set('Origin', ORIGIN).expect(204);
    assert.match((out.headers['set-cookie'] as unknown as string[])[0]!, /^__Host-authtrail_refresh=;/);
  });

  it('when the Origin is the gateway\'s own, then the cookie works only for the exact origin — scheme, host and port — from a same-site page', async () => {
    const username = uniqueName('own-origin');
    await gw.addUser(username, PASSWORD);
    const host = 'gateway.example:8443';
    const own = `http://${host}`; // supertest speaks plain HTTP: this request's own scheme
    const res = await request(gw.app).post('/login').set('Host', host).set('Origin', own).send({ username, password: PASSWORD }).expect(200);
    let cookie = (res.headers['set-cookie'] as unknown as string[])[0]!.split(';')[0]!;
    // Another scheme, a user-info prefix no browser sends, a path, and a cross-site fetch: refused.
    for (const [origin, site] of [[`https://${host}`, undefined], [`http://evil.example@${host}`, undefined], [`${own}/`, undefined], [own, 'cross-site']] as const) {
      const refused = request(gw.app).post('/refresh').set('Host', host).set('Cookie', cookie).set('Origin', origin);
      if (site) refused.set('Sec-Fetch-Site', site);
      await refused.expect(401);
    }
    const refreshed = await request(gw.app).post('/refresh').set('Host', host).set('Cookie', cookie).set('Origin', own).set('Sec-Fetch-Site', 'same-origin').expect(200);
    cookie = (refreshed.headers['set-cookie'] as unknown as string[])[0]!.split(';')[0]!;
    assert.ok(cookie.length > 30);
  });
});

describe('refresh grace window', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway({ env: { REFRESH_REUSE_GRACE_SECONDS: '5' } });
  });
  after(async () => {
    await gw.close();
  });

  it('when the immediately previous token is presented within the grace window, then it is served, not treated as theft', async () => {
    const first = await loginNew(gw);
    const second = (await refresh(gw, first.refresh_token).expect(200)).body as Tokens;
    const retried = (await refresh(gw, first.refresh_token).expect(200)).body as Tokens;
    assert.notEqual(retried.refresh_token, second.refresh_token);
    await refresh(gw, retried.refresh_token).expect(200);
    // Two generations back is outside the grace: reuse, and the family dies.
    await refresh(gw, first.refresh_token).expect(401);
    assert.equal((await auditRows(gw.t, { eventType: 'token.reuse_detected' })).length, 1);
  });
});
