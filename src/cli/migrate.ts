import { backfillTree } from '../audit/tree.js';
import { ConfigError, loadConfig } from '../config.js';
import { migrate } from '../db/migrate.js';
import { openDatabase } from '../runtime.js';

/** `npm run migrate`: applies pending migrations to DATABASE_URL (or the embedded database). */
async function run(): Promise<number> {
  const config = loadConfig(process.env, { requireSigningKeys: false });
  const db = await openDatabase(config, 'authtrail-migrate');
  try {
    const applied = await migrate(db);
    console.log(applied.length > 0 ? `applied: ${applied.join(', ')}` : 'database is up to date');
    // Records written before migration 008 get their Merkle tree tiles (the gateway does it at start-up too).
    const added = await backfillTree(db);
    if (added > 0) console.log(`audit Merkle tree: ${added} records hashed into audit_tiles`);
    return 0;
  } finally {
    await db.close();
  }
}

run().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof ConfigError ? err.message : `migrate failed: ${(err as Error).message}`);
    process.exit(1);
  },
);
