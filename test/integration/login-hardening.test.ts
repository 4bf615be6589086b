import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { startGateway } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { auditRows, createTestGateway, sharedSetup, uniqueName, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';

describe('bad input to POST /login', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(async () => {
    await gw.close();
  });

  const cases: Array<{ name: string; send: (r: request.Test) => request.Test; status: number; reason: string }> = [
    { name: 'an empty object', send: (r) => r.send({}), status: 400, reason: 'invalid_request' },
    { name: 'a missing password', send: (r) => r.send({ username: 'bad-input-a' }), status: 400, reason: 'invalid_request' },
    { name: 'wrong types', send: (r) => r.send({ username: 42, password: true }), status: 400, reason: 'invalid_request' },
    { name: 'an array', send: (r) => r.send([1, 2]), status: 400, reason: 'invalid_request' },
    { name: 'malformed JSON', send: (r) => r.set('Content-Type', 'application/json').send('{"username": "x",'), status: 400, reason: 'invalid_request' },
    { name: 'a body over 10 kB', send: (r) => r.send({ username: 'x', password: 'p'.repeat(11_000) }), status: 413, reason: 'payload_too_large' },
    { name: 'a 1 MB username', send: (r) => r.send({ username: 'u'.repeat(1_000_000), password: 'p' }), status: 413, reason: 'payload_too_large' },
    { name: 'a form body', send: (r) => r.type('form').send('username=a&password=b'), status: 415, reason: 'unsupported_media_type' },
    { name: 'a text body', send: (r) => r.set('Content-Type', 'text/plain').send('hello'), status: 415, reason: 'unsupported_media_type' },
    { name: 'a NUL in the username', send: (r) => r.send({ username: 'bad\u0000input', password: PASSWORD }), status: 400, reason: 'invalid_request' },
    { name: 'CR/LF in the username', send: (r) => r.send({ username: 'bad\r\nlevel=admin msg=injected', password: PASSWORD }), status: 400, reason: 'invalid_request' },
    { name: 'an empty password', send: (r) => r.send({ username: 'bad-input-b', password: '' }), status: 400, reason: 'invalid_request' },
    { name: 'a 2 kB password', send: (r) => r.send({ username: 'bad-input-c', password: 'p'.repeat(2000) }), status: 400, reason: 'invalid_request' },
  ];

  for (const c of cases) {
    it(`when the body is ${c.name}, then ${c.status} problem+json, never 500, and one login.failed record`, async () => {
      const before = (await auditRows(gw.t)).length;
      const res = await c.send(request(gw.app).post('/login'));
      assert.equal(res.status, c.status, res.text);
      assert.match(res.headers['content-type']!, /^application\/problem\+json/);
      const records = (await auditRows(gw.t)).slice(before);
      assert.equal(records.length, 1);
      assert.deepEqual([records[0]!.event_type, records[0]!.outcome, records[0]!.reason], ['login.failed', 'failure', c.reason]);
    });
  }

  it('when the username carried CR/LF or NUL, then the record keeps it as data, storably', async () => {
    const rows = await auditRows(gw.t, { eventType: 'login.failed' });
    assert.ok(rows.some((r) => r.username === 'bad\r\nlevel=admin msg=injected'));
    assert.ok(rows.some((r) => r.username === 'bad\uFFFDinput'));
  });
});

