import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { formatMicros } from '../../src/audit/clock.js';
import { listAuditPartitions, startPartitionMaintenance } from '../../src/audit/partitions.js';
import { verifyChain } from '../../src/audit/verify-chain.js';
import { verifyTree } from '../../src/audit/verify-tree.js';
import { loadMigrations, migrate } from '../../src/db/migrate.js';
import { sampleEvent } from '../helpers/events.js';
import { writeSampleEvents } from '../helpers/chain-fixture.js';
import { adminQuery, createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

describe('migration 013 on a log that already holds records: attached as the legacy partition, nothing copied', () => {
  let t: TestDatabase;
  const role = `authtrail_app_${crypto.randomBytes(4).toString('hex')}`;
  before(async () => {
    t = await createTestDatabase({ migrate: false });
    // Every other migration first, later ones too: a database migrated before 013 existed.
    await migrate(t.db, loadMigrations().filter((m) => m.version !== 13));
    // Records of May and of today, written by the chain writer against the unpartitioned table.
    let micros = BigInt(Date.parse('2026-05-03T00:00:00Z')) * 1000n;
    const past = createChainWriter(t.db, { batchMax: 8, writeTimeoutMs: 10_000, clock: () => formatMicros((micros += 1000n)) });
    for (let i = 0; i < 20; i++) await past.recordEvent(sampleEvent(i));
    await past.close();
    const now = createChainWriter(t.db, { batchMax: 8, writeTimeoutMs: 10_000 });
    for (let i = 0; i < 5; i++) await now.recordEvent(sampleEvent(i));
    await now.close();
    await adminQuery(`CREATE ROLE ${role} LOGIN`);
    await adminQuery(`GRANT CONNECT ON DATABASE ${t.name} TO ${role}`);
    await adminQuery(`GRANT SELECT, INSERT ON audit_log, audit_checkpoints, audit_cosignatures TO ${role}; GRANT SELECT, INSERT, UPDATE ON audit_tiles TO ${role}`, [], t.name);
  });
  after(async () => {
    await t.drop();
    await adminQuery(`DROP ROLE IF EXISTS ${role}`);
  });

  it('when migration 013 is applied, then the old table is the legacy partition with every row in place, guarded, indexed and granted as before, and the chain goes on', async () => {
    const { rows: before } = await t.db.query<{ oid: number; n: number }>(`SELECT 'audit_log'::regclass::oid::int AS oid, (SELECT count(*)::int FROM audit_log) AS n`);
    assert.deepEqual(await migrate(t.db), ['013_audit_partitions']);
    const { rows: legacy } = await t.db.query<{ oid: number; n: number }>(`SELECT 'audit_log_legacy'::regclass::oid::int AS oid, (SELECT count(*)::int FROM audit_log_legacy) AS n`);
    assert.deepEqual(legacy[0], before[0], 'the same table (same oid), the same rows: nothing copied');

    const partitions = await listAuditPartitions(t.db);
    const now = new Date();
    const thisMonth = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
    assert.deepEqual(partitions[0], { name: 'audit_log_legacy', isDefault: false, fromMs: undefined, toMs: Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1) });
    assert.ok(partitions.some((p) => p.fromMs === Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)), 'the next months are made ahead');
    assert.ok(!partitions.some((p) => p.fromMs === thisMonth), 'the current month stays in the legacy partition');
    assert.equal(partitions.at(-1)?.isDefault, true);

    for (const statement of ['UPDATE audit_log_legacy SET reason = NULL WHERE seq = 1', 'DELETE FROM audit_log_legacy WHERE seq = 1', 'TRUNCATE audit_log_legacy', 'TRUNCATE audit_log', 'DELETE FROM audit_log WHERE seq = 2']) {
      await assert.rejects(t.db.query(statement), /append-only/, statement);
    }
    const { rows: indexes } = await t.db.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'audit_log_legacy'::regclass ORDER BY 1`,
    );
    for (const name of ['pkey', 'seq_key', 'event_id_key', 'prev_hash_key', 'hash_key', 'account_idx', 'user_id_idx', 'ip_idx', 'device_id_idx', 'event_type_idx', 'occurred_at_idx']) {
      assert.ok(indexes.some((i) => i.name === `audit_log_legacy_${name}`), `index ${name}: ${indexes.map((i) => i.name).join(', ')}`);
    }

    // The runtime role keeps reading and appending, and may have partitions made.
    const app = t.open({ user: role });
    await writeSampleEvents(app, 5, { writeTimeoutMs: 10_000 });
    await app.query('SELECT audit_log_ensure_partitions(3)');
    await app.query('SELECT count(*) FROM audit_archives');
    const chain = await verifyChain(app, { trustedKeys: new Map() });
    assert.deepEqual([chain.valid, chain.checked, chain.head_seq], [true, 30, 30]);
    const tree = await verifyTree(app, { roots: new Map() });
    assert.deepEqual([tree.valid, tree.leaves_checked], [true, 30]);
  });
});

describe('partitions made ahead, and the DEFAULT partition as an alarm', () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
  });
  after(async () => {
    await t.drop();
  });

  it('when a record is dated where no partition exists, then it is stored in the DEFAULT partition and the partition check reports it at error level', async () => {
    // A month before the first partition (the log is empty, so the time is the first): a time
    // years ahead, where no partition exists either, is refused outright (migration 017).
    const writer = createChainWriter(t.db, { batchMax: 8, writeTimeoutMs: 10_000, clock: () => '2020-01-01T00:00:00.000000Z' });
    const committed = await writer.recordEvent(sampleEvent(1));
    await writer.close();
    const { rows } = await t.db.query<{ part: string }>('SELECT tableoid::regclass::text AS part FROM audit_log WHERE seq = $1', [committed.seq]);
    assert.equal(rows[0]!.part, 'audit_log_default');

    const lines: Array<{ level: number; msg: string; rows?: number }> = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
        done();
      },
    });
    const monitor = startPartitionMaintenance(t.db, pino({ level: 'info' }, sink));
    try {
      assert.equal(monitor.defaultRows(), undefined);
      const result = await monitor.check();
      assert.deepEqual(result, { created: [], defaultRows: 1 }, 'the migration made the coming months already');
      assert.equal(monitor.defaultRows(), 1);
      const alarm = lines.find((l) => l.level === 50);
      assert.match(alarm?.msg ?? '', /DEFAULT partition/);
      assert.equal(alarm?.rows, 1);
    } finally {
      monitor.stop();
    }
  });

  it('when the partition function is asked for a bad number of months, then it refuses', async () => {
    await assert.rejects(t.db.query('SELECT audit_log_ensure_partitions(25)'), /months_ahead must be 0 to 24/);
    const made = await t.db.query<{ name: string }>('SELECT name FROM audit_log_ensure_partitions(5) AS name');
    assert.equal(made.rows.length, 2, 'two more months beyond the three made by the migration');
  });
});
