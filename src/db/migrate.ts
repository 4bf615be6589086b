import crypto from 'node:crypto';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { Database } from './database.js';
import { MIGRATIONS_LOCK } from './advisory-locks.js';

/** One numbered SQL file from `migrations/`. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  /** The file name without `.sql`, e.g. `001_users`. */
  readonly id: string;
  readonly sql: string;
  readonly checksum: string;
}

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

/** Reads `NNN_name.sql` files in version order; a duplicate number is an error. */
export function loadMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  const migrations = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.sql'))
    .map((file) => {
      const match = /^(\d+)_([\w-]+)\.sql$/.exec(file);
      if (!match) throw new Error(`migration file name ${file} is not NNN_name.sql`);
      const sql = fs.readFileSync(path.join(dir, file), 'utf8');
      return {
        version: Number(match[1]),
        name: match[2]!,
        id: file.slice(0, -'.sql'.length),
        sql,
        checksum: crypto.createHash('sha256').update(sql).digest('hex'),
      };
    })
    .sort((a, b) => a.version - b.version);
  for (let i = 1; i < migrations.length; i++) {
    if (migrations[i]!.version === migrations[i - 1]!.version) {
      throw new Error(`two migrations share number ${migrations[i]!.version}`);
    }
  }
  return migrations;
}

interface AppliedRow {
  version: number;
  checksum: string;
}

/**
 * The applied migrations, from `public.schema_migrations`; undefined before the first. Refuses a
 * login whose own search_path finds `schema_migrations` in another schema (a schema named after
 * it, say): its tables were made there, and migrating into `public` would start a second set.
 */
async function readApplied(db: Pick<Database, 'query'>): Promise<Map<number, string> | undefined> {
  const { rows } = await db.query<{ exists: boolean; elsewhere: string | null }>(
    `SELECT pg_catalog.to_regclass('public.schema_migrations') IS NOT NULL AS exists,
            (SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = pg_catalog.to_regclass('schema_migrations') AND n.nspname <> 'public') AS elsewhere`,
  );
  const elsewhere = rows[0]?.elsewhere;
  if (elsewhere) {
    throw new Error(
      `this login's search_path finds schema_migrations in schema ${JSON.stringify(elsewhere)}, not public: authtrail keeps its tables in public (the verifiers read public.audit_log); move them, or connect with a login whose path finds public`,
    );
  }
  if (!rows[0]?.exists) return undefined;
  const applied = await db.query<AppliedRow>('SELECT version, checksum FROM public.schema_migrations');
  return new Map(applied.rows.map((r) => [Number(r.version), r.checksum]));
}

function pendingMigrations(migrations: readonly Migration[], applied: Map<number, string> | undefined): Migration[] {
  for (const m of migrations) {
    const checksum = applied?.get(m.version);
    if (checksum !== undefined && checksum !== m.checksum) {
      throw new Error(`migration ${m.id} was changed after it was applied; add a new migration instead`);
    }
  }
  return migrations.filter((m) => !applied?.has(m.version));
}

/**
 * Applies the pending migrations in one transaction under an advisory lock, so instances that
 * start together do not race. When nothing is pending it only reads, which lets a least-privilege
 * runtime role start against a database migrated by its owner. The transaction's search_path is
 * `public` (pg_catalog first, implicitly), whatever the login's: every table lands in `public`,
 * where the verifiers read them by qualified name (docs/trust-model.md).
 */
export async function migrate(db: Database, migrations: readonly Migration[] = loadMigrations()): Promise<string[]> {
  if (pendingMigrations(migrations, await readApplied(db)).length === 0) return [];

  return db.transaction(async (tx) => {
    await tx.query('SET LOCAL search_path = public');
    await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [...MIGRATIONS_LOCK]);
    await tx.exec(`CREATE TABLE IF NOT EXISTS public.schema_migrations (
      version    integer PRIMARY KEY,
      name       text NOT NULL,
      checksum   text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    // Re-read under the lock: another instance may have applied some while we waited.
    const pending = pendingMigrations(migrations, await readApplied(tx));
    for (const m of pending) {
      await tx.exec(m.sql);
      await tx.query('INSERT INTO public.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
        m.version,
        m.name,
        m.checksum,
      ]);
    }
    return pending.map((m) => m.id);
  });
}
