import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import request from 'supertest';
import { ALERT_CURSOR, ALERT_LEASE, startAlertEngine } from '../../src/alerts/engine.js';
import { loadAlertRules } from '../../src/alerts/rules.js';
import { EntryReader, manifestFileName, parseManifestText, recordsFileName, segmentStem, signManifest, type ArchiveEntry } from '../../src/audit/archive-format.js';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { createCheckpointer, readCheckpointNote } from '../../src/audit/checkpoints.js';
import { formatMicros } from '../../src/audit/clock.js';
import { FollowGapError, acquireLease, readCursor, readRecordsAfter, releaseLease, saveCursor } from '../../src/audit/follow.js';
import { leafHash, verifyInclusion } from '../../src/audit/merkle.js';
import { createVerificationService, type VerificationService } from '../../src/audit/verification.js';
import { createLogger } from '../../src/logger.js';
import { auditReportCli } from '../../src/report/cli.js';
import type { ReportData } from '../../src/report/model.js';
import { tempSigningKey, trustOnly } from '../helpers/audit.js';
import { sampleEvent } from '../helpers/events.js';
import { waitFor } from '../helpers/gateway.js';
import { adminQuery, asSuperuser, createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { ROOT, runTs, type Finished } from '../helpers/processes.js';
import { createTestGateway, uniqueName, type TestGateway } from '../helpers/test-gateway.js';
import { checkpointNow } from '../helpers/transparency.js';

const PASSWORD = 'correct horse battery staple';
/** Four closed months, 40 records each: seq 1–40 April, 41–80 May, 81–120 June, 121–160 July 2026. */
const MONTHS = ['2026-04', '2026-05', '2026-06', '2026-07'];
const PER_MONTH = 40;
const ARCHIVED = MONTHS.length * PER_MONTH;
const stemOf = (month: number): string => segmentStem(month * PER_MONTH + 1, (month + 1) * PER_MONTH);

/** Every entry of a segment's records file, read back as the verifier reads it (views into one buffer, so they can be edited in place). */
function readEntries(file: string): { data: Buffer; entries: ArchiveEntry[] } {
  const data = zlib.gunzipSync(fs.readFileSync(file));
  const reader = new EntryReader();
  const entries = reader.push(data);
  reader.end();
  return { data, entries };
}

interface VerifyJson {
  valid: boolean;
  checked: number;
  head_seq: number;
  first_invalid_seq?: number;
  problem?: string;
  detail?: string;
  tree: { valid: boolean; leaves_checked: number; problem?: string };
  archive?: { valid: boolean; segments: number; last_seq: number; records_checked: boolean; records: number; checkpoints_checked: number; problem?: string };
}

const parsed = (run: Finished): VerifyJson => {
  assert.ok(run.stdout.trim().startsWith('{'), `no JSON: ${run.stdout} ${run.stderr}`);
  return JSON.parse(run.stdout) as VerifyJson;
};

describe('audit archive: monthly partitions archived as signed segments, dropped, and the whole history still verifies', () => {
  let t: TestDatabase;
  let gw: TestGateway;
  let key: ReturnType<typeof tempSigningKey>;
  let archiveDir: string;
  let scratch: string;
  const role = `authtrail_app_${crypto.randomBytes(4).toString('hex')}`;

  const archive = (args: string[] = [], url = t.url): Promise<Finished> =>
    runTs('src/cli/audit-archive.ts', ['--database-url', url, '--signing-key', key.file, '--archive-dir', archiveDir, '--json', ...args]);
  const verify = (args: string[] = []): Promise<Finished> => runTs('src/cli/audit-verify.ts', ['--database-url', t.url, '--trusted-key', key.file, '--json', ...args]);
  /** A copy of the archive directory for one tampering. */
  const copyArchive = (): string => {
    const dir = fs.mkdtempSync(path.join(scratch, 'copy-'));
    fs.cpSync(archiveDir, dir, { recursive: true });
    return dir;
  };

  before(async () => {
    key = tempSigningKey();
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-archive-'));
    archiveDir = path.join(scratch, 'archive');
    t = await createTestDatabase();
    // The closed months' partitions (the gateway makes only the current month and the next ones).
    for (const month of MONTHS) await t.db.query('SELECT audit_log_add_month($1::timestamptz)', [`${month}-15T00:00:00Z`]);
    // Records written through the chain writer with a clock in those months, signed every 10 records.
    let micros = 0n;
    const writer = createChainWriter(t.db, { batchMax: 16, writeTimeoutMs: 10_000, clock: () => formatMicros((micros += 1000n)) });
    const checkpointer = createCheckpointer({
      db: t.db, writer, key, file: path.join(scratch, 'checkpoints.jsonl'), everyRecords: 10, everySeconds: 3600, logger: createLogger('silent'),
    });
    for (const [m, month] of MONTHS.entries()) {
      micros = BigInt(Date.parse(`${month}-10T00:00:00Z`)) * 1000n;
      for (let i = 0; i < PER_MONTH; i++) await writer.recordEvent(sampleEvent(m * PER_MONTH + i));
    }
    await writer.close();
    await checkpointer.close();
    // Then the gateway, with the same checkpoint key, writes the hot records of today.
    gw = await createTestGateway({ t, env: { AUDIT_SIGNING_KEY_FILE: key.file } });
    await gw.addUser(uniqueName('security'), PASSWORD, ['security']);
    await checkpointNow(gw);
  });

  after(async () => {
    await gw?.close();
    await t?.drop();
    await adminQuery(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
    fs.rmSync(scratch, { recursive: true, force: true });
    fs.rmSync(key.dir, { recursive: true, force: true });
  });

  it('when the records are written, then each closed month holds a dense seq range in its own partition and nothing is in the DEFAULT partition', async () => {
    const { rows } = await t.db.query<{ part: string; n: number; min: number; max: number }>(
      `SELECT tableoid::regclass::text AS part, count(*)::int AS n, min(seq) AS min, max(seq) AS max FROM audit_log GROUP BY 1 ORDER BY min(seq)`,
    );
    assert.deepEqual(rows.slice(0, 4), MONTHS.map((month, m) => ({ part: `audit_log_y${month.replace('-', 'm')}`, n: PER_MONTH, min: m * PER_MONTH + 1, max: (m + 1) * PER_MONTH })));
    assert.equal(rows.length, 5, 'and this month');
    const stray = await t.db.query<{ n: number }>('SELECT audit_log_default_rows()::int AS n');
    assert.equal(stray.rows[0]!.n, 0);
  });

  it('when the gateway runs as the least-privilege role, then it can have partitions made and read the archive table, but cannot detach, drop or truncate a partition, and audit:archive under it drops nothing (exit 2)', async () => {
    await adminQuery(`CREATE ROLE ${role} LOGIN`);
    await adminQuery(`GRANT CONNECT ON DATABASE ${t.name} TO ${role}`);
    await adminQuery(fs.readFileSync(path.join(ROOT, 'docs/runtime-role.sql'), 'utf8').replaceAll('authtrail_app', role), [], t.name);
    const app = t.open({ user: role });
    await app.query('SELECT audit_log_ensure_partitions(3)');
    await app.query('SELECT count(*) FROM audit_archives');
    for (const statement of [
      'DROP TABLE audit_log_y2026m04',
      'ALTER TABLE audit_log DETACH PARTITION audit_log_y2026m04',
      'TRUNCATE audit_log_y2026m04',
      'DELETE FROM audit_log WHERE seq = 1',
      'DELETE FROM audit_archives',
      "SELECT audit_log_add_month('2020-01-01')",
    ]) {
      await assert.rejects(app.query(statement), /must be owner|permission denied/, statement);
    }
    const run = await archive(['--archive-dir', path.join(scratch, 'as-runtime-role')], t.url.replace('//root@', `//${role}@`));
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /does not own audit_log/);
    const { rows } = await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log WHERE seq <= $1', [ARCHIVED]);
    assert.equal(rows[0]!.n, ARCHIVED, 'every record is still in the database');
  });

  it('when audit:archive runs, then the four closed months become verified segments and their partitions are dropped, never deleted from', async () => {
    const run = await archive();
    assert.equal(run.code, 0, run.stderr);
    const summary = JSON.parse(run.stdout) as { archived: Array<{ partition: string; segment: string; records: number }>; archived_through_seq: number; due_for_deletion: unknown[]; kept: unknown[] };
    assert.deepEqual(summary.archived.map((a) => [a.partition, a.segment, a.records]), MONTHS.map((month, m) => [`audit_log_y${month.replace('-', 'm')}`, stemOf(m), PER_MONTH]));
    assert.equal(summary.archived_through_seq, ARCHIVED);
    assert.deepEqual(summary.due_for_deletion, [], 'April is younger than the 400-day retention');
    assert.deepEqual(fs.readdirSync(archiveDir).sort(), MONTHS.flatMap((_, m) => [manifestFileName(stemOf(m)), recordsFileName(stemOf(m))]).sort());
    const { rows } = await t.db.query<{ first: number; n: number }>('SELECT min(seq) AS first, count(*)::int AS n FROM audit_log');
    assert.equal(rows[0]!.first, ARCHIVED + 1);
    const parts = await t.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE 'audit_log_y2026m0%'`);
    assert.equal(parts.rows[0]!.n, 0);
    const recorded = await t.db.query<{ segment: string }>('SELECT segment FROM audit_archives ORDER BY first_seq');
    assert.deepEqual(recorded.rows.map((r) => r.segment), MONTHS.map((_, m) => stemOf(m)));
    // The segment describes itself: the manifest names its records file's hash, range and chain.
    const manifest = parseManifestText(fs.readFileSync(path.join(archiveDir, manifestFileName(stemOf(1))), 'utf8').split('\n\n')[0]! + '\n');
    assert.equal(manifest?.firstSeq, 41);
    assert.equal(manifest?.records, PER_MONTH);
    assert.equal(crypto.createHash('sha256').update(fs.readFileSync(path.join(archiveDir, recordsFileName(stemOf(1))))).digest('hex'), manifest?.fileSha256.toString('hex'));
    // A second run finds nothing due and changes nothing.
    const again = await archive();
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual((JSON.parse(again.stdout) as { archived: unknown[] }).archived, []);
  });

  it('when the whole history is verified with --archive, and the database alone without it, then both pass and say what they checked', async () => {
    const [full, databaseOnly] = await Promise.all([verify(['--archive', archiveDir]), verify()]);
    assert.equal(full.code, 0, full.stdout + full.stderr);
    const f = parsed(full);
    assert.equal(f.valid, true);
    assert.deepEqual(
      { ...f.archive, checkpoints_checked: f.archive!.checkpoints_checked > 0 },
      { valid: true, segments: 4, last_seq: ARCHIVED, records_checked: true, records: ARCHIVED, checkpoints_checked: true },
    );
    assert.equal(f.tree.leaves_checked, f.head_seq, 'the tree is recomputed over archived and hot records');
    assert.equal(f.checked, f.head_seq - ARCHIVED);

    assert.equal(databaseOnly.code, 0, databaseOnly.stdout + databaseOnly.stderr);
    const d = parsed(databaseOnly);
    assert.deepEqual(d.archive, { valid: true, segments: 4, last_seq: ARCHIVED, records_checked: false, records: 0, checkpoints_checked: 0 });
    assert.equal(d.tree.leaves_checked, d.head_seq - ARCHIVED);
    const human = await runTs('src/cli/audit-verify.ts', ['--database-url', t.url, '--trusted-key', key.file]);
    assert.match(human.stdout, new RegExp(`records 1\\.\\.${ARCHIVED} archived in 4 segments, manifests checked, records not`));
  });

  it("when the gateway is asked, then its full verification starts after the archive and an archived record's inclusion proof verifies from the segment's own bytes", async () => {
    const username = uniqueName('auditor');
    await gw.addUser(username, PASSWORD, ['auditor']);
    const token = (await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200)).body.access_token as string;
    const auth = { Authorization: `Bearer ${token}` };
    const report = (await request(gw.app).get('/admin/audit/verify?full=true').set(auth).expect(200)).body;
    assert.equal(report.valid, true, JSON.stringify(report));
    assert.equal(report.from_seq, ARCHIVED + 1);
    assert.equal((await request(gw.app).get('/admin/audit/verify').set(auth).expect(200)).body.valid, true);

    const seq = 57;
    const proof = (await request(gw.app).get(`/admin/audit/proof/${seq}`).set(auth).expect(200)).body;
    const entry = readEntries(path.join(archiveDir, recordsFileName(stemOf(1)))).entries.find((e) => e.seq === seq)!;
    const leaf = leafHash(entry.canonical);
    assert.equal(proof.leaf_hash, leaf.toString('base64'));
    const note = readCheckpointNote(proof.checkpoint as string)!;
    assert.ok(verifyInclusion(leaf, seq - 1, proof.tree_size as number, (proof.inclusion_proof as string[]).map((h) => Buffer.from(h, 'base64')), note.root));
  });

  describe('tampering with the archive is caught (exit 1, the problem named)', () => {
    const check = async (dir: string, expected: { problem: string; seq: number; detail?: RegExp }) => {
      const run = await verify(['--archive', dir]);
      assert.equal(run.code, 1, run.stdout + run.stderr);
      const r = parsed(run);
      assert.deepEqual([r.problem, r.first_invalid_seq], [expected.problem, expected.seq], r.detail);
      if (expected.detail) assert.match(r.detail!, expected.detail);
    };

    it('when a segment is missing, then archive_segment_missing at its first record', async () => {
      const dir = copyArchive();
      for (const name of [manifestFileName(stemOf(1)), recordsFileName(stemOf(1))]) fs.rmSync(path.join(dir, name));
      await check(dir, { problem: 'archive_segment_missing', seq: 41 });
      // The newest segment missing too: the database records it.
      const tail = copyArchive();
      for (const name of [manifestFileName(stemOf(3)), recordsFileName(stemOf(3))]) fs.rmSync(path.join(tail, name));
      await check(tail, { problem: 'archive_segment_missing', seq: 121, detail: /recorded in the database/ });
    });

    it('when a record in a segment is edited, then archive_file_mismatch names that record; re-signed with another key, archive_unknown_key', async () => {
      const dir = copyArchive();
      const file = path.join(dir, recordsFileName(stemOf(1)));
      const { data, entries } = readEntries(file);
      const target = entries.find((e) => e.seq === 50)!;
      const at = target.canonical.indexOf('Mozilla');
      target.canonical[at] = 'N'.charCodeAt(0);
      const edited = zlib.gzipSync(data);
      fs.writeFileSync(file, edited);
      await check(dir, { problem: 'archive_file_mismatch', seq: 50 });

      // The manifest rewritten for the edited file and signed with a key the auditor does not trust.
      const stranger = tempSigningKey();
      const manifestPath = path.join(dir, manifestFileName(stemOf(1)));
      const m = parseManifestText(fs.readFileSync(manifestPath, 'utf8').split('\n\n')[0]! + '\n')!;
      fs.writeFileSync(manifestPath, signManifest({ ...m, fileSha256: crypto.createHash('sha256').update(edited).digest(), fileSize: edited.length }, stranger.privateKey));
      await check(dir, { problem: 'archive_unknown_key', seq: 41 });
      fs.rmSync(stranger.dir, { recursive: true, force: true });
    });

    it('when two segments are swapped, then archive_out_of_order', async () => {
      const dir = copyArchive();
      for (const name of [manifestFileName, recordsFileName]) {
        const [a, b] = [path.join(dir, name(stemOf(1))), path.join(dir, name(stemOf(2)))];
        fs.renameSync(a, `${a}.x`);
        fs.renameSync(b, a);
        fs.renameSync(`${a}.x`, b);
      }
      await check(dir, { problem: 'archive_out_of_order', seq: 41, detail: /swapped, moved or substituted/ });
    });

    it('when a segment is substituted by another validly signed one (the real key, another segment\'s records), then archive_manifest_mismatch', async () => {
      const dir = copyArchive();
      // Someone holding the checkpoint key signs a manifest for June's range over July's records file.
      const june = parseManifestText(fs.readFileSync(path.join(dir, manifestFileName(stemOf(2))), 'utf8').split('\n\n')[0]! + '\n')!;
      const julyRecords = fs.readFileSync(path.join(dir, recordsFileName(stemOf(3))));
      fs.writeFileSync(path.join(dir, recordsFileName(stemOf(2))), julyRecords);
      fs.writeFileSync(
        path.join(dir, manifestFileName(stemOf(2))),
        signManifest({ ...june, fileSha256: crypto.createHash('sha256').update(julyRecords).digest(), fileSize: julyRecords.length }, key.privateKey),
      );
      await check(dir, { problem: 'archive_manifest_mismatch', seq: 81 });
    });

    it('when the hot log does not continue the archive, then archive_hot_discontinuity at its first record, with and without --archive', async () => {
      await asSuperuser(t.name, 'UPDATE audit_log SET prev_hash = $1 WHERE seq = $2', [crypto.randomBytes(32), ARCHIVED + 1]);
      try {
        await check(archiveDir, { problem: 'archive_hot_discontinuity', seq: ARCHIVED + 1 });
        const run = await verify();
        assert.equal(run.code, 1);
        assert.deepEqual([parsed(run).problem, parsed(run).first_invalid_seq], ['archive_hot_discontinuity', ARCHIVED + 1]);
      } finally {
        const { rows } = await t.db.query<{ hash: Buffer }>('SELECT end_hash AS hash FROM audit_archives ORDER BY first_seq DESC LIMIT 1');
        await asSuperuser(t.name, 'UPDATE audit_log SET prev_hash = $1 WHERE seq = $2', [rows[0]!.hash, ARCHIVED + 1]);
      }
    });
  });
});

/** Records through the chain writer: `perMonth` in each closed month (its partition made first), then `hot` of today. */
async function seedMonths(db: TestDatabase['db'], months: readonly string[], perMonth: number, hot: number): Promise<void> {
  for (const month of months) await db.query('SELECT audit_log_add_month($1::timestamptz)', [`${month}-15T00:00:00Z`]);
  let micros = 0n;
  const past = createChainWriter(db, { batchMax: 8, writeTimeoutMs: 10_000, clock: () => formatMicros((micros += 1000n)) });
  for (const [m, month] of months.entries()) {
    micros = BigInt(Date.parse(`${month}-10T00:00:00Z`)) * 1000n;
    for (let i = 0; i < perMonth; i++) await past.recordEvent(sampleEvent(m * perMonth + i));
  }
  await past.close();
  const now = createChainWriter(db, { batchMax: 8, writeTimeoutMs: 10_000 });
  for (let i = 0; i < hot; i++) await now.recordEvent(sampleEvent(i));
  await now.close();
}

describe('audit:archive refuses a partition whose records do not verify, and drops nothing of it (exit 1)', () => {
  const dbs: TestDatabase[] = [];
  let key: ReturnType<typeof tempSigningKey>;
  before(() => {
    key = tempSigningKey();
  });
  after(async () => {
    await Promise.all(dbs.map((d) => d.drop()));
    fs.rmSync(key.dir, { recursive: true, force: true });
  });

  const scenario = async (tamper: string, params: unknown[]) => {
    const t = await createTestDatabase();
    dbs.push(t);
    await seedMonths(t.db, ['2026-05', '2026-06'], 10, 2);
    await asSuperuser(t.name, tamper, params);
    const dir = path.join(key.dir, `archive-${dbs.length}`);
    const run = await runTs('src/cli/audit-archive.ts', ['--database-url', t.url, '--signing-key', key.file, '--archive-dir', dir, '--json']);
    return { t, dir, run, summary: JSON.parse(run.stdout) as { archived: Array<{ segment: string }>; refused?: { partition: string; detail: string } } };
  };

  it('when a record of a closed month was edited, then that month is refused and neither written nor dropped', async () => {
    const { t, dir, run, summary } = await scenario(`UPDATE audit_log SET outcome = 'success' WHERE seq = $1`, [5]);
    assert.equal(run.code, 1, run.stderr);
    assert.deepEqual(summary.archived, []);
    assert.equal(summary.refused?.partition, 'audit_log_y2026m05');
    assert.match(summary.refused.detail, /record 5 does not hash to its stored hash/);
    assert.deepEqual(fs.readdirSync(dir), [], 'no segment file, not even a temporary one');
    const { rows } = await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log');
    assert.equal(rows[0]!.n, 22);
  });

  it('when a record of a closed month was deleted, then the months before are archived and that month is refused as not dense', async () => {
    const { t, run, summary } = await scenario('DELETE FROM audit_log WHERE seq = $1', [15]);
    assert.equal(run.code, 1, run.stderr);
    assert.deepEqual(summary.archived.map((a) => a.segment), [segmentStem(1, 10)]);
    assert.equal(summary.refused?.partition, 'audit_log_y2026m06');
    assert.match(summary.refused.detail, /not dense/);
    const { rows } = await t.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log_y2026m06`);
    assert.equal(rows[0]!.n, 9, 'the refused partition is still there');
  });
});

