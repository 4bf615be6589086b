import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as jose from 'jose';
import { ScureBase32Plugin } from 'otplib';
import request from 'supertest';
import { totpCode } from '../../src/mfa/totp.js';
import { auditRows, createTestGateway, uniqueName, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';
const base32 = new ScureBase32Plugin();
const now = () => Math.floor(Date.now() / 1000);

interface Enrolled {
  username: string;
  userId: string;
  secret: Uint8Array;
  base32Secret: string;
  recoveryCodes: string[];
  accessToken: string;
}

/** A user with TOTP enrolled and confirmed through the HTTP API; the confirmation used the previous step's code. */
async function enrolledUser(gw: TestGateway, roles: Array<'user' | 'security' | 'admin'> = ['user']): Promise<Enrolled> {
  const username = uniqueName('mfa');
  const userId = await gw.addUser(username, PASSWORD, roles);
  const login = await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200);
  const auth = { Authorization: `Bearer ${login.body.access_token}` };
  const started = await request(gw.app).post('/mfa/totp/enroll').set(auth).expect(200);
  const secret = base32.decode(started.body.secret as string);
  const confirmed = await request(gw.app).post('/mfa/totp/confirm').set(auth).send({ otp: totpCode(secret, now() - 30) }).expect(200);
  return { username, userId, secret, base32Secret: started.body.secret, recoveryCodes: confirmed.body.recovery_codes, accessToken: login.body.access_token };
}

const passwordStep = async (gw: TestGateway, username: string): Promise<string> => {
  const res = await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(401);
  assert.equal(res.body.code, 'mfa_required');
  return res.body.mfa_token as string;
};

