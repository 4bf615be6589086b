import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { Express } from 'express';
import { ScureBase32Plugin } from 'otplib';
import request from 'supertest';
import { totpCode } from '../../src/mfa/totp.js';
import { openApiDocument } from '../../src/http/openapi.js';
import { createTestGateway, uniqueName, type TestGateway } from '../helpers/test-gateway.js';
import { checkpointNow } from '../helpers/transparency.js';

type Doc = { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, unknown> }> }>> };
const PASSWORD = 'correct horse battery staple';

interface Layer {
  route?: { path: string; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
}

/** Every (METHOD, path) the Express app routes, with `:param` written `{param}`. */
function expressRoutes(app: Express): string[] {
  const found: string[] = [];
  const walk = (stack: Layer[]) => {
    for (const layer of stack) {
      if (layer.route) {
        // `:name` and a wildcard `*name` (a tile path spans several segments) are both `{name}`.
        for (const method of Object.keys(layer.route.methods)) found.push(`${method.toUpperCase()} ${layer.route.path.replace(/[:*](\w+)/g, '{$1}')}`);
      } else if (layer.handle?.stack) walk(layer.handle.stack);
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack);
  return [...new Set(found)].sort();
}

describe('GET /openapi.json', () => {
  let gw: TestGateway;
  const doc = openApiDocument() as unknown as Doc;
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  ajv.addSchema({ ...doc, $id: 'doc' });
  const covered = new Set<string>();

  /** Finds the documented response for a real one and validates its body. */
  function check(method: string, url: string, res: request.Response): void {
    const path = url.split('?')[0]!;
    const template = Object.keys(doc.paths).find((t) => new RegExp(`^${t.replace(/\{\w+\}/g, '[^/]+').replace(/\./g, '\\.')}$`).test(path));
    assert.ok(template, `${method} ${path} is documented`);
    const operation = doc.paths[template]![method.toLowerCase()];
    assert.ok(operation, `${method} ${template} is documented`);
    const response = operation.responses[String(res.status)];
    assert.ok(response, `${method} ${template} documents status ${res.status}`);
    covered.add(`${method} ${template}`);
    if (!response.content) {
      assert.equal(res.text, '', `${method} ${template} ${res.status} has no body`);
      return;
    }
    const type = (res.headers['content-type'] ?? '').split(';')[0]!;
    assert.ok(type in response.content, `${method} ${template} ${res.status} documents ${type}`);
    if (type === 'application/json' || type === 'application/problem+json' || type === 'application/jwk-set+json') {
      const pointer = `doc#/paths/${template.replaceAll('~', '~0').replaceAll('/', '~1')}/${method.toLowerCase()}/responses/${res.status}/content/${type.replaceAll('/', '~1')}/schema`;
      const validate = ajv.getSchema(pointer) ?? ajv.compile({ $ref: pointer });
      assert.ok(validate(res.body), `${method} ${template} ${res.status}: ${ajv.errorsText(validate.errors)}\n${res.text.slice(0, 300)}`);
    }
  }

  before(async () => {
    gw = await createTestGateway({ env: { ADMIN_REQUIRE_MFA: 'false' } });
  });
  after(async () => {
    await gw.close();
  });

  it('when the app is built, then every route it serves is documented and every documented route is served', () => {
    const documented = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`))
      .sort();
    assert.deepEqual(expressRoutes(gw.app), documented);
  });

  it('when served, then it is OpenAPI 3.1 JSON', async () => {
    const res = await request(gw.app).get('/openapi.json').expect(200);
    assert.equal(res.body.openapi, '3.1.0');
  });

  it('when every route is exercised for real, then each response matches its documented status, media type and schema', async () => {
    const app = gw.app;
    const call = async (method: string, url: string, opts: { token?: string; body?: unknown; type?: string; accept?: string } = {}) => {
      let r = (request(app) as unknown as Record<string, (u: string) => request.Test>)[method.toLowerCase()]!(url);
      if (opts.token) r = r.set('Authorization', `Bearer ${opts.token}`);
      if (opts.accept) r = r.set('Accept', opts.accept);
      if (opts.type) r = r.set('Content-Type', opts.type);
      const res = opts.body === undefined ? await r : await r.send(opts.body as object);
      check(method, url, res);
      return res;
    };
    const admin = uniqueName('oa-admin');
    await gw.addUser(admin, PASSWORD, ['admin', 'security']);
    const userName = uniqueName('oa-user');
    const userId = await gw.addUser(userName, PASSWORD, ['user']);

    for (const url of ['/healthz', '/readyz', '/metrics', '/openapi.json', '/.well-known/jwks.json', '/']) await call('GET', url);
    // Users exist, so the setup is over (test/integration/setup.test.ts covers the rest).
    await call('POST', '/setup', { body: { setup_token: 'x', username: 'first-admin@example.com', password: PASSWORD } });
    await call('POST', '/setup', { body: { setup_token: 'x' } });
    await call('POST', '/login', { body: { username: admin } });
    await call('POST', '/login', { body: 'x', type: 'text/plain' });
    await call('POST', '/login', { body: { username: admin, password: 'p'.repeat(11_000) } });
    await call('POST', '/login', { body: { username: admin, password: 'wrong password here' } });
    const adminLogin = await call('POST', '/login', { body: { username: admin, password: PASSWORD } });
    const token = adminLogin.body.access_token as string;
    const userLogin = await call('POST', '/login', { body: { username: userName, password: PASSWORD } });
    const userToken = userLogin.body.access_token as string;
    await call('POST', '/login/mfa', { body: { mfa_token: 'x' } });
    await call('POST', '/login/mfa', { body: { mfa_token: 'A'.repeat(43), otp: '123456' } });
    // A second session of the user to refresh and log out: the first one's access token is used below.
    const otherSession = await call('POST', '/login', { body: { username: userName, password: PASSWORD } });
    const refreshed = await call('POST', '/refresh', { body: { refresh_token: otherSession.body.refresh_token } });
    await call('POST', '/refresh', { body: { refresh_token: 'nope' } });
    await call('POST', '/logout', { body: { refresh_token: refreshed.body.refresh_token } });

    const enroll = await call('POST', '/mfa/totp/enroll', { token: userToken });
    const secret = new ScureBase32Plugin().decode(enroll.body.secret as string);
    await call('POST', '/mfa/totp/confirm', { token: userToken, body: { otp: 'abc' } });
    await call('POST', '/mfa/totp/confirm', { token: userToken, body: { otp: totpCode(secret, Date.now() / 1000 - 30) } });
    await call('POST', '/mfa/totp/enroll', { token: userToken });
    await call('POST', '/mfa/recovery-codes', { token: userToken, body: { otp: totpCode(secret, Date.now() / 1000) } });
    await call('POST', '/mfa/totp/disable', { token: userToken, body: { otp: '000000' } });
    await call('POST', '/mfa/totp/disable', { token: userToken, body: { otp: totpCode(secret, Date.now() / 1000 + 30) } });
    await call('POST', '/mfa/totp/enroll');
    await call('POST', '/me/password', { token: userToken, body: { current_password: PASSWORD, new_password: 'short' } });
    await call('POST', '/me/password', { token: userToken, body: { current_password: PASSWORD, new_password: 'another good password' } });

    const created = await call('POST', '/admin/users', { token, body: { username: uniqueName('oa-new'), password: PASSWORD, roles: ['user'] } });
    await call('POST', '/admin/users', { token, body: { username: userName, password: PASSWORD } });
    await call('POST', '/admin/users', { token, body: { username: 'x' } });
    await call('POST', '/admin/users', { token: userToken, body: {} });
    await call('GET', '/admin/users', { token });
    await call('GET', '/admin/users');
    await call('GET', `/admin/users/${created.body.id}`, { token });
    await call('GET', '/admin/users/00000000-0000-4000-8000-000000000000', { token });
    await call('POST', `/admin/users/${userId}/disable`, { token });
    await call('POST', `/admin/users/${userId}/enable`, { token });
    await call('PUT', `/admin/users/${userId}/roles`, { token, body: { roles: ['user', 'security'] } });
    await call('POST', `/admin/users/${userId}/password`, { token, body: { password: 'reset reset reset' } });
    await call('POST', `/admin/users/${userId}/mfa/reset`, { token });
    await call('POST', `/admin/users/${userId}/sessions/revoke`, { token });

    await call('GET', '/admin/login-events?limit=5', { token });
    await call('GET', '/admin/login-events?ip=300.1.1.1', { token });
    await call('GET', '/admin/login-events?limit=2', { token, accept: 'text/csv' });
    await call('GET', '/admin/login-events/summary?bucket=hour', { token });
    const victim = uniqueName('oa-victim');
    for (let i = 0; i < 5; i++) await request(app).post('/login').send({ username: victim, password: 'wrong wrong wrong' });
    await call('GET', '/admin/lockouts', { token });
    await call('GET', `/admin/lockouts/${encodeURIComponent(victim)}`, { token });
    await call('DELETE', `/admin/lockouts/${encodeURIComponent(victim)}`, { token });
    await call('GET', `/admin/lockouts/${encodeURIComponent(victim)}`, { token });
    await call('GET', '/admin/audit/verify', { token });
    await call('GET', '/admin/audit/checkpoints', { token });
    await call('GET', '/admin/audit/checkpoints', { token: userToken });
    await call('GET', '/admin/audit/witnesses', { token });
    await call('GET', '/admin/alerts', { token });
    await call('GET', '/admin/alerts?status=bogus', { token });
    await call('POST', '/admin/alerts/00000000-0000-4000-8000-000000000000/resolve', { token, body: { note: 'none such' } });
    // The transparency log: before the first checkpoint, then after one.
    await call('GET', '/audit-log/checkpoint', { token });
    await call('GET', '/admin/audit/proof/1', { token });
    await call('GET', '/admin/audit/consistency?from=2&to=1', { token });
    await checkpointNow(gw);
    const size = Number((await call('GET', '/audit-log/checkpoint', { token })).text.split('\n')[1]);
    await call('GET', `/admin/audit/proof/1?tree_size=${size}`, { token });
    await call('GET', '/admin/audit/proof/01', { token });
    await call('GET', `/admin/audit/consistency?from=1&to=${size}`, { token });
    await call('GET', '/audit-log/key', { token });
    await call('GET', '/audit-log/key');
    await call('GET', '/audit-log/key', { token: userToken });
    await call('GET', '/audit-log/tile/0/000', { token });
    await call('GET', '/audit-log/tile/0/x', { token });

    // Every documented operation was exercised at least once.
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    assert.deepEqual(documented.filter((op) => !covered.has(op)), []);
  });
});
