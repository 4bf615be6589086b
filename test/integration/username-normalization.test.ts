import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { GENESIS_HASH, chainHash } from '../../src/audit/canonical.js';
import { toChainRecord } from '../../src/audit/record.js';
import { verifyChain } from '../../src/audit/verify-chain.js';
import { createEmbeddedDatabase, type Database } from '../../src/db/database.js';
import { loadMigrations, migrate } from '../../src/db/migrate.js';
import { normalizeUsername } from '../../src/users/usernames.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { sampleEvent } from '../helpers/events.js';
import { createUser } from '../../src/users/create-user.js';
import { createTestGateway, uniqueName, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';
const WRONG = 'wrong horse battery staple';

/**
 * Names that log in as `carol` because login trims every Unicode white space (after NFKC), while
 * PostgreSQL's btrim removes only ASCII spaces: searches done in SQL used to miss them.
 */
const PADDED = ['\u3000carol', 'carol\u00a0', 'carol\u2003'];

interface Item {
  seq: number;
  event_type: string;
  outcome: string;
  username: string;
}

describe('username search normalizes exactly as login does', () => {
  let gw: TestGateway;
  let security: string;

  before(async () => {
    // Behind a trusted proxy, so each attempt can come from its own address.
    gw = await createTestGateway({ env: { TRUST_PROXY: 'loopback' } });
    await gw.addUser('carol', PASSWORD);
    const reader = uniqueName('security');
    await gw.addUser(reader, PASSWORD, ['security']);
    security = (await request(gw.app).post('/login').send({ username: reader, password: PASSWORD }).expect(200)).body.access_token as string;
  });
  after(async () => {
    await gw.close();
  });

  const login = (username: string, password: string, ip: string) =>
    request(gw.app).post('/login').set('X-Forwarded-For', ip).send({ username, password });
  const get = (path: string) => request(gw.app).get(path).set('Authorization', `Bearer ${security}`);

  it('when a username is padded with Unicode white space, then the security team\'s username search and summary still find it', async () => {
    // The attack: wrong passwords from three addresses, then three successful logins, all as carol.
    for (const [i, name] of PADDED.entries()) await login(name, WRONG, `198.51.100.${i + 1}`).expect(401);
    for (const [i, name] of PADDED.entries()) await login(name, PASSWORD, `198.51.100.${i + 1}`).expect(200);

    for (const typed of ['carol', ' CAROL ', '\u3000Carol\u2003']) {
      const res = await get('/admin/login-events').query({ username: typed, limit: 1000 }).expect(200);
      const logins = (res.body.items as Item[]).filter((e) => e.event_type.startsWith('login.'));
      assert.deepEqual(
        logins.map((e) => [e.username, e.outcome]).reverse(),
        [...PADDED.map((u) => [u, 'failure']), ...PADDED.map((u) => [u, 'success'])],
        `every attempt as carol is found when searching for ${JSON.stringify(typed)}`,
      );
    }

    const exported = await get('/admin/login-events').query({ username: 'carol', event_type: 'login.succeeded' }).set('Accept', 'application/x-ndjson').expect(200);
    assert.deepEqual(exported.text.trim().split('\n').map((l) => (JSON.parse(l) as Item).username).reverse(), PADDED);

    const summary = await get('/admin/login-events/summary').expect(200);
    const targeted = summary.body.most_targeted_usernames as Array<{ username: string; distinct_ips: number; failures: number }>;
    assert.deepEqual(targeted, [{ username: 'carol', distinct_ips: 3, failures: 3 }], 'carol is one target, attacked from three addresses');
    const spraying = summary.body.spraying_ips as Array<{ ip: string; distinct_usernames: number }>;
    assert.deepEqual(spraying.map((s) => s.distinct_usernames), [1, 1, 1]);
  });

  it('when a record is written, then its account column is normalizeUsername(username), NULL without a username', async () => {
    const { rows } = await gw.t.db.query<{ username: string | null; account: string | null }>('SELECT username, account FROM audit_log ORDER BY seq');
    assert.ok(rows.some((r) => r.username === null), 'records without a username exist (audit.queried)');
    for (const r of rows) assert.equal(r.account, r.username === null ? null : normalizeUsername(r.username), JSON.stringify(r.username));
    assert.equal(rows.filter((r) => r.account === 'carol').length, 1 + PADDED.length * 2, 'user.created and six logins');
  });

  // The record keeps the first 256 characters as typed: a longer name padded with white space would
  // be stored as nothing but padding, with account ''. Such names are refused, and the refusal found.
  it('when a username is padded beyond the stored 256 characters, then the login is refused as invalid and nothing hides', async () => {
    const padded = `${'\u3000'.repeat(300)}carol`;
    const res = await login(padded, PASSWORD, '198.51.100.9');
    assert.equal(res.status, 400);
    const found = await get('/admin/login-events').query({ username: 'carol', event_type: 'login.succeeded', ip: '198.51.100.9' }).expect(200);
    assert.equal(found.body.items.length, 0);
  });

  it('when a username holds an unpaired surrogate, then logging in is refused with 400 and creating a user with invalid_username, never stored as U+FFFD', async () => {
    // U+FFFD is what a lone surrogate becomes on its way to UTF-8: "\ud800x" must not reach the account "\ufffdx".
    const existing = uniqueName('\ufffdsurrogate');
    await gw.addUser(existing, PASSWORD);
    for (const username of [existing.replace('\ufffd', '\ud800'), existing.replace('\ufffd', '\udfff')]) {
      const res = await login(username, PASSWORD, '198.51.100.10');
      assert.equal(res.status, 400, username);
      assert.equal(res.body.code, 'invalid_request');
    }
    // The one user-creation path of the admin API, /setup, the bootstrap variables and the CLI.
    const created = await createUser(
      { users: gw.services.users, passwords: gw.services.passwords, writer: gw.services.writer, minPasswordLength: 12 },
      { username: 'bad\ud800@example.com', password: PASSWORD, roles: ['user'] },
      {},
    );
    assert.deepEqual(created.ok ? 'created' : created.problem, 'invalid_username');
  });
});

/**
 * Usernames where a SQL imitation of normalizeUsername could go wrong: every character
 * String.prototype.trim removes, characters it keeps (NEL, U+180E, ZWSP), NFKC compatibility forms,
 * and lower-case mappings beyond simple ones (İ, final sigma, titlecase digraphs). None starts with
 * U+FEFF: PGlite's text decoder drops a leading byte order mark, so such a record reads back altered.
 */
const TRICKY: ReadonlyArray<string | null> = [
  ...PADDED, 'carol', '  Carol  ', '\t\n\u000b\f\rcarol\r\n', '\u3000\ufeffcarol\u2028', 'carol\ufeff', '\u2029carol\u202f', '\u1680carol\u205f',
  '\u2000\u2001\u2002\u2004\u2005\u2006\u2007\u2008\u2009\u200acarol', '\u0085carol\u0085', 'carol\u180e', '\u200bcarol\u200b',
  'ＣＡＲＯＬ', 'ﬁle', 'Ⅻ', 'İstanbul', 'ΟΔΥΣΣΕΥΣ', 'ΑΣ ΑΣ.', 'ǅemal', 'Straße', 'ÅNGSTRÖM', '\u212bngström', '', '   ', '\u3000', null,
];

/** Appends correctly chained records the way the writer did before migration 007: without `account`. */
async function appendWithoutAccount(db: Database, usernames: ReadonlyArray<string | null>): Promise<void> {
  let prev = GENESIS_HASH;
  for (const [i, username] of usernames.entries()) {
    const record = { ...toChainRecord(sampleEvent(i, { username }), crypto.randomUUID(), `2026-01-01T00:00:${String(i % 60).padStart(2, '0')}.000000Z`), seq: i + 1 };
    const hash = chainHash(prev, record);
    await db.query(
      `INSERT INTO audit_log (seq, event_id, occurred_at, event_type, outcome, reason, username, user_id, ip, user_agent, device_id,
                              mfa_method, session_id, request_id, actor_id, details, prev_hash, hash)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`,
      [record.seq, record.event_id, record.occurred_at, record.event_type, record.outcome, record.reason, record.username, record.user_id,
        record.ip, record.user_agent, record.device_id, record.mfa_method, record.session_id, record.request_id, record.actor_id,
        record.details, prev, hash],
    );
    prev = hash;
  }
}

/** Migrates to 006, writes records, applies 007, and checks its SQL backfill against the JavaScript function. */
async function checkBackfill(db: Database): Promise<void> {
  await migrate(db, loadMigrations().filter((m) => m.version <= 6));
  await appendWithoutAccount(db, TRICKY);
  assert.deepEqual(await migrate(db, loadMigrations().filter((m) => m.version <= 7)), ['007_audit_account']);
  const { rows } = await db.query<{ seq: number; username: string | null; account: string | null }>('SELECT seq, username, account FROM audit_log ORDER BY seq');
  assert.equal(rows.length, TRICKY.length);
  for (const r of rows) assert.equal(r.account, r.username === null ? null : normalizeUsername(r.username), `backfilled account of ${JSON.stringify(r.username)}`);
  await migrate(db); // the verifier reads the schema of today (checkpoint notes, migration 008)
  const verified = await verifyChain(db, { trustedKeys: new Map() });
  assert.deepEqual([verified.valid, verified.checked], [true, TRICKY.length]);
  // The append-only trigger is back on after the backfill.
  await assert.rejects(db.query(`UPDATE audit_log SET account = 'x' WHERE seq = 1`), /append-only/);
  const indexes = await db.query<{ indexname: string }>(`SELECT indexname FROM pg_indexes WHERE tablename = 'audit_log' AND indexname IN ('audit_log_account_idx', 'audit_log_username_idx')`);
  assert.deepEqual(indexes.rows.map((r) => r.indexname), ['audit_log_account_idx']);
}

describe('migration 007 backfills account like normalizeUsername', () => {
  it('when existing records are migrated on PostgreSQL, then every account equals normalizeUsername(username) and the chain verifies', async () => {
    const t = await createTestDatabase({ migrate: false });
    try {
      await checkBackfill(t.db);
    } finally {
      await t.drop();
    }
  });

  it('when existing records are migrated in embedded mode (PGlite), then every account equals normalizeUsername(username) and the chain verifies', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-backfill-'));
    const db = await createEmbeddedDatabase(path.join(dir, 'pgdata'));
    try {
      await checkBackfill(db);
    } finally {
      await db.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
