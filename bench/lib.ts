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
