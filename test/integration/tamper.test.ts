import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GENESIS_HASH, chainHash, type ChainRecord } from '../../src/audit/canonical.js';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { createCheckpointer, signCheckpoint, type SigningKey } from '../../src/audit/checkpoints.js';
import { verifyChain, type VerifyResult } from '../../src/audit/verify-chain.js';
import { verifyChainAndTree } from '../../src/audit/verify-both.js';
import { createLogger } from '../../src/logger.js';
import { tempSigningKey, trustOnly } from '../helpers/audit.js';
import { sampleEvent } from '../helpers/events.js';
import { asSuperuser, createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { runTs } from '../helpers/processes.js';
import { normalizeUsername } from '../../src/users/usernames.js';

const RECORDS = 30;
const CHECKPOINT_EVERY = 10; // checkpoints at seq 10, 20, 30

/** Reads rows the way an attacker who knows the format would, to recompute hashes. */
async function readRecords(db: TestDatabase['db'], fromSeq: number): Promise<Array<ChainRecord & { hash: Buffer }>> {
  const { rows } = await db.query<ChainRecord & { hash: Buffer }>(
    `SELECT seq, event_id::text AS event_id, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_at,
            event_type, outcome, reason, username, user_id::text AS user_id, host(ip) AS ip, user_agent, device_id, mfa_method,
            session_id::text AS session_id, request_id, actor_id::text AS actor_id, details::text AS details, hash
       FROM audit_log WHERE seq >= $1 ORDER BY seq`,
    [fromSeq],
  );
  return rows;
}

async function hashOf(db: TestDatabase['db'], seq: number): Promise<Buffer> {
  const { rows } = await db.query<{ hash: Buffer }>('SELECT hash FROM audit_log WHERE seq = $1', [seq]);
  return rows[0]?.hash ?? GENESIS_HASH;
}

describe('audit chain verifier against tampering (PostgreSQL)', () => {
  let template: TestDatabase;
  let key: SigningKey & { file: string; dir: string };
  let checkpointFile: string;
  const copies: TestDatabase[] = [];

  before(async () => {
    key = tempSigningKey();
    checkpointFile = path.join(key.dir, 'checkpoints.jsonl');
    template = await createTestDatabase();
    const writer = createChainWriter(template.db, { batchMax: 16, writeTimeoutMs: 5000 });
    const checkpointer = createCheckpointer({
      db: template.db, writer, key, file: checkpointFile, everyRecords: CHECKPOINT_EVERY, everySeconds: 3600, logger: createLogger('silent'),
    });
    for (let i = 1; i <= RECORDS; i++) await writer.recordEvent(sampleEvent(i));
    await writer.close();
    await checkpointer.close();
    await template.db.close();
  });

  after(async () => {
    await Promise.all(copies.map((c) => c.drop()));
    await template.drop();
    fs.rmSync(key.dir, { recursive: true, force: true });
  });

  async function freshCopy(): Promise<TestDatabase> {
    const copy = await createTestDatabase({ template: template.name });
    copies.push(copy);
    return copy;
  }

  /** The verifier under test, reading seven records per COPY statement. */
  const verify = (target: Pick<TestDatabase, 'db'>, file = checkpointFile): Promise<VerifyResult> =>
    verifyChain(target.db, { trustedKeys: trustOnly(key), checkpointFile: file, batchSize: 7 });

  it('when the chain is untouched, then it verifies with every checkpoint matched', async () => {
    const copy = await freshCopy();
    const result = await verify(copy);
    assert.deepEqual({ ...result, last_verified_checkpoint: undefined }, { valid: true, checked: RECORDS, head_seq: RECORDS, checkpoints_checked: 3, last_verified_checkpoint: undefined });
    assert.equal(result.last_verified_checkpoint?.seq, 30);
    // Starting after that checkpoint checks nothing old and still finds the chain intact.
    const incremental = await verifyChain(copy.db, {
      trustedKeys: trustOnly(key),
      checkpointFile,
      startAfter: { seq: 20, hash: Buffer.from((await copy.db.query<{ hash: Buffer }>('SELECT hash FROM audit_log WHERE seq = 20')).rows[0]!.hash) },
    });
    assert.deepEqual([incremental.valid, incremental.checked, incremental.head_seq], [true, 10, 30]);
    const lines = fs.readFileSync(checkpointFile, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq);
    assert.deepEqual(lines, [10, 20, 30]);
  });

  it('when the chain is read with another session time zone, then it still verifies', async () => {
    const copy = await freshCopy();
    const params = `options=${encodeURIComponent('-c TimeZone=Pacific/Chatham')}`;
    const shifted = copy.open({ params });
    const { rows } = await shifted.query<{ tz: string }>(`SELECT current_setting('TimeZone') AS tz`);
    assert.equal(rows[0]!.tz, 'Pacific/Chatham');
    assert.equal((await verify({ db: shifted })).valid, true);
  });

  it('when a field is edited by a superuser, then the first bad seq is that record (hash_mismatch)', async () => {
    const copy = await freshCopy();
    await asSuperuser(copy.name, `UPDATE audit_log SET outcome = 'success' WHERE seq = 14`);
    const r = await verify(copy);
    assert.equal(r.valid, false);
    assert.equal(r.first_invalid_seq, 14);
    assert.equal(r.problem, 'hash_mismatch');
  });

  it('when a stored host address is widened to a network (/32 to /8, the CHECK dropped), then that record is reported (hash_mismatch)', async () => {
    const copy = await freshCopy();
    await asSuperuser(copy.name, `ALTER TABLE audit_log DROP CONSTRAINT audit_log_ip_check`);
    await asSuperuser(copy.name, `UPDATE audit_log SET ip = set_masklen(ip, 8) WHERE seq = 14`);
    const r = await verify(copy);
    assert.equal(r.valid, false);
    assert.equal(r.first_invalid_seq, 14);
    assert.equal(r.problem, 'hash_mismatch');
  });

  it('when a middle record is deleted, then the first bad seq is the missing one (seq_gap)', async () => {
    const copy = await freshCopy();
    await asSuperuser(copy.name, 'DELETE FROM audit_log WHERE seq = 17');
    const r = await verify(copy);
    assert.deepEqual([r.first_invalid_seq, r.problem], [17, 'seq_gap']);
  });

  it('when the tail is deleted with its checkpoints in the table, then the export file reveals the truncation', async () => {
    const copy = await freshCopy();
    await asSuperuser(copy.name, 'DELETE FROM audit_log WHERE seq > 25; DELETE FROM audit_checkpoints WHERE seq > 25');
    const r = await verify(copy);
    assert.deepEqual([r.first_invalid_seq, r.problem, r.head_seq], [26, 'truncated', 25]);
  });

  it('when records are edited and every later hash recomputed, then the signed checkpoints catch it from the last good checkpoint on', async () => {
    const copy = await freshCopy();
    const records = await readRecords(copy.db, 15);
    let prev = await hashOf(copy.db, 14);
    for (const record of records) {
      const forged = record.seq === 15 ? { ...record, username: 'mallory', outcome: 'success', reason: null } : record;
      const hash = chainHash(prev, forged);
      await asSuperuser(copy.name, 'UPDATE audit_log SET username = $2, outcome = $3, reason = $4, prev_hash = $5, hash = $6 WHERE seq = $1', [
        forged.seq, forged.username, forged.outcome, forged.reason, prev, hash,
      ]);
      prev = hash;
    }
    // The rewrite is internally consistent: without checkpoints nothing would show.
    const unsigned = await verifyChain(copy.db, { trustedKeys: new Map(), batchSize: 7 });
    assert.equal(unsigned.problem, 'checkpoint_unknown_key');
    const r = await verify(copy);
    assert.equal(r.valid, false);
    assert.equal(r.problem, 'checkpoint_mismatch');
    // Records 11..20 lie between the last matching checkpoint (10) and the first mismatching one (20).
    assert.equal(r.first_invalid_seq, 11);
    assert.match(r.detail!, /checkpoint at seq 20/);
  });

  it('when two records are swapped, then the first bad seq is the earlier position', async () => {
    const copy = await freshCopy();
    await asSuperuser(copy.name, `UPDATE audit_log SET seq = 1000007 WHERE seq = 7;
      UPDATE audit_log SET seq = 7 WHERE seq = 8; UPDATE audit_log SET seq = 8 WHERE seq = 1000007`);
    const r = await verify(copy);
    assert.deepEqual([r.first_invalid_seq, r.problem], [7, 'prev_hash_mismatch']);
  });

  it('when a forged, correctly hashed record is inserted in the middle, then it is reported at its own seq (fork)', async () => {
    const copy = await freshCopy();
    const prev = await hashOf(copy.db, 11);
    const forged: ChainRecord = {
      seq: 12, event_id: crypto.randomUUID(), occurred_at: '2026-01-01T00:00:00.000000Z', event_type: 'login.succeeded',
      outcome: 'success', reason: null, username: 'mallory', user_id: null, ip: '198.51.100.7', user_agent: null,
      device_id: null, mfa_method: 'none', session_id: null, request_id: null, actor_id: null, details: null,
    };
    // prev_hash is unique within each monthly partition only (migration 013): the forged record's month is another partition.
    await asSuperuser(copy.name, `UPDATE audit_log SET seq = seq + 1000000 WHERE seq >= 12; UPDATE audit_log SET seq = seq - 999999 WHERE seq >= 1000000`);
    await asSuperuser(
      copy.name,
      `INSERT INTO audit_log (seq, event_id, occurred_at, event_type, outcome, username, ip, mfa_method, prev_hash, hash)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [12, forged.event_id, forged.occurred_at, forged.event_type, forged.outcome, forged.username, forged.ip, forged.mfa_method, prev, chainHash(prev, forged)],
    );
    const r = await verify(copy);
    assert.deepEqual([r.first_invalid_seq, r.problem], [12, 'fork']);
  });

  /** Inserts `record` as a superuser with its hash chained from `prev`: a forged row that hashes correctly. */
  async function insertForged(copy: TestDatabase, record: ChainRecord, prev: Buffer, hash = chainHash(prev, record)): Promise<void> {
    await asSuperuser(
      copy.name,
      `INSERT INTO audit_log (seq, event_id, occurred_at, event_type, outcome, reason, username, user_id, ip, user_agent, device_id, mfa_method,
                              session_id, request_id, actor_id, details, prev_hash, hash, account)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
      [record.seq, record.event_id, record.occurred_at, record.event_type, record.outcome, record.reason, record.username, record.user_id, record.ip,
        record.user_agent, record.device_id, record.mfa_method, record.session_id, record.request_id, record.actor_id, record.details, prev, hash,
        record.username === null ? null : normalizeUsername(record.username)],
    );
  }

  it('when a second, correctly hashed record with an existing seq is inserted (no renumbering), then that seq is reported (fork)', async () => {
    const copy = await freshCopy();
    const prev = await hashOf(copy.db, 11);
    // Another month's partition: seq and prev_hash are unique within each partition only.
    await insertForged(copy, { ...(await readRecords(copy.db, 12))[0]!, event_id: crypto.randomUUID(), occurred_at: '2026-01-01T00:00:00.000000Z', username: 'mallory' }, prev);
    const r = await verify(copy);
    assert.deepEqual([r.first_invalid_seq, r.problem], [12, 'fork'], JSON.stringify(r));
  });

  it('when a record is copied under its own seq into another partition, then that seq is reported (fork)', async () => {
    const copy = await freshCopy();
    const original = (await readRecords(copy.db, 4))[0]!;
    await insertForged(copy, { ...original, event_id: crypto.randomUUID(), occurred_at: '2025-01-01T00:00:00.000000Z' }, await hashOf(copy.db, 3), original.hash);
    const r = await verify(copy);
    assert.deepEqual([r.first_invalid_seq, r.problem], [4, 'fork'], JSON.stringify(r));
  });

  it('when a correctly chained record is appended with a time before its predecessor, then it is reported (occurred_at_decreased)', async () => {
    const copy = await freshCopy();
    const last = (await readRecords(copy.db, RECORDS))[0]!;
    const earlier = new Date(Date.parse(last.occurred_at) - 3600_000).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
    await insertForged(copy, { ...last, seq: RECORDS + 1, event_id: crypto.randomUUID(), occurred_at: earlier, username: 'alibi@example.com' }, last.hash);
    const r = await verify(copy);
    assert.deepEqual([r.first_invalid_seq, r.problem], [RECORDS + 1, 'occurred_at_decreased'], JSON.stringify(r));
  });

  it("when a record dated 'infinity' (whose canonical time is NULL) is appended with its hash over that NULL, the range CHECK dropped, then it is reported (hash_mismatch)", async () => {
    const copy = await freshCopy();
    await asSuperuser(copy.name, 'ALTER TABLE audit_log DROP CONSTRAINT audit_log_occurred_at_range');
    const last = (await readRecords(copy.db, RECORDS))[0]!;
    const forged = { ...last, seq: RECORDS + 1, event_id: crypto.randomUUID() };
    const hash = chainHash(last.hash, { ...forged, occurred_at: null as unknown as string });
    await insertForged(copy, { ...forged, occurred_at: 'infinity' }, last.hash, hash);
    const r = await verify(copy);
    assert.deepEqual([r.first_invalid_seq, r.problem], [RECORDS + 1, 'hash_mismatch'], JSON.stringify(r));
  });

  it('when a correctly chained record dated years ahead is appended (triggers off), then it is reported (occurred_at_in_future)', async () => {
    const copy = await freshCopy();
    const last = (await readRecords(copy.db, RECORDS))[0]!;
    await insertForged(copy, { ...last, seq: RECORDS + 1, event_id: crypto.randomUUID(), occurred_at: '2099-01-01T00:00:00.000000Z' }, last.hash);
    const r = await verify(copy);
    assert.deepEqual([r.first_invalid_seq, r.problem], [RECORDS + 1, 'occurred_at_in_future'], JSON.stringify(r));
  });

  it('when the back-dated record comes right after where an incremental run starts, then that run reports it too (the start record\'s time is read)', async () => {
    const copy = await freshCopy();
    const last = (await readRecords(copy.db, RECORDS))[0]!;
    const earlier = new Date(Date.parse(last.occurred_at) - 1000).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
    await insertForged(copy, { ...last, seq: RECORDS + 1, event_id: crypto.randomUUID(), occurred_at: earlier }, last.hash);
    const r = await verifyChain(copy.db, { trustedKeys: trustOnly(key), checkpointFile, startAfter: { seq: RECORDS, hash: last.hash } });
    assert.deepEqual([r.first_invalid_seq, r.problem, r.checked], [RECORDS + 1, 'occurred_at_decreased', 1], JSON.stringify(r));
  });

  it('when a row with a seq beyond 2^53 is inserted (triggers off), then the walk reports the gap before it, not an unreachable database', async () => {
    const copy = await freshCopy();
    const last = (await readRecords(copy.db, RECORDS))[0]!;
    await insertForged(copy, { ...last, seq: '9223372036854775807' as unknown as number, event_id: crypto.randomUUID() }, last.hash, crypto.randomBytes(32));
    const { chain, tree } = await verifyChainAndTree(copy.db, { trustedKeys: trustOnly(key), checkpointFile });
    assert.deepEqual([chain.first_invalid_seq, chain.problem], [RECORDS + 1, 'seq_gap'], JSON.stringify(chain));
    assert.equal(tree.valid, false, JSON.stringify(tree));
  });

  it('when a record is moved to the same date BC (which prints the same canonical text), the range CHECK dropped, then that record is reported (hash_mismatch)', async () => {
    const copy = await freshCopy();
    const toBC = `UPDATE audit_log SET occurred_at = (to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || ' BC')::timestamp AT TIME ZONE 'UTC' WHERE seq = 14`;
    await assert.rejects(asSuperuser(copy.name, toBC), /audit_log_occurred_at_range/, 'the CHECK holds even with triggers off');
    await asSuperuser(copy.name, `ALTER TABLE audit_log DROP CONSTRAINT audit_log_occurred_at_range; ${toBC}`);
    const { rows } = await copy.db.query<{ bc: boolean }>(`SELECT occurred_at < '0001-01-01T00:00:00Z' AS bc FROM audit_log WHERE seq = 14`);
    assert.equal(rows[0]!.bc, true, 'the record now lies before the common era');
    const r = await verify(copy);
    assert.deepEqual([r.first_invalid_seq, r.problem], [14, 'hash_mismatch'], JSON.stringify(r));
  });

  it('when a checkpoint is forged with another key or a bad signature, then it is reported at its seq', async () => {
    const copy = await freshCopy();
    const stranger = tempSigningKey();
    const head = { seq: 5, hash: await hashOf(copy.db, 5) };
    const foreign = signCheckpoint(stranger, head, '2026-01-01T00:00:00.000000Z');
    await copy.db.query('INSERT INTO audit_checkpoints (seq, hash, signed_at, key_id, signature) VALUES ($1, $2, $3, $4, $5)', [
      foreign.seq, foreign.hash, foreign.signedAt, foreign.keyId, foreign.signature,
    ]);
    const r1 = await verify(copy);
    assert.deepEqual([r1.first_invalid_seq, r1.problem], [5, 'checkpoint_unknown_key']);

    const copy2 = await freshCopy();
    const genuine = signCheckpoint(key, { seq: 3, hash: await hashOf(copy2.db, 3) }, '2026-01-01T00:00:00.000000Z');
    await copy2.db.query('INSERT INTO audit_checkpoints (seq, hash, signed_at, key_id, signature) VALUES ($1, $2, $3, $4, $5)', [
      genuine.seq, genuine.hash, '2026-01-01T00:00:00.000001Z', genuine.keyId, genuine.signature,
    ]);
    const r2 = await verify(copy2);
    assert.deepEqual([r2.first_invalid_seq, r2.problem], [3, 'checkpoint_signature_invalid']);
    fs.rmSync(stranger.dir, { recursive: true, force: true });
  });

  it('when run as `npm run audit:verify`, then the exit status is 0 intact, 1 tampered with the seq printed, 2 unreachable', async () => {
    const copy = await freshCopy();
    // Every input is a flag (the verifier reads nothing from the gateway's environment).
    const flags = ['--database-url', copy.url, '--trusted-key', key.file, '--checkpoint-file', checkpointFile];
    const intact = await runTs('src/cli/audit-verify.ts', flags);
    assert.equal(intact.code, 0, intact.stderr);
    assert.match(intact.stdout, /intact: 30 records, head seq 30, 3 signed checkpoints/);

    await asSuperuser(copy.name, `UPDATE audit_log SET username = 'someone-else' WHERE seq = 9`);
    const tampered = await runTs('src/cli/audit-verify.ts', [...flags, '--json']);
    assert.equal(tampered.code, 1, tampered.stderr);
    assert.deepEqual(
      (({ first_invalid_seq, problem, valid }) => ({ first_invalid_seq, problem, valid }))(JSON.parse(tampered.stdout) as VerifyResult),
      { first_invalid_seq: 9, problem: 'hash_mismatch', valid: false },
    );

    const down = await runTs('src/cli/audit-verify.ts', ['--database-url', 'postgres://root@127.0.0.1:1/none', '--trusted-key', key.file]);
    assert.equal(down.code, 2);
    assert.match(down.stderr, /could not run/);

    const untrusting = await runTs('src/cli/audit-verify.ts', ['--database-url', copy.url, '--checkpoint-file', checkpointFile], {
      AUDIT_SIGNING_KEY_FILE: key.file, AUDIT_CHECKPOINT_FILE: checkpointFile,
    });
    assert.equal(untrusting.code, 2, 'no trusted key given: the environment is not read');
    assert.match(untrusting.stderr, /no trusted key/);
  });

  it('when the unhashed account of a record is edited, then the verifier reports that record (account_mismatch)', async () => {
    // Re-pointing the account would hide the record from searches by account while its hash still matches.
    const copy = await freshCopy();
    await asSuperuser(copy.name, `UPDATE audit_log SET account = 'someone-else' WHERE seq = 12`);
    const r = await verify(copy);
    assert.deepEqual([r.valid, r.first_invalid_seq, r.problem], [false, 12, 'account_mismatch']);
    assert.equal(r.checked, RECORDS, 'the walk went on to look for a lower bad seq');

    const cleared = await freshCopy();
    await asSuperuser(cleared.name, 'UPDATE audit_log SET account = NULL WHERE seq = 23');
    assert.deepEqual(((c) => [c.first_invalid_seq, c.problem])(await verify(cleared)), [23, 'account_mismatch']);

    const invented = await freshCopy();
    await asSuperuser(invented.name, `UPDATE audit_log SET username = NULL WHERE seq = 4; UPDATE audit_log SET account = 'carol' WHERE seq = 5`);
    const both = await verify(invented);
    assert.deepEqual([both.first_invalid_seq, both.problem], [4, 'hash_mismatch'], 'an edited username is a hash mismatch first');
  });

  it('when an account and a hashed field are edited in different records, then the lower seq is reported', async () => {
    const earlyAccount = await freshCopy();
    await asSuperuser(earlyAccount.name, `UPDATE audit_log SET account = 'x' WHERE seq = 8; UPDATE audit_log SET outcome = 'success' WHERE seq = 14`);
    assert.deepEqual(((r) => [r.first_invalid_seq, r.problem])(await verify(earlyAccount)), [8, 'account_mismatch']);

    const lateAccount = await freshCopy();
    await asSuperuser(lateAccount.name, `UPDATE audit_log SET account = 'x' WHERE seq = 22; UPDATE audit_log SET outcome = 'success' WHERE seq = 14`);
    assert.deepEqual(((r) => [r.first_invalid_seq, r.problem])(await verify(lateAccount)), [14, 'hash_mismatch']);
  });

  it('when an account is edited, then `npm run audit:verify` exits 1 naming account_mismatch', async () => {
    const copy = await freshCopy();
    await asSuperuser(copy.name, `UPDATE audit_log SET account = 'someone-else' WHERE seq = 9`);
    const run = await runTs('src/cli/audit-verify.ts', ['--database-url', copy.url, '--trusted-key', key.file, '--checkpoint-file', checkpointFile]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stdout, /INVALID at seq 9: account_mismatch/);
  });
});
