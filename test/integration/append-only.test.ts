import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { createCheckpointer } from '../../src/audit/checkpoints.js';
import { verifyChain } from '../../src/audit/verify-chain.js';
import { migrate } from '../../src/db/migrate.js';
import { createLogger } from '../../src/logger.js';
import { tempSigningKey, trustOnly } from '../helpers/audit.js';
import { sampleEvent } from '../helpers/events.js';
import { adminQuery, createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { ROOT } from '../helpers/processes.js';
import { callAuditAppend, chainTail, writeSampleEvents } from '../helpers/chain-fixture.js';
import { chainHash, type ChainRecord } from '../../src/audit/canonical.js';
import { createTestGateway } from '../helpers/test-gateway.js';
import { sweepExpired } from '../../src/maintenance.js';
import request from 'supertest';

/** A plain login failure as a chain record, dated now. */
const sampleRecord = (seq: number): ChainRecord => ({
  seq, event_id: crypto.randomUUID(), occurred_at: new Date().toISOString(), event_type: 'login.failed', outcome: 'failure', reason: 'wrong_password',
  username: 'direct@example.com', user_id: null, ip: null, user_agent: null, device_id: null, mfa_method: null, session_id: null, request_id: null,
  actor_id: null, details: null,
});

describe('append-only audit tables', () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
    await writeSampleEvents(t.db, 3);
    await t.db.query(`INSERT INTO audit_checkpoints (seq, hash, signed_at, key_id, signature) SELECT seq, hash, now(), 'k', $1 FROM audit_log WHERE seq = 3`, [
      Buffer.alloc(64),
    ]);
  });
  after(async () => {
    await t.drop();
  });

  for (const table of ['audit_log', 'audit_checkpoints']) {
    for (const statement of [`UPDATE ${table} SET seq = seq WHERE seq = 3`, `DELETE FROM ${table} WHERE seq = 3`, `TRUNCATE ${table}`]) {
      it(`when the owner runs "${statement}", then the database refuses it and nothing changes`, async () => {
        await assert.rejects(t.db.query(statement), (err: { code?: string; message: string }) => {
          assert.equal(err.code, '42501');
          assert.match(err.message, /append-only/);
          return true;
        });
        const { rows } = await t.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
        assert.equal(rows[0]!.n, table === 'audit_log' ? 3 : 1);
      });
    }
  }
});

describe('audit_append keeps the log\'s rules, whoever calls it', () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
    await writeSampleEvents(t.db, 3);
  });
  after(async () => {
    await t.drop();
  });
  const head = async () => (await t.db.query<{ seq: number; size: number }>(
    `SELECT (SELECT max(seq) FROM audit_log) AS seq, (SELECT sum(octet_length(hashes)) / 32 FROM audit_tiles WHERE level = 0)::int AS size`,
  )).rows[0]!;

  it('when a correct record with its tiles is appended, then it is stored and the log verifies', async () => {
    const before = await head();
    const rows = await callAuditAppend(t.db, {});
    assert.ok(rows.length > 0);
    assert.deepEqual(await head(), { seq: before.seq + 1, size: before.size + 1 });
    const r = await verifyChain(t.db, { trustedKeys: new Map() });
    assert.equal(r.valid, true, JSON.stringify(r));
  });

  it('when a record is back-dated before the head, then the call is refused and nothing is stored', async () => {
    const before = await head();
    await assert.rejects(callAuditAppend(t.db, { occurred_at: '2020-01-01T00:00:00.000000Z' }), /is dated before the record before it/);
    assert.deepEqual(await head(), before);
  });

  it("when a record is dated 'infinity', far ahead or before the common era, then the call is refused and nothing is stored", async () => {
    const before = await head();
    await assert.rejects(callAuditAppend(t.db, { occurred_at: 'infinity' }), /audit_log_occurred_at_range/);
    await assert.rejects(callAuditAppend(t.db, { occurred_at: '9999-12-31T23:59:59.999999Z' }), /more than five minutes after the database's clock/);
    await assert.rejects(callAuditAppend(t.db, { occurred_at: '2026-11-21T10:00:00.000000Z BC' }), /audit_log_occurred_at_range/);
    assert.deepEqual(await head(), before);
  });

  it('when a correctly chained record is INSERTed directly (the runtime role may), back-dated or dated ahead, then the database refuses it', async () => {
    const insert = async (occurredAt: string) => {
      const tail = await chainTail(t.db);
      const record = { ...sampleRecord(tail.seq + 1), occurred_at: occurredAt };
      await t.db.query(
        `INSERT INTO audit_log (seq, event_id, occurred_at, event_type, outcome, reason, username, account, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [record.seq, record.event_id, record.occurred_at, record.event_type, record.outcome, record.reason, record.username, record.username, tail.hash, chainHash(tail.hash, record)],
      );
    };
    const before = await head();
    await assert.rejects(insert('2020-01-01T00:00:00.000000Z'), /before the record before it/);
    await assert.rejects(insert(new Date(Date.now() + 3600_000).toISOString()), /more than five minutes after the database's clock/);
    assert.deepEqual(await head(), before);
    await insert(new Date().toISOString());
    assert.equal((await head()).seq, before.seq + 1, 'a record dated now is accepted');
  });

  it('when a record is INSERTed past a gap, or at a seq near 2^63 (after which every append would fail), then the database refuses it', async () => {
    const insertAt = async (seq: bigint | number) => {
      const tail = await chainTail(t.db);
      const record = { ...sampleRecord(Number(seq)), seq: seq as number };
      await t.db.query(
        `INSERT INTO audit_log (seq, event_id, occurred_at, event_type, outcome, reason, username, account, prev_hash, hash)
         VALUES ($1::bigint, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [String(seq), record.event_id, record.occurred_at, record.event_type, record.outcome, record.reason, record.username, record.username, tail.hash, crypto.randomBytes(32)],
      );
    };
    const before = await head();
    await assert.rejects(insertAt(before.seq + 2), new RegExp(`seq ${before.seq + 1} does not exist`));
    await assert.rejects(insertAt(9223372036854775807n), /does not exist/);
    assert.deepEqual(await head(), before);
    // The writer still appends after both attempts.
    await writeSampleEvents(t.db, 1);
    assert.equal((await head()).seq, before.seq + 1);
  });

  it('when a record comes without the tiles that add its leaf, then the call is refused and nothing is stored', async () => {
    const before = await head();
    await assert.rejects(callAuditAppend(t.db, {}, { tiles: false }), /tile/);
    assert.deepEqual(await head(), before);
  });
});

