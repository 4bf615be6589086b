// Attack-first: each hole named in the transparency review, written before its fix and seen to fail.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { createCheckpointer } from '../../src/audit/checkpoints.js';
import { createLogger } from '../../src/logger.js';
import { tempSigningKey } from '../helpers/audit.js';
import { sampleEvent } from '../helpers/events.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { runTs } from '../helpers/processes.js';
import { createTestGateway, uniqueName, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';

describe('attack: deleting lines of the checkpoint export file', () => {
  let t: TestDatabase;
  let key: ReturnType<typeof tempSigningKey>;
  let file: string;

  before(async () => {
    key = tempSigningKey();
    file = path.join(key.dir, 'checkpoints.jsonl');
    t = await createTestDatabase();
    const writer = createChainWriter(t.db, { batchMax: 4, writeTimeoutMs: 5000 });
    const checkpointer = createCheckpointer({
      db: t.db, writer, key, file, everyRecords: 5, everySeconds: 3600, logger: createLogger('silent'), origin: 'attack.example/log',
    });
    for (let i = 1; i <= 20; i++) await writer.recordEvent(sampleEvent(i));
    await writer.close();
    await checkpointer.close();
    assert.equal(fs.readFileSync(file, 'utf8').trim().split('\n').length, 4, 'four checkpoints exported');
  });
  after(async () => {
    await t.drop();
    fs.rmSync(key.dir, { recursive: true, force: true });
  });

  const verify = (checkpointFile: string) =>
    runTs('src/cli/audit-verify.ts', ['--json', '--database-url', t.url, '--trusted-key', key.file, '--checkpoint-file', checkpointFile]);

  /** A copy of the export file without the lines `drop` selects. */
  function without(drop: (index: number, count: number) => boolean): string {
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    const copy = path.join(key.dir, `cut-${Math.random().toString(36).slice(2)}.jsonl`);
    fs.writeFileSync(copy, lines.filter((_, i) => !drop(i, lines.length)).map((l) => `${l}\n`).join(''));
    return copy;
  }

  it('when the file is untouched, then audit:verify exits 0', async () => {
    const run = await verify(file);
    assert.equal(run.code, 0, run.stdout + run.stderr);
  });

  it("when the export file's newest line is deleted, then audit:verify exits 1 naming the export file", async () => {
    const run = await verify(without((i, n) => i === n - 1));
    assert.equal(run.code, 1, `deleting the newest line went unnoticed: ${run.stdout}${run.stderr}`);
    assert.match(run.stdout, /export_truncated/);
  });

  it("when the export file's newest two lines are deleted, then audit:verify exits 1", async () => {
    const run = await verify(without((i, n) => i >= n - 2));
    assert.equal(run.code, 1, `deleting the newest lines went unnoticed: ${run.stdout}${run.stderr}`);
    assert.match(run.stdout, /export_truncated/);
  });

  it('when a middle line of the export file is deleted, then audit:verify exits 1 naming the broken line chain', async () => {
    const run = await verify(without((i) => i === 1));
    assert.equal(run.code, 1, `deleting a middle line went unnoticed: ${run.stdout}${run.stderr}`);
    assert.match(run.stdout, /export_chain_broken/);
  });
});

describe('attack: the checkpoint public key is published nowhere', () => {
  let gw: TestGateway;
  let token: string;

  before(async () => {
    gw = await createTestGateway();
    const username = uniqueName('key-reader');
    await gw.addUser(username, PASSWORD, ['security']);
    token = (await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200)).body.access_token as string;
  });
  after(async () => {
    await gw.close();
  });

  it('when a reader asks the gateway for the checkpoint key, then GET /audit-log/key answers one note verifier key line', async () => {
    const res = await request(gw.app).get('/audit-log/key').set('Authorization', `Bearer ${token}`);
    assert.equal(res.status, 200, `the key is not served: ${res.status}`);
    assert.match(res.headers['content-type'] ?? '', /^text\/plain/);
    assert.match(res.text, /^[^+\s]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*\n?$/);
  });

  it('when an operator asks for it, then `npm run audit:key -- --key FILE` prints the same line', async () => {
    const run = await runTs('src/cli/audit-key.ts', ['--key', gw.setup.env.AUDIT_SIGNING_KEY_FILE!], { AUDIT_LOG_ORIGIN: 'authtrail.local/audit-log' });
    assert.equal(run.code, 0, run.stderr);
    const served = (await request(gw.app).get('/audit-log/key').set('Authorization', `Bearer ${token}`).expect(200)).text;
    assert.equal(run.stdout.trim(), served.trim());
  });
});

describe('attack: there is no read-only auditor role', () => {
  let gw: TestGateway;
  let auditor: string;

  before(async () => {
    gw = await createTestGateway();
    const username = uniqueName('auditor');
    await gw.addUser(username, PASSWORD, ['auditor']);
    auditor = (await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200)).body.access_token as string;
  });
  after(async () => {
    await gw.close();
  });

  it('when an auditor reads history, lockouts, checkpoints and verification, then each answers 200', async () => {
    for (const url of ['/admin/login-events', '/admin/login-events/summary', '/admin/lockouts', '/admin/audit/checkpoints', '/admin/audit/verify']) {
      const res = await request(gw.app).get(url).set('Authorization', `Bearer ${auditor}`);
      assert.equal(res.status, 200, `${url}: ${res.status} ${res.text}`);
    }
  });

  it('when an auditor tries to change anything, then each answers 403', async () => {
    const victim = uniqueName('victim');
    const userId = await gw.addUser(victim, PASSWORD);
    const attempts = [
      request(gw.app).delete(`/admin/lockouts/${encodeURIComponent(victim)}`),
      request(gw.app).post('/admin/users').send({ username: uniqueName('new'), password: PASSWORD }),
      request(gw.app).post(`/admin/users/${userId}/disable`),
      request(gw.app).put(`/admin/users/${userId}/roles`).send({ roles: ['admin'] }),
      request(gw.app).post(`/admin/users/${userId}/sessions/revoke`),
      request(gw.app).get('/admin/users'),
    ];
    for (const attempt of attempts) {
      const res = await attempt.set('Authorization', `Bearer ${auditor}`);
      assert.equal(res.status, 403, `${(res as unknown as { req: { method: string; path: string } }).req.method} ${(res as unknown as { req: { path: string } }).req.path}: ${res.status}`);
    }
  });
});
