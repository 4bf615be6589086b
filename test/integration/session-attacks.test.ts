import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import jwt from 'jsonwebtoken';
import { ScureBase32Plugin } from 'otplib';
import request from 'supertest';
import { totpCode } from '../../src/mfa/totp.js';
import { issueAccessToken } from '../../src/tokens/access-tokens.js';
import { auditRows, createTestGateway, uniqueName, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';
const base32 = new ScureBase32Plugin();
const now = (): number => Math.floor(Date.now() / 1000);
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

const login = async (gw: TestGateway, username: string, password = PASSWORD) =>
  (await request(gw.app).post('/login').send({ username, password }).expect(200)).body as { access_token: string; refresh_token: string };

describe('attack: a disabled or demoted admin keeps admin power for the token\'s lifetime', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(async () => {
    await gw.close();
  });

  it('when an admin is demoted, disabled and its sessions revoked, then its old token can neither create an admin, nor re-enable nor promote itself', async () => {
    const rogueName = uniqueName('rogue-admin');
    const rogueId = await gw.addUser(rogueName, PASSWORD, ['admin', 'security']);
    const otherName = uniqueName('other-admin');
    await gw.addUser(otherName, PASSWORD, ['admin', 'security']);
    const rogue = (await login(gw, rogueName)).access_token;
    const other = (await login(gw, otherName)).access_token;

    await request(gw.app).put(`/admin/users/${rogueId}/roles`).set(bearer(other)).send({ roles: ['user'] }).expect(200);
    await request(gw.app).post(`/admin/users/${rogueId}/disable`).set(bearer(other)).expect(200);
    await request(gw.app).post(`/admin/users/${rogueId}/sessions/revoke`).set(bearer(other)).expect(200);

    const created = await request(gw.app).post('/admin/users').set(bearer(rogue)).send({ username: uniqueName('backdoor'), password: PASSWORD, roles: ['admin'] });
    const enabled = await request(gw.app).post(`/admin/users/${rogueId}/enable`).set(bearer(rogue));
    const promoted = await request(gw.app).put(`/admin/users/${rogueId}/roles`).set(bearer(rogue)).send({ roles: ['admin'] });
    const history = await request(gw.app).get('/admin/login-events').set(bearer(rogue));
    assert.deepEqual([created.status, enabled.status, promoted.status, history.status], [401, 401, 401, 401]);

    const { rows } = await gw.t.db.query<{ status: string; roles: string[] }>('SELECT status, roles FROM users WHERE id = $1', [rogueId]);
    assert.deepEqual(rows[0], { status: 'disabled', roles: ['user'] });
    const byRogue = await gw.t.db.query('SELECT 1 FROM audit_log WHERE actor_id = $1 AND event_type LIKE $2', [rogueId, 'user.%']);
    assert.equal(byRogue.rows.length, 0, 'no user change was made with the old token');
  });

  it('when an admin is only demoted, then the old token is refused at once, because a role change revokes the sessions', async () => {
    const name = uniqueName('demoted');
    const id = await gw.addUser(name, PASSWORD, ['admin', 'security']);
    const otherName = uniqueName('demoter');
    await gw.addUser(otherName, PASSWORD, ['admin', 'security']);
    const token = (await login(gw, name)).access_token;
    const other = (await login(gw, otherName)).access_token;
    await request(gw.app).put(`/admin/users/${id}/roles`).set(bearer(other)).send({ roles: ['security'] }).expect(200);
    await request(gw.app).get('/admin/users').set(bearer(token)).expect(401);
    const [changed] = await auditRows(gw.t, { username: name, eventType: 'user.roles_changed' });
    assert.equal(changed?.details?.revoked_sessions, 1);
    // Logged in again with the roles it holds now: reads yes, admin changes no.
    const fresh = (await login(gw, name)).access_token;
    await request(gw.app).get('/admin/login-events').set(bearer(fresh)).expect(200);
    await request(gw.app).get('/admin/users').set(bearer(fresh)).expect(403);
  });

  it('when a token\'s session ends by logout, then the token no longer opens admin routes', async () => {
    const name = uniqueName('logged-out');
    await gw.addUser(name, PASSWORD, ['admin', 'security']);
    const session = await login(gw, name);
    await request(gw.app).get('/admin/users').set(bearer(session.access_token)).expect(200);
    await request(gw.app).post('/logout').send({ refresh_token: session.refresh_token }).expect(204);
    await request(gw.app).get('/admin/users').set(bearer(session.access_token)).expect(401);
  });

  it('when a token names a role its user never held, then the user\'s roles now decide', async () => {
    const name = uniqueName('forged-role');
    await gw.addUser(name, PASSWORD, ['user']);
    const { access_token: token } = await login(gw, name);
    const claims = jwt.decode(token) as { sub: string; sid: string };
    // Signed with the gateway's own key: as if the key were misused, the live state still decides.
    const forged = issueAccessToken(gw.services.keys, { ...gw.services.config.tokens, ttlSeconds: 60 }, {
      sub: claims.sub,
      sid: claims.sid,
      amr: ['pwd', 'otp'],
      roles: ['admin'],
      authTime: now(),
    }).token;
    await request(gw.app).get('/admin/users').set(bearer(forged)).expect(403);
  });
});

