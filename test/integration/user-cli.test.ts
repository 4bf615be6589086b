import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startGateway } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { runTs } from '../helpers/processes.js';
import { auditRows, sharedSetup, type SharedSetup } from '../helpers/test-gateway.js';

const PASSWORD = 'operator chosen password';

describe('npm run user (operator CLI)', () => {
  let t: TestDatabase;
  let setup: SharedSetup;
  before(async () => {
    t = await createTestDatabase();
    setup = sharedSetup(t);
  });
  after(async () => {
    await t.drop();
    fs.rmSync(setup.dir, { recursive: true, force: true });
  });

  const cli = (args: string[], env: Record<string, string> = {}) => runTs('src/cli/user.ts', args, { ...setup.env, ...env });

  it('when run against PostgreSQL, then create, disable, enable, reset-mfa, revoke-sessions and list work and write the same audit records', async () => {
    const created = await cli(['create', 'ops-user@example.com', '--role', 'security', '--role', 'user'], { AUTHTRAIL_PASSWORD: PASSWORD });
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /created ops-user@example.com .* with roles security, user/);
    for (const command of ['disable', 'enable', 'reset-mfa', 'revoke-sessions']) {
      const run = await cli([command, 'OPS-USER@example.com']);
      assert.equal(run.code, 0, `${command}: ${run.stderr}`);
    }
    const listed = await cli(['list']);
    assert.match(listed.stdout, /ops-user@example\.com {2}security,user {2}active/);
    const records = await auditRows(t, { username: 'ops-user@example.com' });
    assert.deepEqual(records.map((r) => r.event_type), ['user.created', 'user.disabled', 'user.enabled', 'user.mfa_reset', 'user.sessions_revoked']);
    assert.ok(records.every((r) => r.details?.via === 'cli' && r.actor_id === null));
  });

  it('when the password breaks the policy or the user is unknown, then it exits 1 with the reason and writes nothing', async () => {
    const before = (await auditRows(t)).length;
    const weak = await cli(['create', 'weak@example.com'], { AUTHTRAIL_PASSWORD: 'short' });
    assert.equal(weak.code, 1);
    assert.match(weak.stderr, /at least 12 characters/);
    const unknown = await cli(['disable', 'nobody@example.com']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no user nobody@example.com/);
    const bad = await cli(['frobnicate', 'x']);
    assert.equal(bad.code, 1);
    assert.equal((await auditRows(t)).length, before);
  });

  it('when run in embedded mode, then the user it creates can log in to the embedded gateway', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-cli-'));
    try {
      const created = await runTs('src/cli/user.ts', ['create', 'local-admin', '--role', 'admin'], { DATA_DIR: dataDir, AUTHTRAIL_PASSWORD: PASSWORD, BCRYPT_COST: '4' });
      assert.equal(created.code, 0, created.stderr);
      const gw = await startGateway({ DATA_DIR: dataDir, BCRYPT_COST: '4' });
      try {
        const res = await fetch(`${gw.url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'local-admin', password: PASSWORD }) });
        assert.equal(res.status, 200);
      } finally {
        await gw.stop();
      }
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
