import crypto from 'node:crypto';
import pg from 'pg';
import { createPostgresDatabase, type Database } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';

/** The server tests run against; they fail (never skip) when it does not answer. */
export const ADMIN_URL = process.env.TEST_DATABASE_URL ?? 'postgres://root@127.0.0.1:5432/test';

export function urlFor(database: string, options: { user?: string; params?: string } = {}): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${database}`;
  if (options.user) url.username = options.user;
  return options.params ? `${url.toString()}?${options.params}` : url.toString();
}

/** Runs one statement as the administrative (superuser) connection. */
export async function adminQuery(sql: string, params: unknown[] = [], database?: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: database ? urlFor(database) : ADMIN_URL });
  await client.connect();
  try {
    return await client.query(sql, params);
  } finally {
    await client.end();
  }
}

/** Runs a statement as a superuser with the append-only triggers switched off for that session: how an attacker with the database tampers. */
export async function asSuperuser(database: string, sql: string, params: unknown[] = []): Promise<void> {
  const client = new pg.Client({ connectionString: urlFor(database) });
  await client.connect();
  try {
    await client.query('SET session_replication_role = replica');
    await client.query(sql, params);
  } finally {
    await client.end();
  }
}

export interface TestDatabase {
  name: string;
  url: string;
  db: Database;
  /** Opens another pool on the same database (another "instance"). */
  open(options?: { user?: string; params?: string }): Database;
  drop(): Promise<void>;
}

/** A fresh, migrated database for one test file, dropped at the end. */
export async function createTestDatabase(options: { template?: string; migrate?: boolean } = {}): Promise<TestDatabase> {
  const name = `authtrail_t_${crypto.randomBytes(6).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name}${options.template ? ` TEMPLATE ${options.template}` : ''}`);
  const pools: Database[] = [];
  const open = (o: { user?: string; params?: string } = {}): Database => {
    const db = createPostgresDatabase({
      url: urlFor(name, o),
      poolMax: 10,
      statementTimeoutMs: 10_000,
      connectTimeoutMs: 3000,
    });
    pools.push(db);
    return db;
  };
  const db = open();
  if (options.migrate !== false && !options.template) await migrate(db);
  return {
    name,
    url: urlFor(name),
    db,
    open,
    async drop() {
      await Promise.all(pools.map((p) => p.close().catch(() => {})));
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}