describe('MFA with TOTP and recovery codes', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(async () => {
    await gw.close();
  });

  it('when enrollment starts, then the secret and otpauth URI are shown once, and MFA is active only after a valid code', async () => {
    const username = uniqueName('enroll');
    const userId = await gw.addUser(username, PASSWORD);
    const login = await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200);
    const auth = { Authorization: `Bearer ${login.body.access_token}` };
    const started = await request(gw.app).post('/mfa/totp/enroll').set(auth).expect(200);
    assert.match(started.body.otpauth_uri, /^otpauth:\/\/totp\/authtrail:/);
    assert.equal(new URL(started.body.otpauth_uri).searchParams.get('secret'), started.body.secret);
    assert.equal(base32.decode(started.body.secret).length, 20);
    assert.equal(started.headers['cache-control'], 'no-store');
    // Not active yet: the password alone still logs in.
    await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200);
    await request(gw.app).post('/mfa/totp/confirm').set(auth).send({ otp: '000000' === totpCode(base32.decode(started.body.secret), now()) ? '111111' : '000000' }).expect(401);
    const confirmed = await request(gw.app).post('/mfa/totp/confirm').set(auth).send({ otp: totpCode(base32.decode(started.body.secret), now()) }).expect(200);
    assert.equal(confirmed.body.recovery_codes.length, 10);
    await passwordStep(gw, username);
    await request(gw.app).post('/mfa/totp/enroll').set(auth).expect(409);
    const events = (await auditRows(gw.t, { username })).map((r) => `${r.event_type}:${r.outcome}`);
    for (const e of ['mfa.enrollment_started:success', 'mfa.enrollment_failed:failure', 'mfa.enabled:success', 'login.mfa_required:failure']) assert.ok(events.includes(e), e);
    assert.equal((await auditRows(gw.t, { username, eventType: 'mfa.enabled' }))[0]?.user_id, userId);
  });

  it('when MFA is on, then the secret is not readable in the database and recovery codes are stored only as hashes', async () => {
    const user = await enrolledUser(gw);
    const { rows } = await gw.t.db.query<{ row: string }>(`SELECT u::text AS row FROM users u WHERE id = $1`, [user.userId]);
    const row = rows[0]!.row;
    assert.ok(!row.includes(Buffer.from(user.secret).toString('hex')), 'no hex secret');
    assert.ok(!row.toUpperCase().includes(user.base32Secret), 'no base32 secret');
    const codes = await gw.t.db.query<{ row: string }>(`SELECT string_agg(r::text, ',') AS row FROM recovery_codes r WHERE user_id = $1`, [user.userId]);
    for (const code of user.recoveryCodes) assert.ok(!codes.rows[0]!.row.includes(code.replaceAll('-', '')) && !codes.rows[0]!.row.includes(code));
    const audit = (await gw.t.db.query<{ row: string }>(`SELECT string_agg(a::text, ',') AS row FROM audit_log a`)).rows[0]!.row;
    assert.ok(!audit.includes(user.base32Secret) && !audit.includes(user.recoveryCodes[0]!));
  });

  it('when the password is right and no code was sent, then 401 mfa_required with an mfa_token, and the code completes the login with amr pwd+otp', async () => {
    const user = await enrolledUser(gw);
    const mfaToken = await passwordStep(gw, user.username);
    const res = await request(gw.app).post('/login/mfa').send({ mfa_token: mfaToken, otp: totpCode(user.secret, now()) }).expect(200);
    assert.deepEqual(jose.decodeJwt(res.body.access_token).amr, ['pwd', 'otp']);
    const success = (await auditRows(gw.t, { username: user.username, eventType: 'login.succeeded' })).at(-1);
    const { rows } = await gw.t.db.query<{ mfa_method: string }>('SELECT mfa_method FROM audit_log WHERE seq = $1', [success!.seq]);
    assert.equal(rows[0]!.mfa_method, 'totp');
  });

  it('when the code is sent with the password, then one request logs in', async () => {
    const user = await enrolledUser(gw);
    const res = await request(gw.app).post('/login').send({ username: user.username, password: PASSWORD, otp: totpCode(user.secret, now()) }).expect(200);
    assert.deepEqual(jose.decodeJwt(res.body.access_token).amr, ['pwd', 'otp']);
  });

  it('when a code is used again, then it is refused and recorded as mfa.replayed; two parallel submissions of one code give one success', async () => {
    const user = await enrolledUser(gw);
    const code = totpCode(user.secret, now());
    await request(gw.app).post('/login').send({ username: user.username, password: PASSWORD, otp: code }).expect(200);
    const replay = await request(gw.app).post('/login').send({ username: user.username, password: PASSWORD, otp: code }).expect(401);
    assert.equal(replay.body.code, 'invalid_mfa');
    assert.equal((await auditRows(gw.t, { username: user.username, eventType: 'mfa.replayed' })).length, 1);

    const other = await enrolledUser(gw);
    const fresh = totpCode(other.secret, now());
    const tokens = await Promise.all([passwordStep(gw, other.username), passwordStep(gw, other.username)]);
    const statuses = (await Promise.all(tokens.map((t) => request(gw.app).post('/login/mfa').send({ mfa_token: t, otp: fresh })))).map((r) => r.status);
    assert.deepEqual(statuses.sort(), [200, 401]);
  });

  it('when codes are one step old or early they are accepted; two steps away they are refused', async () => {
    const user = await enrolledUser(gw); // confirmation used step -1
    const tryCode = async (offset: number) =>
      (await request(gw.app).post('/login').send({ username: user.username, password: PASSWORD, otp: totpCode(user.secret, now() + offset) })).status;
    assert.equal(await tryCode(-60), 401);
    assert.equal(await tryCode(60), 401);
    assert.equal(await tryCode(0), 200);
    assert.equal(await tryCode(30), 200);
  });

  it('when five wrong codes arrive over five separate mfa_tokens, then the account locks', async () => {
    const user = await enrolledUser(gw);
    const right = totpCode(user.secret, now());
    const wrong = right === '123456' ? '654321' : '123456';
    for (let i = 0; i < 5; i++) {
      const token = await passwordStep(gw, user.username);
      const res = await request(gw.app).post('/login/mfa').send({ mfa_token: token, otp: wrong }).expect(401);
      assert.equal(res.body.code, 'invalid_mfa');
    }
    const locked = await request(gw.app).post('/login').send({ username: user.username, password: PASSWORD, otp: right }).expect(429);
    assert.equal(locked.body.code, 'account_locked');
    assert.equal((await auditRows(gw.t, { username: user.username, eventType: 'lockout.started' })).length, 1);
    const failures = await auditRows(gw.t, { username: user.username, eventType: 'login.failed' });
    assert.equal(failures.filter((r) => r.reason === 'invalid_otp').length, 5);
  });

  it('when an mfa_token is reused or forged, then 401 invalid_mfa', async () => {
    const user = await enrolledUser(gw);
    const token = await passwordStep(gw, user.username);
    await request(gw.app).post('/login/mfa').send({ mfa_token: token, otp: '000000' }).expect(401);
    await request(gw.app).post('/login/mfa').send({ mfa_token: token, otp: totpCode(user.secret, now()) }).expect(401);
    await request(gw.app).post('/login/mfa').send({ mfa_token: 'A'.repeat(43), otp: totpCode(user.secret, now()) }).expect(401);
    await request(gw.app).post('/login/mfa').send({ mfa_token: token }).expect(400);
    await request(gw.app).post('/login/mfa').send({ mfa_token: token, otp: '1', recovery_code: 'x' }).expect(400);
  });

  it('when a recovery code is used, then it works once and the record says recovery_code', async () => {
    const user = await enrolledUser(gw);
    const code = user.recoveryCodes[3]!;
    const ok = await request(gw.app).post('/login/mfa').send({ mfa_token: await passwordStep(gw, user.username), recovery_code: code.toUpperCase() }).expect(200);
    assert.deepEqual(jose.decodeJwt(ok.body.access_token).amr, ['pwd', 'otp']);
    await request(gw.app).post('/login/mfa').send({ mfa_token: await passwordStep(gw, user.username), recovery_code: code }).expect(401);
    const success = (await auditRows(gw.t, { username: user.username, eventType: 'login.succeeded' })).at(-1);
    const { rows } = await gw.t.db.query<{ mfa_method: string }>('SELECT mfa_method FROM audit_log WHERE seq = $1', [success!.seq]);
    assert.equal(rows[0]!.mfa_method, 'recovery_code');
  });

  it('when recovery codes are regenerated, then the old ones stop working', async () => {
    const user = await enrolledUser(gw);
    const auth = { Authorization: `Bearer ${user.accessToken}` };
    const fresh = await request(gw.app).post('/mfa/recovery-codes').set(auth).send({ otp: totpCode(user.secret, now()) }).expect(200);
    assert.equal(fresh.body.recovery_codes.length, 10);
    await request(gw.app).post('/login/mfa').send({ mfa_token: await passwordStep(gw, user.username), recovery_code: user.recoveryCodes[0] }).expect(401);
    await request(gw.app).post('/login/mfa').send({ mfa_token: await passwordStep(gw, user.username), recovery_code: fresh.body.recovery_codes[0] }).expect(200);
  });

  it('when MFA is disabled, then a current code is required, and afterwards the password alone logs in', async () => {
    const user = await enrolledUser(gw);
    const auth = { Authorization: `Bearer ${user.accessToken}` };
    await request(gw.app).post('/mfa/totp/disable').set(auth).send({ otp: '000000' === totpCode(user.secret, now()) ? '111111' : '000000' }).expect(401);
    await request(gw.app).post('/mfa/totp/disable').set(auth).send({}).expect(400);
    await request(gw.app).post('/mfa/totp/disable').set(auth).send({ otp: totpCode(user.secret, now()) }).expect(204);
    await request(gw.app).post('/login').send({ username: user.username, password: PASSWORD }).expect(200);
    assert.equal((await auditRows(gw.t, { username: user.username, eventType: 'mfa.disabled' })).length, 1);
  });
});

