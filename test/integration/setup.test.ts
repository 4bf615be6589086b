import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { createApp } from '../../src/app.js';
import { createFirstRunSetup, type FirstRunSetup } from '../../src/users/first-run.js';
import { auditRows, createTestGateway, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';

describe('POST /setup: the first administrator, once', () => {
  let gw: TestGateway;
  let setup: FirstRunSetup;
  let app: ReturnType<typeof createApp>;
  before(async () => {
    gw = await createTestGateway();
    setup = createFirstRunSetup();
    app = createApp({ ...gw.services, setup });
  });
  after(async () => {
    await gw.close();
  });

  it('when the token is wrong, then 401 invalid_setup_token, recorded as setup.failed, and no user', async () => {
    const res = await request(app).post('/setup').send({ setup_token: 'x'.repeat(43), username: 'root@example.com', password: PASSWORD }).expect(401);
    assert.equal(res.body.code, 'invalid_setup_token');
    const rows = await auditRows(gw.t, { eventType: 'setup.failed' });
    assert.deepEqual(rows.map((r) => [r.outcome, r.reason, r.username]), [['failure', 'invalid_setup_token', 'root@example.com']]);
    assert.equal(await gw.services.users.count(), 0);
  });

  it('when the password is too short, then 400 naming it, and the token still works', async () => {
    const res = await request(app).post('/setup').send({ setup_token: setup.token, username: 'root@example.com', password: 'short' }).expect(400);
    assert.deepEqual(res.body.fields, ['password']);
    assert.ok(setup.pending());
  });

  it('when ten requests with the token arrive at once, then exactly one creates an admin, recorded as user.created (bootstrap)', async () => {
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => request(app).post('/setup').send({ setup_token: setup.token, username: `root${i}@example.com`, password: PASSWORD })),
    );
    const statuses = answers.map((r) => r.status).sort();
    assert.deepEqual(statuses, [201, ...Array(9).fill(409)]);
    const created = answers.find((r) => r.status === 201)!;
    assert.deepEqual(created.body.roles, ['admin', 'security']);
    assert.equal(await gw.services.users.count(), 1);
    const records = await auditRows(gw.t, { eventType: 'user.created' });
    assert.equal(records.length, 1);
    assert.equal(records[0]!.reason, 'bootstrap');
    assert.deepEqual(records[0]!.details, { bootstrap: true, via: 'setup', roles: ['admin', 'security'] });
    assert.ok(records[0]!.ip, 'the request\'s address is recorded');
    const refused = await auditRows(gw.t, { eventType: 'setup.failed' });
    assert.equal(refused.filter((r) => r.reason === 'setup_completed').length, 9);
  });

  it('when the setup is done, then the token is refused (409) and the admin can log in', async () => {
    assert.equal(setup.pending(), false);
    const res = await request(app).post('/setup').send({ setup_token: setup.token, username: 'again@example.com', password: PASSWORD }).expect(409);
    assert.equal(res.body.code, 'setup_completed');
    const [admin] = await auditRows(gw.t, { eventType: 'user.created' });
    await request(app).post('/login').send({ username: admin!.username, password: PASSWORD }).expect(200);
  });

  it('when a gateway started with users (no setup), then 409 setup_completed, recorded', async () => {
    const before = (await auditRows(gw.t, { eventType: 'setup.failed' })).length;
    const res = await request(gw.app).post('/setup').send({ setup_token: setup.token, username: 'x@example.com', password: PASSWORD }).expect(409);
    assert.equal(res.body.code, 'setup_completed');
    assert.equal((await auditRows(gw.t, { eventType: 'setup.failed' })).length, before + 1);
  });

  it('when the body is not JSON, then 415, recorded once', async () => {
    const before = (await auditRows(gw.t, { eventType: 'setup.failed' })).length;
    await request(app).post('/setup').set('Content-Type', 'text/plain').send('hello').expect(415);
    assert.equal((await auditRows(gw.t, { eventType: 'setup.failed' })).length, before + 1);
  });
});

describe('POST /setup under load: the right token, many times at once, at production bcrypt cost', () => {
  let gw: TestGateway;
  let setup: FirstRunSetup;
  let app: ReturnType<typeof createApp>;
  before(async () => {
    // Cost 12 (≈ 0.3 s a hash here) and a 2 s deadline: hashing every request's password before
    // finding the setup done would answer the later ones 503.
    gw = await createTestGateway({ env: { BCRYPT_COST: '12', REQUEST_DEADLINE_MS: '2000' } });
    setup = createFirstRunSetup();
    app = createApp({ ...gw.services, setup });
  });
  after(async () => {
    await gw.close();
  });

  it('when 30 requests with the token arrive at once, then one 201 and 29 409s, all within the deadline, each refusal recorded once', async () => {
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, i) => request(app).post('/setup').send({ setup_token: setup.token, username: `racer${i}@example.com`, password: `${PASSWORD} ${i}` })),
    );
    assert.deepEqual(answers.map((r) => r.status).sort(), [201, ...Array(29).fill(409)]);
    assert.equal(await gw.services.users.count(), 1);
    assert.equal((await auditRows(gw.t, { eventType: 'user.created' })).length, 1);
    const refused = await auditRows(gw.t, { eventType: 'setup.failed' });
    assert.deepEqual(refused.map((r) => r.reason), Array(29).fill('setup_completed'));
  });
});