describe('least-privilege runtime role (docs/runtime-role.sql)', () => {
  let t: TestDatabase;
  const role = `authtrail_app_${crypto.randomBytes(4).toString('hex')}`;
  before(async () => {
    t = await createTestDatabase();
    await adminQuery(`CREATE ROLE ${role} LOGIN`);
    await adminQuery(`GRANT CONNECT ON DATABASE ${t.name} TO ${role}`);
    const grants = fs.readFileSync(path.join(ROOT, 'docs/runtime-role.sql'), 'utf8').replaceAll('authtrail_app', role);
    await adminQuery(grants, [], t.name);
  });
  after(async () => {
    await t.drop();
    await adminQuery(`DROP ROLE IF EXISTS ${role}`);
  });

  it('when the gateway runs as that role, then start-up, appends, checkpoints and verification work', async () => {
    const app = t.open({ user: role });
    const { rows } = await app.query<{ me: string; superuser: string }>(`SELECT current_user AS me, current_setting('is_superuser') AS superuser`);
    assert.deepEqual(rows[0], { me: role, superuser: 'off' });
    assert.deepEqual(await migrate(app), [], 'nothing pending: start-up needs no DDL rights');

    const key = tempSigningKey();
    const writer = createChainWriter(app, { batchMax: 8, writeTimeoutMs: 5000 });
    const checkpointer = createCheckpointer({
      db: app, writer, key, file: path.join(key.dir, 'cp.jsonl'), everyRecords: 5, everySeconds: 3600, logger: createLogger('silent'),
    });
    await Promise.all(Array.from({ length: 12 }, (_, i) => writer.recordEvent(sampleEvent(i))));
    await writer.close();
    await checkpointer.close();
    // The head is checkpointed, by a batch's commit or by close() (which batch crosses the
    // every-5-records mark depends on how the records were batched).
    const { rows: signed } = await app.query<{ seq: number }>('SELECT max(seq) AS seq FROM audit_checkpoints');
    assert.equal(signed[0]?.seq, 12);
    const result = await verifyChain(app, { trustedKeys: trustOnly(key), checkpointFile: path.join(key.dir, 'cp.jsonl') });
    assert.equal(result.valid, true);
    assert.equal(result.head_seq, 12);
    fs.rmSync(key.dir, { recursive: true, force: true });
  });

  it('when the whole gateway runs as that role, then login, refresh, MFA, the security API and the sweep work', async () => {
    const app = t.open({ user: role });
    const gw = await createTestGateway({ t: { ...t, db: app }, env: { ADMIN_REQUIRE_MFA: 'false' } });
    try {
      const username = `role-user-${crypto.randomBytes(3).toString('hex')}@example.com`;
      await gw.addUser(username, 'correct horse battery staple', ['admin', 'security']);
      const tokens = (await request(gw.app).post('/login').send({ username, password: 'correct horse battery staple' }).expect(200)).body as { access_token: string; refresh_token: string };
      await request(gw.app).post('/refresh').send({ refresh_token: tokens.refresh_token }).expect(200);
      const auth = { Authorization: `Bearer ${tokens.access_token}` };
      await request(gw.app).post('/mfa/totp/enroll').set(auth).expect(200);
      await request(gw.app).get('/admin/login-events').set(auth).expect(200);
      await request(gw.app).get('/admin/users').set(auth).expect(200);
      await request(gw.app).get('/admin/audit/verify').set(auth).expect(200);
      for (let i = 0; i < 5; i++) await request(gw.app).post('/login').send({ username: 'nobody-here', password: 'wrong wrong wrong' }).expect(401);
      await request(gw.app).delete('/admin/lockouts/nobody-here').set(auth).expect(204);
      await sweepExpired(app);
    } finally {
      await gw.close();
    }
  });

  it('when that role tries to change history, then it lacks the privilege', async () => {
    const app = t.open({ user: role });
    for (const statement of ['UPDATE audit_log SET reason = NULL', 'DELETE FROM audit_log', 'TRUNCATE audit_log', 'DROP TABLE audit_log']) {
      await assert.rejects(app.query(statement), /permission denied|must be owner/, statement);
    }
  });
});
