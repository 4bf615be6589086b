import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ScureBase32Plugin } from 'otplib';
import request from 'supertest';
import type { Express } from 'express';
import { createApp } from '../../src/app.js';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { loadSigningKey } from '../../src/audit/checkpoints.js';
import { loadConfig } from '../../src/config.js';
import { createEmbeddedDatabase, type Database } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { createLogger } from '../../src/logger.js';
import { totpCode } from '../../src/mfa/totp.js';
import { createServices } from '../../src/runtime.js';
import type { Services } from '../../src/services.js';
import { createUser } from '../../src/users/create-user.js';

const PASSWORD = 'correct horse battery staple';

/** The whole app on PGlite and the in-process lockout store, as `npm start` runs it without servers. */
describe('embedded mode: MFA, user management and the security API on PGlite', () => {
  let dir: string;
  let db: Database;
  let services: Services;
  let app: Express;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-embedded-app-'));
    const config = loadConfig({ DATA_DIR: dir, BCRYPT_COST: '4', ADMIN_REQUIRE_MFA: 'true' });
    db = await createEmbeddedDatabase(path.join(dir, 'pgdata'));
    await migrate(db);
    loadSigningKey(config.audit.signingKeyFile, { generate: true });
    const writer = createChainWriter(db, { batchMax: 64, writeTimeoutMs: 5000 });
    services = createServices(config, createLogger('silent'), { db, writer, redis: undefined });
    app = createApp(services);
    for (const [username, roles] of [['admin@local', ['admin', 'security']], ['user@local', ['user']]] as const) {
      const result = await createUser(
        { users: services.users, passwords: services.passwords, writer, minPasswordLength: 12 },
        { username, password: PASSWORD, roles: [...roles] },
        {},
      );
      assert.ok(result.ok);
    }
  });
  after(async () => {
    await services.writer.close();
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('when an admin enrolls MFA and logs in with it, then the admin API, history, lockouts and verification all work', async () => {
    const first = await request(app).post('/login').send({ username: 'admin@local', password: PASSWORD }).expect(200);
    const auth = { Authorization: `Bearer ${first.body.access_token}` };
    // Without otp in amr, admin routes refuse (ADMIN_REQUIRE_MFA).
    await request(app).get('/admin/login-events').set(auth).expect(403);
    const enroll = await request(app).post('/mfa/totp/enroll').set(auth).expect(200);
    const secret = new ScureBase32Plugin().decode(enroll.body.secret as string);
    const confirmed = await request(app).post('/mfa/totp/confirm').set(auth).send({ otp: totpCode(secret, Date.now() / 1000 - 30) }).expect(200);
    assert.equal(confirmed.body.recovery_codes.length, 10);

    const step = await request(app).post('/login').send({ username: 'admin@local', password: PASSWORD }).expect(401);
    const mfaLogin = await request(app).post('/login/mfa').send({ mfa_token: step.body.mfa_token, otp: totpCode(secret, Date.now() / 1000) }).expect(200);
    const admin = { Authorization: `Bearer ${mfaLogin.body.access_token}` };

    for (let i = 0; i < 5; i++) await request(app).post('/login').send({ username: 'user@local', password: 'wrong wrong wrong' }).expect(401);
    const lockouts = await request(app).get('/admin/lockouts').set(admin).expect(200);
    assert.deepEqual((lockouts.body.items as Array<{ username: string }>).map((l) => l.username), ['user@local']);
    await request(app).delete('/admin/lockouts/user@local').set(admin).expect(204);
    await request(app).post('/login').send({ username: 'user@local', password: PASSWORD }).expect(200);

    const history = await request(app).get('/admin/login-events').query({ username: 'USER@LOCAL', outcome: 'failure', ip: '127.0.0.0/8' }).set(admin).expect(200);
    assert.equal(history.body.items.length, 5);
    const csv = await request(app).get('/admin/login-events').query({ username: 'user@local' }).set(admin).set('Accept', 'text/csv').expect(200);
    assert.equal(csv.text.trim().split('\r\n').length, 1 + 9, 'header; user.created, five failures, lockout.started, lockout.cleared, success');
    await request(app).get('/admin/login-events/summary').set(admin).expect(200);

    const users = await request(app).get('/admin/users').set(admin).expect(200);
    const target = (users.body.items as Array<{ id: string; username: string }>).find((u) => u.username === 'user@local')!;
    await request(app).post(`/admin/users/${target.id}/disable`).set(admin).expect(200);
    await request(app).post('/login').send({ username: 'user@local', password: PASSWORD }).expect(401);

    const verified = await request(app).get('/admin/audit/verify').query({ full: 'true' }).set(admin).expect(200);
    assert.equal(verified.body.valid, true);
    assert.ok(verified.body.checked > 20);
  });
});
