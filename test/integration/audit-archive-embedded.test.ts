import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { loadSigningKey } from '../../src/audit/checkpoints.js';
import { formatMicros } from '../../src/audit/clock.js';
import { createEmbeddedDatabase } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { sampleEvent } from '../helpers/events.js';
import { runTs } from '../helpers/processes.js';

describe('audit archive on the embedded database (PGlite)', () => {
  let dataDir: string;
  let keyFile: string;
  before(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-archive-embedded-'));
    keyFile = path.join(dataDir, 'keys', 'audit-ed25519.pem');
    loadSigningKey(keyFile, { generate: true }); // what an embedded gateway generates at its first start
    const db = await createEmbeddedDatabase(path.join(dataDir, 'pgdata'));
    try {
      await migrate(db);
      for (const month of ['2026-05', '2026-06']) await db.query('SELECT audit_log_add_month($1::timestamptz)', [`${month}-15T00:00:00Z`]);
      let micros = 0n;
      const past = createChainWriter(db, { batchMax: 8, writeTimeoutMs: 10_000, clock: () => formatMicros((micros += 1000n)) });
      for (const [m, month] of ['2026-05', '2026-06'].entries()) {
        micros = BigInt(Date.parse(`${month}-10T00:00:00Z`)) * 1000n;
        for (let i = 0; i < 25; i++) await past.recordEvent(sampleEvent(m * 25 + i));
      }
      await past.close();
      const now = createChainWriter(db, { batchMax: 8, writeTimeoutMs: 10_000 });
      for (let i = 0; i < 3; i++) await now.recordEvent(sampleEvent(i));
      await now.close();
    } finally {
      await db.close();
    }
  });
  after(() => {
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('when audit:archive runs on a stopped gateway\'s data directory, then both months are archived and dropped, and audit:verify --archive verifies the whole history, the database alone from after the archive', async () => {
    const run = await runTs('src/cli/audit-archive.ts', ['--data-dir', dataDir, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const summary = JSON.parse(run.stdout) as { archived: Array<{ partition: string; first_seq: number; last_seq: number }>; archive_dir: string };
    assert.deepEqual(summary.archived.map((a) => [a.partition, a.first_seq, a.last_seq]), [['audit_log_y2026m05', 1, 25], ['audit_log_y2026m06', 26, 50]]);
    assert.equal(summary.archive_dir, path.join(dataDir, 'archive'), 'DATA_DIR/archive by default');

    const verify = await runTs('src/cli/audit-verify.ts', ['--data-dir', dataDir, '--trusted-key', keyFile, '--archive', summary.archive_dir, '--json']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    const result = JSON.parse(verify.stdout) as { valid: boolean; head_seq: number; checked: number; archive: { records: number; segments: number } };
    assert.deepEqual([result.valid, result.head_seq, result.checked, result.archive.records, result.archive.segments], [true, 53, 3, 50, 2]);

    // Without --archive: the recorded manifests, then the chain and the tree from the first record in the database.
    const alone = await runTs('src/cli/audit-verify.ts', ['--data-dir', dataDir, '--trusted-key', keyFile, '--json']);
    assert.equal(alone.code, 0, alone.stdout + alone.stderr);
    const database = JSON.parse(alone.stdout) as { valid: boolean; checked: number; tree: { valid: boolean; leaves_checked: number }; archive: { records_checked: boolean; last_seq: number } };
    assert.deepEqual([database.valid, database.checked, database.tree.valid, database.tree.leaves_checked, database.archive.records_checked, database.archive.last_seq], [true, 3, true, 3, false, 50]);
  });
});
