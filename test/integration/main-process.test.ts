import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateTokenKeyFile } from '../../src/tokens/keys.js';
import { verifyChain } from '../../src/audit/verify-chain.js';
import { tempSigningKey, trustOnly } from '../helpers/audit.js';
import { writeSampleEvents } from '../helpers/chain-fixture.js';
import { startGateway } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { finished, runTs, spawnTs } from '../helpers/processes.js';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('the gateway process (src/main.ts)', () => {
  let t: TestDatabase;
  let key: ReturnType<typeof tempSigningKey>;
  before(async () => {
    t = await createTestDatabase();
    key = tempSigningKey();
  });
  after(async () => {
    await t.drop();
    fs.rmSync(key.dir, { recursive: true, force: true });
  });

  it('when started with PostgreSQL and Redis and then sent SIGTERM, then it serves, drains, checkpoints the head and exits 0', async () => {
    await writeSampleEvents(t.db, 5);
    const checkpointFile = path.join(key.dir, 'main.jsonl');
    const jwtKey = path.join(key.dir, 'jwt.pem');
    generateTokenKeyFile(jwtKey, 'ES256');
    const mfaKey = path.join(key.dir, 'mfa.key');
    fs.writeFileSync(mfaKey, crypto.randomBytes(32).toString('base64'));
    const gw = await startGateway({
      DATABASE_URL: t.url, REDIS_URL, AUDIT_SIGNING_KEY_FILE: key.file, AUDIT_CHECKPOINT_FILE: checkpointFile, AUDIT_CHECKPOINT_EVERY_SECONDS: '3600',
      JWT_KEY_FILES: jwtKey, MFA_ENCRYPTION_KEY_FILE: mfaKey,
    });
    const ready = await fetch(`${gw.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: 'ready', checks: { database: 'ok', redis: 'ok', audit_writer: 'ok' } });
    assert.equal(await gw.stop('SIGTERM'), 0, gw.stderr());
    const lines = fs.readFileSync(checkpointFile, 'utf8').trim().split('\n');
    assert.equal((JSON.parse(lines.at(-1)!) as { seq: number }).seq, 5, 'the shutdown checkpoint covers the head');
    const result = await verifyChain(t.db, { trustedKeys: trustOnly(key), checkpointFile });
    assert.deepEqual([result.valid, result.checkpoints_checked], [true, 1]);
    assert.ok(gw.lines.some((l) => l.includes('"msg":"stopped"')));
  });

  it('when started with no DATABASE_URL, then it runs embedded: bootstrap admin, logins, lockout, a verifiable chain that survives a restart', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-main-'));
    const env = { DATA_DIR: dataDir, BOOTSTRAP_ADMIN_USERNAME: 'root@example.com', BOOTSTRAP_ADMIN_PASSWORD: 'embedded admin password', BCRYPT_COST: '4' };
    const gw = await startGateway(env);
    const post = (url: string, body: unknown) =>
      fetch(`${url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    try {
      const ready = (await (await fetch(`${gw.url}/readyz`)).json()) as { checks: Record<string, string> };
      assert.deepEqual(ready.checks, { database: 'ok', redis: 'embedded', audit_writer: 'ok' });
      assert.ok(gw.lines.some((l) => l.includes('embedded mode') && l.includes('one instance only')));
      for (const key of ['audit-ed25519.pem', 'jwt-es256.pem', 'mfa-encryption.key']) assert.ok(fs.existsSync(path.join(dataDir, 'keys', key)), `${key} generated`);
      assert.equal((await post(gw.url, { username: 'root@example.com', password: 'embedded admin password' })).status, 200);
      const statuses = [];
      for (let i = 0; i < 6; i++) statuses.push((await post(gw.url, { username: 'mallory', password: 'guess guess guess' })).status);
      assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429]);
      await assert.rejects(startGateway({ DATA_DIR: dataDir }), /in use by process/);
    } finally {
      assert.equal(await gw.stop(), 0, gw.stderr());
    }
    // Restarted on the same directory: the same admin logs in and the chain, with its checkpoints, verifies.
    const again = await startGateway(env);
    try {
      assert.equal((await post(again.url, { username: 'root@example.com', password: 'embedded admin password' })).status, 200);
    } finally {
      assert.equal(await again.stop(), 0);
    }
    const verify = await runTs('src/cli/audit-verify.ts', [
      '--data-dir', dataDir, '--trusted-key', path.join(dataDir, 'keys', 'audit-ed25519.pem'), '--checkpoint-file', path.join(dataDir, 'audit-checkpoints.jsonl'),
    ]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, /intact: 10 records/);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('when the configuration is invalid, then start-up stops with one message naming each bad variable', async () => {
    const run = await runTs('src/main.ts', [], { PORT: 'abc', LOG_LEVEL: 'chatty', DATABASE_URL: 'mysql://x' });
    assert.equal(run.code, 1);
    for (const name of ['PORT', 'LOG_LEVEL', 'DATABASE_URL']) assert.match(run.stderr, new RegExp(`${name}:`));
    assert.match(run.stderr, /^Invalid configuration:/);
  });

  it('when the database is unreachable at start, then it exits non-zero with the reason', async () => {
    const run = await runTs('src/main.ts', [], {
      DATABASE_URL: 'postgres://root@127.0.0.1:1/none', AUDIT_SIGNING_KEY_FILE: key.file, JWT_KEY_FILES: key.file, MFA_ENCRYPTION_KEY_FILE: key.file,
      DATABASE_CONNECT_TIMEOUT_MS: '500',
    });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /failed to start: .*ECONNREFUSED/);
  });
});

// Needs no database: the gateway must stop before it opens one.
describe('the gateway process (src/main.ts) in production without a database', () => {
  it('when NODE_ENV=production, REDIS_URL is set and DATABASE_URL misspelled, then it exits 1 naming DATABASE_URL, never listens and generates no keys', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-prod-'));
    try {
      const child = spawnTs('src/main.ts', [], {
        NODE_ENV: 'production', REDIS_URL, DATABSE_URL: 'postgres://admin:hunter2@127.0.0.1:5432/x', DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info',
      });
      // A gateway that starts anyway is stopped at once, so the test fails instead of hanging.
      child.stdout?.on('data', (d: Buffer) => d.toString().includes('"msg":"listening"') && child.kill('SIGTERM'));
      const backstop = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const run = await finished(child).finally(() => clearTimeout(backstop));
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.match(run.stderr, /^Invalid configuration:\n {2}- DATABASE_URL: required when NODE_ENV=production and REDIS_URL is set \(DATABSE_URL is set: misspelled\?\); set AUTHTRAIL_EMBEDDED=true/);
      assert.doesNotMatch(run.stderr + run.stdout, /hunter2/);
      assert.doesNotMatch(run.stdout, /listening|embedded mode/);
      assert.deepEqual(fs.readdirSync(dataDir), [], 'no database, no generated keys');
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