describe('attack: MFA attached or removed with nothing but an access token', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(async () => {
    await gw.close();
  });

  /** The same session's token, as if stolen ten minutes after its login. */
  const staleToken = (gwx: TestGateway, token: string): string => {
    const claims = jwt.decode(token) as { sub: string; sid: string; roles: Array<'user'> };
    return issueAccessToken(gwx.services.keys, { ...gwx.services.config.tokens, ttlSeconds: 600 }, {
      sub: claims.sub,
      sid: claims.sid,
      amr: ['pwd'],
      roles: claims.roles,
      authTime: now() - 600,
    }).token;
  };

  it('when a stolen token from a login over five minutes old enrolls an authenticator without the password, then 403 reauthentication_required, recorded, and nothing is enrolled', async () => {
    const username = uniqueName('stolen-enroll');
    const userId = await gw.addUser(username, PASSWORD);
    const stolen = staleToken(gw, (await login(gw, username)).access_token);
    const res = await request(gw.app).post('/mfa/totp/enroll').set(bearer(stolen));
    assert.equal(res.status, 403);
    assert.equal(res.body.code, 'reauthentication_required');
    assert.equal(res.body.secret, undefined);
    for (const path of ['/mfa/totp/confirm', '/mfa/totp/disable', '/mfa/recovery-codes']) {
      const refused = await request(gw.app).post(path).set(bearer(stolen)).send({ otp: '123456' });
      assert.equal(refused.status, 403, path);
    }
    const { rows } = await gw.t.db.query<{ pending: boolean }>('SELECT mfa_pending_secret_sealed IS NOT NULL AS pending FROM users WHERE id = $1', [userId]);
    assert.equal(rows[0]?.pending, false);
    const refusals = (await auditRows(gw.t, { username })).filter((r) => r.reason === 'reauthentication_required');
    assert.deepEqual(refusals.map((r) => r.event_type), ['mfa.enrollment_failed', 'mfa.enrollment_failed', 'mfa.disable_failed', 'mfa.recovery_codes_failed']);
  });

  it('when the stolen token guesses the password to enroll, then the guesses count toward the lockout and the right password is then refused', async () => {
    const username = uniqueName('guess-enroll');
    await gw.addUser(username, PASSWORD);
    const stolen = staleToken(gw, (await login(gw, username)).access_token);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await request(gw.app).post('/mfa/totp/enroll').set(bearer(stolen)).send({ current_password: `guess ${i}` })).status);
    assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429]);
    await request(gw.app).post('/mfa/totp/enroll').set(bearer(stolen)).send({ current_password: PASSWORD }).expect(429);
  });

  it('when the owner confirms with the current password, then enrollment works from an older session', async () => {
    const username = uniqueName('owner-enroll');
    await gw.addUser(username, PASSWORD);
    const old = staleToken(gw, (await login(gw, username)).access_token);
    const enroll = await request(gw.app).post('/mfa/totp/enroll').set(bearer(old)).send({ current_password: PASSWORD }).expect(200);
    const secret = base32.decode(enroll.body.secret as string);
    await request(gw.app).post('/mfa/totp/confirm').set(bearer(old)).send({ otp: totpCode(secret, now() - 30), current_password: PASSWORD }).expect(200);
  });

  it('when a user switches their own MFA off, then sessions that carried amr otp are revoked', async () => {
    const username = uniqueName('self-disable');
    await gw.addUser(username, PASSWORD, ['admin', 'security']);
    const first = await login(gw, username);
    const enroll = await request(gw.app).post('/mfa/totp/enroll').set(bearer(first.access_token)).expect(200);
    const secret = base32.decode(enroll.body.secret as string);
    await request(gw.app).post('/mfa/totp/confirm').set(bearer(first.access_token)).send({ otp: totpCode(secret, now() - 30) }).expect(200);
    const withOtp = (await request(gw.app).post('/login').send({ username, password: PASSWORD, otp: totpCode(secret, now()) }).expect(200)).body as { access_token: string; refresh_token: string };
    await request(gw.app).post('/mfa/totp/disable').set(bearer(withOtp.access_token)).send({ otp: totpCode(secret, now() + 30) }).expect(204);
    await request(gw.app).post('/refresh').send({ refresh_token: withOtp.refresh_token }).expect(401);
    await request(gw.app).get('/admin/users').set(bearer(withOtp.access_token)).expect(401);
  });

  it('when a spent mfa_token is presented again, then the refusal is recorded with the user it was issued to', async () => {
    const username = uniqueName('spent-token');
    const userId = await gw.addUser(username, PASSWORD);
    const session = await login(gw, username);
    const enroll = await request(gw.app).post('/mfa/totp/enroll').set(bearer(session.access_token)).expect(200);
    const secret = base32.decode(enroll.body.secret as string);
    await request(gw.app).post('/mfa/totp/confirm').set(bearer(session.access_token)).send({ otp: totpCode(secret, now() - 30) }).expect(200);
    const step = await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(401);
    const token = step.body.mfa_token as string;
    await request(gw.app).post('/login/mfa').send({ mfa_token: token, otp: totpCode(secret, now()) }).expect(200);
    await request(gw.app).post('/login/mfa').send({ mfa_token: token, otp: totpCode(secret, now() + 30) }).expect(401);
    const refusal = (await auditRows(gw.t, { eventType: 'login.failed' })).filter((r) => r.reason === 'invalid_mfa_token').at(-1);
    assert.equal(refusal?.user_id, userId);
    assert.equal(refusal?.username, username);
  });

  it('when the scheme is written in lower case (bearer), then the token is accepted', async () => {
    const username = uniqueName('lower-bearer');
    await gw.addUser(username, PASSWORD, ['admin']);
    const { access_token: token } = await login(gw, username);
    await request(gw.app).get('/admin/users').set('Authorization', `bearer ${token}`).expect(200);
  });

  it('when an admin resets a user\'s MFA, then the user\'s sessions are revoked', async () => {
    const username = uniqueName('reset-mfa');
    const userId = await gw.addUser(username, PASSWORD);
    const adminName = uniqueName('mfa-resetter');
    await gw.addUser(adminName, PASSWORD, ['admin']);
    const session = await login(gw, username);
    const enroll = await request(gw.app).post('/mfa/totp/enroll').set(bearer(session.access_token)).expect(200);
    const secret = base32.decode(enroll.body.secret as string);
    await request(gw.app).post('/mfa/totp/confirm').set(bearer(session.access_token)).send({ otp: totpCode(secret, now() - 30) }).expect(200);

    const admin = (await login(gw, adminName)).access_token;
    await request(gw.app).post(`/admin/users/${userId}/mfa/reset`).set(bearer(admin)).expect(200);
    await request(gw.app).post('/refresh').send({ refresh_token: session.refresh_token }).expect(401);
    await request(gw.app).post('/mfa/totp/enroll').set(bearer(session.access_token)).expect(401);
    const [reset] = await auditRows(gw.t, { username, eventType: 'user.mfa_reset' });
    assert.equal(reset?.details?.revoked_sessions, 1);
  });
});
