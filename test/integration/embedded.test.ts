import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { createCheckpointer } from '../../src/audit/checkpoints.js';
import { verifyChain } from '../../src/audit/verify-chain.js';
import { createEmbeddedDatabase, type Database } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { createLogger } from '../../src/logger.js';
import { tempSigningKey, trustOnly } from '../helpers/audit.js';
import { sampleEvent } from '../helpers/events.js';

describe('embedded mode (PGlite)', () => {
  let dir: string;
  let key: ReturnType<typeof tempSigningKey>;
  let checkpointFile: string;
  let db: Database;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-embedded-'));
    key = tempSigningKey();
    checkpointFile = path.join(dir, 'checkpoints.jsonl');
    db = await createEmbeddedDatabase(path.join(dir, 'pgdata'));
    await migrate(db);
  });
  after(async () => {
    await db.close().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(key.dir, { recursive: true, force: true });
  });

  it('when 300 records are appended concurrently, then seq is dense, links are unique and the chain verifies with its checkpoints', async () => {
    const writer = createChainWriter(db, { batchMax: 64, writeTimeoutMs: 10_000 });
    const checkpointer = createCheckpointer({ db, writer, key, file: checkpointFile, everyRecords: 100, everySeconds: 3600, logger: createLogger('silent') });
    const committed = await Promise.all(Array.from({ length: 300 }, (_, i) => writer.recordEvent(sampleEvent(i))));
    assert.deepEqual(committed.map((c) => c.seq).sort((a, b) => a - b), Array.from({ length: 300 }, (_, i) => i + 1));
    assert.ok(writer.stats().batches < 300, 'records were grouped into fewer transactions');
    await writer.close();
    await checkpointer.close();
    const { rows } = await db.query<{ n: number; links: number }>('SELECT count(*)::int AS n, count(DISTINCT prev_hash)::int AS links FROM audit_log');
    assert.deepEqual(rows[0], { n: 300, links: 300 });
    const result = await verifyChain(db, { trustedKeys: trustOnly(key), checkpointFile, batchSize: 64 });
    assert.equal(result.valid, true);
    assert.equal(result.head_seq, 300);
    assert.ok(result.checkpoints_checked >= 3);
  });

  it('when UPDATE, DELETE or TRUNCATE is tried, then the same triggers refuse it', async () => {
    for (const statement of ['UPDATE audit_log SET reason = NULL WHERE seq = 1', 'DELETE FROM audit_log WHERE seq = 1', 'TRUNCATE audit_log']) {
      await assert.rejects(db.query(statement), /append-only/, statement);
    }
  });

  it('when a second process opens the same data directory, then it is refused', async () => {
    // The lock names this process; a different live pid must be refused.
    const lock = path.join(dir, 'pgdata', 'gateway.pid');
    assert.equal(fs.readFileSync(lock, 'utf8'), String(process.pid));
    fs.writeFileSync(lock, String(process.ppid));
    await assert.rejects(createEmbeddedDatabase(path.join(dir, 'pgdata')), /in use by process/);
    fs.writeFileSync(lock, String(process.pid));
  });

  it('when the database is closed and reopened, then the chain persists and continues from its head', async () => {
    await db.close();
    db = await createEmbeddedDatabase(path.join(dir, 'pgdata'));
    assert.deepEqual(await migrate(db), []);
    const writer = createChainWriter(db, { batchMax: 8, writeTimeoutMs: 5000 });
    const next = await writer.recordEvent(sampleEvent(1));
    assert.equal(next.seq, 301);
    await writer.close();
    assert.equal((await verifyChain(db, { trustedKeys: trustOnly(key), checkpointFile })).valid, true);
  });

  it('when a record is edited with triggers disabled, then the verifier finds it', async () => {
    await db.exec(`SET session_replication_role = replica; UPDATE audit_log SET ip = '203.0.113.66' WHERE seq = 123; SET session_replication_role = origin;`);
    const result = await verifyChain(db, { trustedKeys: trustOnly(key), checkpointFile });
    assert.deepEqual([result.valid, result.first_invalid_seq, result.problem], [false, 123, 'hash_mismatch']);
  });
});
