import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as jose from 'jose';
import jwt from 'jsonwebtoken';
import request from 'supertest';
import { generateTokenKeyFile, readTokenKey } from '../../src/tokens/keys.js';
import { auditRows, createTestGateway, uniqueName, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';

async function loginAs(gw: TestGateway, roles: Array<'user' | 'security' | 'admin'>) {
  const username = uniqueName(roles.join('-') || 'plain');
  await gw.addUser(username, PASSWORD, roles);
  const res = await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200);
  return res.body as { access_token: string; refresh_token: string };
}

/** Creates a user through the admin route with `token`; returns the status. */
const createUserWith = async (gw: TestGateway, token: string) =>
  (
    await request(gw.app)
      .post('/admin/users')
      .set('Authorization', `Bearer ${token}`)
      .send({ username: uniqueName('created'), password: 'a long enough password' })
  ).status;

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

describe('access tokens, JWKS and the admin check', () => {
  let gw: TestGateway;
  let admin: { access_token: string };
  before(async () => {
    gw = await createTestGateway();
    admin = await loginAs(gw, ['admin']);
  });
  after(async () => {
    await gw.close();
  });

  it('when fetched, then the JWKS lists the public key with kid, alg and a cache lifetime, and no private part', async () => {
    const res = await request(gw.app).get('/.well-known/jwks.json').expect(200);
    assert.match(res.headers['cache-control']!, /max-age=300/);
    assert.equal(res.body.keys.length, 1);
    const [key] = res.body.keys;
    assert.deepEqual(Object.keys(key).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
    assert.equal(key.kid, gw.services.keys.active.kid);
    assert.equal(key.alg, 'ES256');
    // kid is the RFC 7638 thumbprint, computed independently by jose.
    assert.equal(await jose.calculateJwkThumbprint(key), key.kid);
  });

  it('when a login token is checked by an independent JOSE implementation against the JWKS, then it verifies with every claim the README "Tokens" section lists', async () => {
    const jwks = jose.createLocalJWKSet((await request(gw.app).get('/.well-known/jwks.json')).body);
    const { payload, protectedHeader } = await jose.jwtVerify(admin.access_token, jwks, {
      issuer: 'authtrail',
      audience: 'authtrail-api',
      algorithms: ['ES256'],
      typ: 'at+jwt',
      requiredClaims: ['exp', 'iat', 'jti', 'sub', 'sid'],
    });
    assert.equal(protectedHeader.kid, gw.services.keys.active.kid);
    assert.deepEqual(payload.amr, ['pwd']);
    assert.deepEqual(payload.roles, ['admin']);
    assert.equal(payload.exp! - payload.iat!, 600);
  });

  it('when the admin check gets a genuine admin token, then the route runs and records the actor', async () => {
    const username = uniqueName('made-by-admin');
    const res = await request(gw.app)
      .post('/admin/users')
      .set('Authorization', `Bearer ${admin.access_token}`)
      .send({ username, password: 'a long enough password', roles: ['security'] })
      .expect(201);
    assert.deepEqual(Object.keys(res.body).sort(), ['id', 'roles', 'username']);
    const [created] = await auditRows(gw.t, { username, eventType: 'user.created' });
    assert.equal(created?.actor_id, jose.decodeJwt(admin.access_token).sub);
    assert.equal(created?.user_id, res.body.id);
  });

  it('when forged tokens are presented, then each is refused with 401 and WWW-Authenticate invalid_token', async () => {
    const [headerB64, payloadB64] = admin.access_token.split('.') as [string, string, string];
    const header = JSON.parse(Buffer.from(headerB64, 'base64url').toString()) as Record<string, unknown>;
    const claims = JSON.parse(Buffer.from(payloadB64, 'base64url').toString()) as Record<string, unknown>;
    const active = gw.services.keys.active;
    const publicPem = active.publicKey.export({ format: 'pem', type: 'spki' }) as string;
    const sign = (payload: Record<string, unknown>, overrides: jwt.SignOptions = {}, key = active.privateKey) =>
      jwt.sign(payload, key, { algorithm: 'ES256', header: { alg: 'ES256', typ: 'at+jwt', kid: active.kid }, ...overrides });
    const otherKey = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const now = Math.floor(Date.now() / 1000);

    const forgeries: Record<string, string> = {
      'alg none': `${b64({ ...header, alg: 'none' })}.${payloadB64}.`,
      'HS256 keyed with the public key': `${b64({ ...header, alg: 'HS256' })}.${payloadB64}.${crypto
        .createHmac('sha256', publicPem)
        .update(`${b64({ ...header, alg: 'HS256' })}.${payloadB64}`)
        .digest('base64url')}`,
      'another key with the same kid': sign(claims, {}, otherKey),
      'unknown kid': sign(claims, { header: { alg: 'ES256', typ: 'at+jwt', kid: 'not-a-known-kid' } }),
      expired: sign({ ...claims, iat: now - 1000, exp: now - 10 }),
      'missing exp': sign(Object.fromEntries(Object.entries(claims).filter(([k]) => k !== 'exp'))),
      'wrong iss': sign({ ...claims, iss: 'https://evil.example' }),
      'wrong aud': sign({ ...claims, aud: 'another-api' }),
      'wrong typ': sign(claims, { header: { alg: 'ES256', typ: 'JWT', kid: active.kid } }),
      'tampered payload': `${headerB64}.${b64({ ...claims, roles: ['admin', 'security'], sub: crypto.randomUUID() })}.${admin.access_token.split('.')[2]}`,
      'not a JWT': 'abc.def',
    };
    // The genuine claims re-signed with the genuine key pass, so each refusal is due to its one change.
    assert.equal(await createUserWith(gw, sign(claims)), 201);
    for (const [name, token] of Object.entries(forgeries)) {
      const res = await request(gw.app).post('/admin/users').set('Authorization', `Bearer ${token}`).send({ username: uniqueName('x'), password: 'a long enough password' });
      assert.equal(res.status, 401, name);
      assert.equal(res.body.code, 'unauthorized', name);
      if (name !== 'not a JWT') assert.match(res.headers['www-authenticate']!, /error="invalid_token"/, name);
    }
  });

  it('when no token is sent, then 401; when the role is missing, then 403', async () => {
    const noToken = await request(gw.app).post('/admin/users').send({ username: 'x', password: 'y' }).expect(401);
    assert.match(noToken.headers['www-authenticate']!, /^Bearer/);
    for (const roles of [['user'], ['security']] as const) {
      const { access_token } = await loginAs(gw, [...roles]);
      const res = await request(gw.app).post('/admin/users').set('Authorization', `Bearer ${access_token}`).send({ username: uniqueName('x'), password: 'a long enough password' });
      assert.equal(res.status, 403, roles.join());
      assert.equal(res.body.code, 'forbidden');
    }
  });

  it('when ADMIN_REQUIRE_MFA is on (the default), then an admin token without otp in amr gets 403', async () => {
    const strict = await createTestGateway({ t: gw.t, env: { ADMIN_REQUIRE_MFA: 'true', JWT_KEY_FILES: gw.setup.env.JWT_KEY_FILES! } });
    try {
      const res = await request(strict.app).post('/admin/users').set('Authorization', `Bearer ${admin.access_token}`).send({ username: uniqueName('x'), password: 'a long enough password' });
      assert.equal(res.status, 403);
      assert.match(res.body.detail, /second factor/);
    } finally {
      await strict.close();
    }
  });

  it('when POST /admin/users gets a taken name, a weak password or bad roles, then 409 or 400 with a reason', async () => {
    const username = uniqueName('dup');
    const send = (body: unknown) => request(gw.app).post('/admin/users').set('Authorization', `Bearer ${admin.access_token}`).send(body as object);
    await send({ username, password: 'a long enough password' }).expect(201);
    assert.equal((await send({ username: username.toUpperCase(), password: 'a long enough password' }).expect(409)).body.code, 'username_taken');
    assert.match((await send({ username: uniqueName('weak'), password: 'short' }).expect(400)).body.detail, /at least 12/);
    assert.match((await send({ username: 'same-as-password-1', password: 'SAME-AS-PASSWORD-1' }).expect(400)).body.detail, /username/);
    await send({ username: uniqueName('r'), password: 'a long enough password', roles: ['root'] }).expect(400);
    await send({ username: 'line\nbreak', password: 'a long enough password' }).expect(400);
  });
});

describe('RS256 keys and key rotation', () => {
  let gw: TestGateway;
  let rsaFile: string;
  before(async () => {
    gw = await createTestGateway();
    rsaFile = path.join(gw.setup.dir, 'jwt-rs256.pem');
    generateTokenKeyFile(rsaFile, 'RS256');
  });
  after(async () => {
    await gw.close();
  });

  it('when an RSA key is active beside the EC key, then tokens are RS256, both keys are published, and older ES256 tokens still pass', async () => {
    const esToken = (await loginAs(gw, ['admin'])).access_token;
    const rotated = await createTestGateway({
      t: gw.t,
      env: { JWT_KEY_FILES: `${gw.setup.env.JWT_KEY_FILES},${rsaFile}`, JWT_ACTIVE_KEY_FILE: rsaFile },
    });
    try {
      const jwksBody = (await request(rotated.app).get('/.well-known/jwks.json').expect(200)).body;
      assert.deepEqual((jwksBody.keys as Array<{ alg: string }>).map((k) => k.alg).sort(), ['ES256', 'RS256']);
      const rsToken = (await loginAs(rotated, ['admin'])).access_token;
      const { protectedHeader } = await jose.jwtVerify(rsToken, jose.createLocalJWKSet(jwksBody), { algorithms: ['RS256'], typ: 'at+jwt' });
      assert.equal(protectedHeader.kid, readTokenKey(rsaFile).kid);
      assert.equal(await createUserWith(rotated, esToken), 201, 'a token of the retiring key still works while published');
      assert.equal(await createUserWith(rotated, rsToken), 201);
    } finally {
      await rotated.close();
    }
  });
});