describe('fail closed when the audit record cannot be written', () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
  });
  after(async () => {
    await t.drop();
  });

  it('when the audit writer is down at login, then 503 audit_unavailable, never 200, and the unrecorded session is revoked', async () => {
    const gw = await createTestGateway({ t });
    const username = uniqueName('no-audit');
    const userId = await gw.addUser(username, PASSWORD);
    await gw.services.writer.close();
    const res = await request(gw.app).post('/login').send({ username, password: PASSWORD });
    assert.equal(res.status, 503);
    assert.equal(res.body.code, 'audit_unavailable');
    assert.equal(res.body.access_token, undefined);
    const { rows } = await t.db.query<{ revoked_reason: string }>('SELECT revoked_reason FROM refresh_families WHERE user_id = $1', [userId]);
    assert.deepEqual(rows, [{ revoked_reason: 'audit_unavailable' }]);
    await gw.close();
  });

  it('when the audit writer is down at user creation, then 503 and no unrecorded user remains', async () => {
    const gw = await createTestGateway({ t });
    const admin = uniqueName('creator');
    await gw.addUser(admin, PASSWORD, ['admin']);
    const token = (await request(gw.app).post('/login').send({ username: admin, password: PASSWORD }).expect(200)).body.access_token as string;
    await gw.services.writer.close();
    const username = uniqueName('unrecorded');
    const res = await request(gw.app).post('/admin/users').set('Authorization', `Bearer ${token}`).send({ username, password: PASSWORD });
    assert.equal(res.status, 503);
    assert.equal(await gw.services.users.findByNormalizedUsername(username), undefined);
    await gw.close();
  });

  it('when the audit writer is down at refresh, then 503 and the presented token stays valid', async () => {
    const gw = await createTestGateway({ t });
    const username = uniqueName('no-audit-refresh');
    await gw.addUser(username, PASSWORD);
    const { refresh_token } = (await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200)).body as { refresh_token: string };
    await gw.services.writer.close();
    await request(gw.app).post('/refresh').send({ refresh_token }).expect(503);
    await gw.close();
    const healthy = await createTestGateway({ t });
    try {
      await request(healthy.app).post('/refresh').send({ refresh_token }).expect(200);
    } finally {
      await healthy.close();
    }
  });
});

describe('secrets never reach logs or audit rows', () => {
  it('when a gateway process serves logins, refreshes, failures and logouts, then no password, token or refresh token appears in its output or in the audit table', async () => {
    const t = await createTestDatabase();
    const admin = await createTestGateway({ t });
    const setup = sharedSetup(t);
    const gw = await startGateway({ ...setup.env, LOG_LEVEL: 'trace' });
    try {
      const username = uniqueName('secret');
      const wrong = 'this-is-the-wrong-password-xyzzy';
      await admin.addUser(username, PASSWORD, ['admin']);
      const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
        fetch(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
      await post('/login', { username, password: wrong, otp: '123456' });
      const tokens = (await (await post('/login', { username, password: PASSWORD })).json()) as { access_token: string; refresh_token: string };
      const next = (await (await post('/refresh', { refresh_token: tokens.refresh_token })).json()) as { access_token: string; refresh_token: string };
      await post('/refresh', { refresh_token: tokens.refresh_token }); // reuse
      await post('/admin/users', { username: uniqueName('new'), password: 'another long password' }, { authorization: `Bearer ${next.access_token}` });
      await post('/logout', { refresh_token: next.refresh_token });
      await gw.stop();

      const logs = gw.lines.join('\n') + gw.stderr();
      const { rows } = await t.db.query<{ row: string }>('SELECT audit_log::text AS row FROM audit_log');
      const audit = rows.map((r) => r.row).join('\n');
      assert.ok(gw.lines.length > 8, 'the process logged its requests');
      const secrets = [PASSWORD, wrong, '123456', 'another long password', tokens.access_token, tokens.refresh_token, next.access_token, next.refresh_token];
      for (const secret of secrets) {
        assert.ok(!logs.includes(secret), `log contains ${secret.slice(0, 12)}…`);
        assert.ok(!audit.includes(secret), `audit contains ${secret.slice(0, 12)}…`);
      }
      // Partial tokens are no better: the signature part and any 16-character run of the refresh token.
      assert.ok(!logs.includes(tokens.access_token.split('.')[2]!));
      assert.ok(!audit.includes(tokens.refresh_token.slice(0, 16)) && !logs.includes(tokens.refresh_token.slice(0, 16)));
    } finally {
      await admin.close();
      await t.drop();
      fs.rmSync(setup.dir, { recursive: true, force: true });
    }
  });
});