describe('passwords, sessions and user management', () => {
  let gw: TestGateway;
  let admin: { accessToken: string; userId: string };
  before(async () => {
    gw = await createTestGateway({ env: { ADMIN_REQUIRE_MFA: 'true' } });
    // The admin logs in with MFA, so its token satisfies ADMIN_REQUIRE_MFA.
    const enrolled = await enrolledUser(gw, ['admin']);
    const res = await request(gw.app).post('/login').send({ username: enrolled.username, password: PASSWORD, otp: totpCode(enrolled.secret, now()) }).expect(200);
    admin = { accessToken: res.body.access_token, userId: enrolled.userId };
  });
  after(async () => {
    await gw.close();
  });

  const asAdmin = (r: request.Test) => r.set('Authorization', `Bearer ${admin.accessToken}`);

  async function sessionsOf(username: string, count: number) {
    const sessions = [];
    for (let i = 0; i < count; i++) sessions.push((await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200)).body as { access_token: string; refresh_token: string });
    return sessions;
  }

  it('when a user changes their own password, then the current one is required and every session is revoked', async () => {
    const username = uniqueName('changer');
    await gw.addUser(username, PASSWORD);
    const [a, b] = await sessionsOf(username, 2);
    const auth = { Authorization: `Bearer ${a!.access_token}` };
    await request(gw.app).post('/me/password').set(auth).send({ current_password: 'not it at all', new_password: 'a brand new password' }).expect(401);
    await request(gw.app).post('/me/password').set(auth).send({ current_password: PASSWORD, new_password: 'short' }).expect(400);
    await request(gw.app).post('/me/password').set(auth).send({ current_password: PASSWORD, new_password: 'a brand new password' }).expect(204);
    for (const s of [a!, b!]) await request(gw.app).post('/refresh').send({ refresh_token: s.refresh_token }).expect(401);
    await request(gw.app).post('/login').send({ username, password: 'a brand new password' }).expect(200);
    assert.equal((await auditRows(gw.t, { username, eventType: 'user.password_changed' }))[0]?.details?.revoked_sessions, 2);
  });

  it('when an admin disables a user, then their sessions die, login fails, and enabling restores login; each action names the actor', async () => {
    const username = uniqueName('disable-me');
    const id = await gw.addUser(username, PASSWORD);
    const [s] = await sessionsOf(username, 1);
    const disabled = await asAdmin(request(gw.app).post(`/admin/users/${id}/disable`)).expect(200);
    assert.equal(disabled.body.status, 'disabled');
    await request(gw.app).post('/refresh').send({ refresh_token: s!.refresh_token }).expect(401);
    await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(401);
    await asAdmin(request(gw.app).post(`/admin/users/${id}/enable`)).expect(200);
    await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200);
    const actions = (await auditRows(gw.t, { username })).filter((r) => r.event_type.startsWith('user.') && r.event_type !== 'user.created');
    assert.deepEqual(actions.map((r) => r.event_type), ['user.disabled', 'user.enabled']);
    assert.ok(actions.every((r) => r.actor_id === admin.userId));
  });

  it('when an admin changes roles, resets the password or MFA, or revokes sessions, then each takes effect and is recorded', async () => {
    const target = await enrolledUser(gw);
    const [s] = [(await request(gw.app).post('/login').send({ username: target.username, password: PASSWORD, otp: totpCode(target.secret, now()) }).expect(200)).body];
    const roles = await asAdmin(request(gw.app).put(`/admin/users/${target.userId}/roles`)).send({ roles: ['security', 'user'] }).expect(200);
    assert.deepEqual(roles.body.roles, ['security', 'user']);
    // A role change ends both sessions (enrollment's and this one): tokens must not carry old roles.
    await request(gw.app).post('/refresh').send({ refresh_token: s.refresh_token }).expect(401);
    const again = (await request(gw.app).post('/login').send({ username: target.username, password: PASSWORD, otp: totpCode(target.secret, now() + 30) }).expect(200)).body;
    await asAdmin(request(gw.app).post(`/admin/users/${target.userId}/sessions/revoke`)).expect(200, { revoked_sessions: 1 });
    await request(gw.app).post('/refresh').send({ refresh_token: again.refresh_token }).expect(401);
    await asAdmin(request(gw.app).post(`/admin/users/${target.userId}/mfa/reset`)).expect(200);
    await request(gw.app).post('/login').send({ username: target.username, password: PASSWORD }).expect(200);
    await asAdmin(request(gw.app).post(`/admin/users/${target.userId}/password`)).send({ password: 'short' }).expect(400);
    await asAdmin(request(gw.app).post(`/admin/users/${target.userId}/password`)).send({ password: 'reset by the admin team' }).expect(204);
    await request(gw.app).post('/login').send({ username: target.username, password: 'reset by the admin team' }).expect(200);
    const events = (await auditRows(gw.t, { username: target.username })).filter((r) => r.actor_id === admin.userId).map((r) => r.event_type);
    assert.deepEqual(events, ['user.roles_changed', 'user.sessions_revoked', 'user.mfa_reset', 'user.password_reset']);
    await asAdmin(request(gw.app).post(`/admin/users/00000000-0000-4000-8000-000000000000/disable`)).expect(404);
  });

  it('when an admin lists users, then filters and pagination return each matching user once, and the read is recorded', async () => {
    const tag = uniqueName('listed').split('@')[0]!;
    for (let i = 0; i < 5; i++) await gw.addUser(`${tag}-${i}@example.com`, PASSWORD, i % 2 ? ['security'] : ['user']);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res: request.Response = await asAdmin(request(gw.app).get('/admin/users')).query({ q: tag, limit: 2, ...(cursor ? { cursor } : {}) }).expect(200);
      seen.push(...(res.body.items as Array<{ username: string }>).map((u) => u.username));
      cursor = res.body.next_cursor;
    } while (cursor);
    assert.deepEqual(seen, [0, 1, 2, 3, 4].map((i) => `${tag}-${i}@example.com`));
    const security = await asAdmin(request(gw.app).get('/admin/users')).query({ q: tag, role: 'security' }).expect(200);
    assert.deepEqual((security.body.items as Array<{ username: string }>).map((u) => u.username), [`${tag}-1@example.com`, `${tag}-3@example.com`]);
    await asAdmin(request(gw.app).get('/admin/users')).query({ limit: 5000 }).expect(400);
    const searches = await auditRows(gw.t, { eventType: 'user.searched' });
    assert.ok(searches.length >= 4 && searches.every((r) => r.actor_id === admin.userId));
  });

  it('when a non-admin token calls any user-management route, then 403; an admin token without otp also gets 403 while ADMIN_REQUIRE_MFA is on', async () => {
    const plainAdminName = uniqueName('admin-no-mfa');
    await gw.addUser(plainAdminName, PASSWORD, ['admin']);
    const noMfa = (await request(gw.app).post('/login').send({ username: plainAdminName, password: PASSWORD }).expect(200)).body.access_token as string;
    const userName = uniqueName('plain');
    await gw.addUser(userName, PASSWORD, ['user', 'security']);
    const plain = (await request(gw.app).post('/login').send({ username: userName, password: PASSWORD }).expect(200)).body.access_token as string;
    const id = admin.userId;
    const routes: Array<[string, string]> = [
      ['post', '/admin/users'], ['get', '/admin/users'], ['get', `/admin/users/${id}`], ['post', `/admin/users/${id}/disable`],
      ['post', `/admin/users/${id}/enable`], ['put', `/admin/users/${id}/roles`], ['post', `/admin/users/${id}/password`],
      ['post', `/admin/users/${id}/mfa/reset`], ['post', `/admin/users/${id}/sessions/revoke`],
    ];
    for (const [method, path] of routes) {
      for (const token of [plain, noMfa]) {
        const res = await (request(gw.app) as unknown as Record<string, (p: string) => request.Test>)[method]!(path).set('Authorization', `Bearer ${token}`).send({});
        assert.equal(res.status, 403, `${method} ${path}`);
      }
    }
  });
});
