import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { verifyChain } from '../../src/audit/verify-chain.js';
import { tempSigningKey, trustOnly } from '../helpers/audit.js';
import { sampleEvent } from '../helpers/events.js';
import { startGateway } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { runTs } from '../helpers/processes.js';

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
    const writer = createChainWriter(t.db, { batchMax: 8, writeTimeoutMs: 5000 });
    for (let i = 0; i < 5; i++) await writer.recordEvent(sampleEvent(i));
    await writer.close();
    const checkpointFile = path.join(key.dir, 'main.jsonl');
    const gw = await startGateway({
      DATABASE_URL: t.url, REDIS_URL, AUDIT_SIGNING_KEY_FILE: key.file, AUDIT_CHECKPOINT_FILE: checkpointFile, AUDIT_CHECKPOINT_EVERY_SECONDS: '3600',
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

  it('when started with no DATABASE_URL, then it runs embedded under DATA_DIR, warns it is single-instance, and a second instance is refused', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-main-'));
    const gw = await startGateway({ DATA_DIR: dataDir });
    try {
      assert.equal((await fetch(`${gw.url}/healthz`)).status, 200);
      const ready = (await (await fetch(`${gw.url}/readyz`)).json()) as { checks: Record<string, string> };
      assert.deepEqual(ready.checks, { database: 'ok', redis: 'embedded', audit_writer: 'ok' });
      assert.ok(gw.lines.some((l) => l.includes('embedded mode') && l.includes('one instance only')));
      assert.ok(fs.existsSync(path.join(dataDir, 'keys', 'audit-ed25519.pem')), 'the checkpoint key was generated');
      await assert.rejects(startGateway({ DATA_DIR: dataDir }), /in use by process/);
    } finally {
      assert.equal(await gw.stop(), 0, gw.stderr());
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('when the configuration is invalid, then start-up stops with one message naming each bad variable', async () => {
    const run = await runTs('src/main.ts', [], { PORT: 'abc', LOG_LEVEL: 'chatty', DATABASE_URL: 'mysql://x' });
    assert.equal(run.code, 1);
    for (const name of ['PORT', 'LOG_LEVEL', 'DATABASE_URL']) assert.match(run.stderr, new RegExp(`${name}:`));
    assert.match(run.stderr, /^Invalid configuration:/);
  });

  it('when the database is unreachable at start, then it exits non-zero with the reason', async () => {
    const run = await runTs('src/main.ts', [], {
      DATABASE_URL: 'postgres://root@127.0.0.1:1/none', AUDIT_SIGNING_KEY_FILE: key.file, DATABASE_CONNECT_TIMEOUT_MS: '500',
    });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /failed to start: .*ECONNREFUSED/);
  });
});
