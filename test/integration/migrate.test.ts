import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MIGRATIONS_DIR, loadMigrations, migrate } from '../../src/db/migrate.js';
import { adminQuery, createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { runTs } from '../helpers/processes.js';

describe('migrations', () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase({ migrate: false });
  });
  after(async () => {
    await t.drop();
  });

  it('when two instances start together on an empty database, then each migration is applied exactly once', async () => {
    const runs = await Promise.all([1, 2, 3].map(() => runTs('src/cli/migrate.ts', [], { DATABASE_URL: t.url })));
    for (const run of runs) assert.equal(run.code, 0, run.stderr);
    const { rows } = await t.db.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
    assert.deepEqual(rows.map((r) => r.version), loadMigrations().map((m) => m.version));
    const applying = runs.filter((r) => r.stdout.startsWith('applied:'));
    assert.equal(applying.length, 1, runs.map((r) => r.stdout).join(' | '));
  });

  it('when run again, then nothing is applied', async () => {
    assert.deepEqual(await migrate(t.db), []);
  });

  it('when an applied migration file was edited, then start-up refuses with its name', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-mig-'));
    for (const f of fs.readdirSync(MIGRATIONS_DIR)) fs.copyFileSync(path.join(MIGRATIONS_DIR, f), path.join(dir, f));
    fs.appendFileSync(path.join(dir, '001_users.sql'), '\n-- edited\n');
    await assert.rejects(migrate(t.db, loadMigrations(dir)), /001_users was changed after it was applied/);
    fs.rmSync(dir, { recursive: true });
  });

  it('when a migration fails, then none of the pending ones is left half-applied', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-mig-'));
    for (const f of fs.readdirSync(MIGRATIONS_DIR)) fs.copyFileSync(path.join(MIGRATIONS_DIR, f), path.join(dir, f));
    fs.writeFileSync(path.join(dir, '900_ok.sql'), 'CREATE TABLE should_not_exist (x int);');
    fs.writeFileSync(path.join(dir, '901_broken.sql'), 'CREATE TABLE broken (;');
    await assert.rejects(migrate(t.db, loadMigrations(dir)), /syntax error/);
    const { rows } = await t.db.query<{ t: string | null }>(`SELECT to_regclass('should_not_exist')::text AS t`);
    assert.equal(rows[0]!.t, null);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('migrations land in schema public, whatever the login\'s search_path', () => {
  let t: TestDatabase;
  // A login with a schema of its own name: the default search_path ("$user", public) puts that first.
  const role = `authtrail_mig_${crypto.randomBytes(4).toString('hex')}`;
  before(async () => {
    t = await createTestDatabase({ migrate: false });
    await adminQuery(`CREATE ROLE ${role} LOGIN`);
    // The database's owner may create in public (PostgreSQL 15 grants that to nobody else).
    await adminQuery(`ALTER DATABASE ${t.name} OWNER TO ${role}`);
    await adminQuery(`CREATE SCHEMA ${role} AUTHORIZATION ${role}`, [], t.name);
  });
  after(async () => {
    await t.drop();
    await adminQuery(`DROP ROLE IF EXISTS ${role}`);
  });

  it('when the migrating login has a schema named after it, then every table is still made in public, where the verifiers read it', async () => {
    const db = t.open({ user: role });
    assert.ok((await migrate(db)).length > 0);
    const { rows } = await db.query<{ schema: string; n: number }>(
      `SELECT n.nspname AS schema, count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('public', $1) AND c.relkind IN ('r', 'p') GROUP BY 1 ORDER BY 1`,
      [role],
    );
    assert.deepEqual(rows.map((r) => r.schema), ['public'], `tables by schema: ${JSON.stringify(rows)}`);
    const { rows: log } = await db.query<{ log: string | null }>(`SELECT to_regclass('public.audit_log')::text AS log`);
    assert.equal(log[0]!.log, 'audit_log');
  });

  it("when the login's search_path finds schema_migrations in another schema, then migrating refuses rather than start a second set in public", async () => {
    const db = t.open({ user: role });
    await db.query(`CREATE TABLE ${role}.schema_migrations (version integer PRIMARY KEY, name text, checksum text)`);
    await assert.rejects(migrate(db), new RegExp(`finds schema_migrations in schema "${role}", not public`));
  });
});