describe('audit:archive after a run that stopped between writing a segment and dropping its partition', () => {
  let first: TestDatabase;
  let second: TestDatabase;
  let key: ReturnType<typeof tempSigningKey>;
  before(async () => {
    key = tempSigningKey();
    first = await createTestDatabase();
    await seedMonths(first.db, ['2026-05'], 12, 2);
    await first.db.close();
    // The same database as it was before the first archive run (a copy), for the run to be repeated on.
    second = await createTestDatabase({ template: first.name });
  });
  after(async () => {
    await Promise.all([first.drop(), second.drop()]);
    fs.rmSync(key.dir, { recursive: true, force: true });
  });

  it('when the segment files are already there, then the verifier ignores them until the database records them, and the next run keeps them (same bytes) and drops the partition', async () => {
    const dir = path.join(key.dir, 'archive');
    const run = (t: TestDatabase) => runTs('src/cli/audit-archive.ts', ['--database-url', t.url, '--signing-key', key.file, '--archive-dir', dir, '--json']);
    assert.equal((await run(first)).code, 0);
    const written = fs.readdirSync(dir).sort();
    const bytes = written.map((f) => fs.readFileSync(path.join(dir, f)));

    // `second` has the files of its partition in the directory but no record of them: as after an interrupted run.
    const verify = await runTs('src/cli/audit-verify.ts', ['--database-url', second.url, '--trusted-key', key.file, '--archive', dir, '--json']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.equal((JSON.parse(verify.stdout) as { archive: { segments: number } }).archive.segments, 0);

    const again = await run(second);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual((JSON.parse(again.stdout) as { archived: Array<{ segment: string }> }).archived.map((a) => a.segment), [segmentStem(1, 12)]);
    assert.deepEqual(fs.readdirSync(dir).sort(), written);
    written.forEach((f, i) => assert.ok(fs.readFileSync(path.join(dir, f)).equals(bytes[i]!), `${f} unchanged`));
  });
});

describe('after an archive run: followers, the gateway\'s incremental check and the compliance report', () => {
  let t: TestDatabase;
  let key: ReturnType<typeof tempSigningKey>;
  let verification: VerificationService;

  before(async () => {
    key = tempSigningKey();
    t = await createTestDatabase();
    for (const month of ['2026-05', '2026-06']) await t.db.query('SELECT audit_log_add_month($1::timestamptz)', [`${month}-15T00:00:00Z`]);
    let micros = BigInt(Date.parse('2026-05-10T00:00:00Z')) * 1000n;
    const clock = () => formatMicros((micros += 1000n));
    // May's 10 records end at a signed checkpoint; June's 10 have none; then 2 records of today.
    const may = createChainWriter(t.db, { batchMax: 8, writeTimeoutMs: 10_000, clock });
    const checkpointer = createCheckpointer({
      db: t.db, writer: may, key, file: path.join(key.dir, 'checkpoints.jsonl'), everyRecords: 10, everySeconds: 3600, logger: createLogger('silent'),
    });
    for (let i = 0; i < 10; i++) await may.recordEvent(sampleEvent(i));
    await may.close();
    await checkpointer.close();
    micros = BigInt(Date.parse('2026-06-10T00:00:00Z')) * 1000n;
    const june = createChainWriter(t.db, { batchMax: 8, writeTimeoutMs: 10_000, clock });
    for (let i = 10; i < 20; i++) await june.recordEvent(sampleEvent(i));
    await june.close();
    const now = createChainWriter(t.db, { batchMax: 8, writeTimeoutMs: 10_000 });
    for (let i = 0; i < 2; i++) await now.recordEvent(sampleEvent(i));
    await now.close();

    // Before the archive runs, the gateway's integrity check has matched the checkpoint at 10, and a
    // follower (here the alert engine's cursor) has handled records 1–5.
    verification = createVerificationService({ db: t.db, trustedKeys: trustOnly(key) });
    const first = await verification.verify({ full: false });
    assert.deepEqual([first.valid, verification.stats().lastVerifiedSeq], [true, 10]);
    const lease = (await acquireLease(t.db, ALERT_LEASE, 'before-the-archive', 60_000))!;
    await saveCursor(t.db, lease, ALERT_CURSOR, 5);
    await releaseLease(t.db, lease);

    const run = await runTs('src/cli/audit-archive.ts', ['--database-url', t.url, '--signing-key', key.file, '--archive-dir', path.join(key.dir, 'archive'), '--json']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal((JSON.parse(run.stdout) as { archived_through_seq: number }).archived_through_seq, 20);
  });
  after(async () => {
    await t?.drop();
    fs.rmSync(key.dir, { recursive: true, force: true });
  });

  it("when a follower's cursor is behind the first record still in the database, then its next read is a gap, never a skip", async () => {
    await assert.rejects(readRecordsAfter(t.db, 5, 10), (err: unknown) => err instanceof FollowGapError && err.expected === 6 && err.found === 21);
    assert.deepEqual((await readRecordsAfter(t.db, 20, 10)).map((r) => r.seq), [21, 22]);
  });

  it('when the alert engine finds the records after its cursor archived, then it logs them as skipped at error level and goes on from the first record in the database', async () => {
    const lines: Array<{ level: number; msg: string; missing_from?: number; next_in_database?: number }> = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
        done();
      },
    });
    const writer = createChainWriter(t.db, { batchMax: 8, writeTimeoutMs: 10_000 });
    const engine = startAlertEngine({ db: t.db, writer, rules: loadAlertRules(undefined), logger: pino({ level: 'info' }, sink), pollIntervalMs: 50, leaseTtlMs: 1000 });
    try {
      await waitFor('the alert engine past the gap', async () => ((await readCursor(t.db, ALERT_CURSOR)) >= 22 ? true : undefined), 15_000);
    } finally {
      await engine.close();
      await writer.close();
    }
    const skipped = lines.find((l) => l.msg === 'alert engine skipped records archived before it judged them');
    assert.deepEqual([skipped?.level, skipped?.missing_from, skipped?.next_in_database], [50, 6, 21]);
  });

  it('when the incremental check last matched a checkpoint that is now archived, then it starts after the archive rather than reporting a gap', async () => {
    const next = await verification.verify({ full: false });
    assert.equal(next.valid, true, JSON.stringify(next));
    assert.equal(next.from_seq, 21);
  });

  it('when a report covers an archived period, then it says so and counts only the records in the database; a period after the archive is complete', async () => {
    const report = async (from: string, to: string): Promise<{ data: ReportData; html: string; out: string }> => {
      const dir = fs.mkdtempSync(path.join(key.dir, 'report-'));
      let out = '';
      let err = '';
      const code = await auditReportCli(['--from', from, '--to', to, '--out', dir, '--database-url', t.url, '--key', key.file], {
        env: {},
        out: (line) => (out += `${line}\n`),
        err: (line) => (err += `${line}\n`),
      });
      assert.equal(code, 0, err);
      return { data: JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8')) as ReportData, html: fs.readFileSync(path.join(dir, 'report.html'), 'utf8'), out };
    };
    const archived = await report('2026-05-01T00:00:00Z', '2026-07-01T00:00:00Z');
    const { records } = archived.data;
    assert.deepEqual([records.count, records.complete, records.archived?.through_seq, records.head_seq_at_end], [0, false, 20, 20]);
    assert.match(records.archived!.through_occurred_at, /^2026-06-10T00:00:00\./);
    assert.deepEqual(archived.data.integrity.archive, { valid: true, segments: 2, last_seq: 20 });
    assert.equal(archived.data.integrity.valid, true);
    assert.match(archived.html, /Part of this period is archived: records 1 to 20/);
    assert.match(archived.out, /PERIOD PARTLY ARCHIVED: records up to seq 20/);

    const hot = await report('2026-07-01T00:00:00Z', new Date(Date.now() - 1000).toISOString());
    assert.deepEqual([hot.data.records.complete, hot.data.records.first_seq], [true, 21]);
    assert.doesNotMatch(hot.html, /Part of this period is archived/);
  });
});
