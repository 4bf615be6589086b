import crypto from 'node:crypto';
import pg from 'pg';
import { createPostgresDatabase, type Database } from '../src/db/database.js';
import { migrate } from '../src/db/migrate.js';

export const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://root@127.0.0.1:5432/test';

/** Runs `work` from `concurrency` callers until `seconds` pass; returns completed operations per second. */
export async function rate(concurrency: number, seconds: number, work: (worker: number) => Promise<unknown>): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      while (performance.now() < end) {
        await work(worker);
        done += 1;
      }
    }),
  );
  return done / ((performance.now() - started) / 1000);
}

export interface BenchDatabase {
  url: string;
  db: Database;
  open(poolMax: number): Database;
  drop(): Promise<void>;
}

/** A fresh, migrated database on the benchmark server, dropped afterwards. */
export async function benchDatabase(): Promise<BenchDatabase> {
  const name = `authtrail_bench_${crypto.randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const pools: Database[] = [];
  const open = (poolMax: number) => {
    const db = createPostgresDatabase({ url: url.toString(), poolMax, statementTimeoutMs: 60_000, connectTimeoutMs: 5000 });
    pools.push(db);
    return db;
  };
  const db = open(10);
  await migrate(db);
  return {
    url: url.toString(),
    db,
    open,
    async drop() {
      await Promise.all(pools.map((p) => p.close().catch(() => {})));
      const c = new pg.Client({ connectionString: ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export function fmt(n: number): string {
  return n < 100 ? n.toFixed(1) : Math.round(n).toLocaleString('en-US');
}

/**
 * Fills audit_log with `rows` login records spread evenly over the 30 days from `start` (an SQL
 * timestamptz expression), straight in SQL: load for the query and page benches, not a valid chain.
 * The months they fall in get their partitions first, so nothing lands in the DEFAULT one.
 */
export async function seedLoginRecords(db: Database, rows: number, start: string): Promise<void> {
  await db.exec(`SELECT audit_log_add_month(m) FROM generate_series(date_trunc('month', ${start}), ${start} + interval '30 days', interval '1 month') m;
    ALTER TABLE audit_log DISABLE TRIGGER USER;
    INSERT INTO audit_log (seq, event_id, occurred_at, event_type, outcome, reason, username, account, user_id, ip, user_agent, device_id, mfa_method, details, prev_hash, hash)
    SELECT g, gen_random_uuid(), ${start} + (g * (30 * 86400.0 / ${rows})) * interval '1 second',
           CASE WHEN g % 5 = 0 THEN 'login.succeeded' ELSE 'login.failed' END,
           CASE WHEN g % 5 = 0 THEN 'success' ELSE 'failure' END,
           CASE WHEN g % 5 = 0 THEN NULL ELSE 'wrong_password' END,
           'user' || (g % 20000) || '@example.com', 'user' || (g % 20000) || '@example.com', NULL,
           CASE WHEN g % 3 = 0 THEN ('2001:db8:' || to_hex(g % 4096) || '::' || to_hex(g % 65535))::inet
                ELSE ('10.' || (g % 256) || '.' || ((g / 256) % 256) || '.' || (g % 250 + 1))::inet END,
           'Mozilla/5.0', 'device-' || (g % 50000), 'none', json_build_object('attempt', g % 5 + 1),
           sha256(('p' || g)::bytea), sha256(('h' || g)::bytea)
      FROM generate_series(1, ${rows}) g;
    ALTER TABLE audit_log ENABLE TRIGGER USER;
    ANALYZE audit_log;`);
}
