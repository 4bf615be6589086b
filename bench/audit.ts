import crypto from 'node:crypto';
import { createChainWriter } from '../src/audit/chain-writer.js';
import { verifyChain } from '../src/audit/verify-chain.js';
import { verifyChainAndTree } from '../src/audit/verify-both.js';
import { sampleEvent } from '../test/helpers/events.js';
import { benchDatabase, fmt, rate } from './lib.js';

const CONCURRENCY = 64;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const POOL = 10; // DATABASE_POOL_MAX default, the same for both sides
const VERIFY_ROWS = Number(process.env.BENCH_VERIFY_ROWS ?? 500_000);

/** Chained appends through recordEvent vs plain autocommit INSERTs of the same rows, same concurrency and pool. */
export async function benchAudit(): Promise<void> {
  const bench = await benchDatabase();
  try {
    console.log(`\n## Audit chain (PostgreSQL, ${CONCURRENCY} concurrent callers, pool ${POOL}, ${SECONDS} s each)`);

    // The bound: one INSERT and one commit per row into a table of the same shape (no chain, no lock).
    // LIKE copies the partitioned parent's indexes; each month's partition also has unique indexes
    // on seq, event_id, prev_hash and hash (migration 013), which the bound gets too.
    await bench.db.exec(`CREATE TABLE plain_log (LIKE audit_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
      CREATE UNIQUE INDEX ON plain_log (seq); CREATE UNIQUE INDEX ON plain_log (event_id);
      CREATE UNIQUE INDEX ON plain_log (prev_hash); CREATE UNIQUE INDEX ON plain_log (hash);`);
    const plainDb = bench.open(POOL);
    let plainSeq = 0;
    const insertPlain = `INSERT INTO plain_log (seq, event_id, occurred_at, event_type, outcome, reason, username, user_id, ip,
      user_agent, device_id, mfa_method, session_id, request_id, actor_id, details, prev_hash, hash)
      VALUES ($1, $2, now(), $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12, NULL, $13, $14, $15)`;
    const plain = await rate(CONCURRENCY, SECONDS, (w) => {
      const e = sampleEvent(w);
      const seq = ++plainSeq;
      return plainDb.query(insertPlain, [
        seq, crypto.randomUUID(), e.eventType, e.outcome, e.reason, e.username, e.userId, e.ip, e.userAgent, e.deviceId,
        e.mfaMethod, e.requestId, JSON.stringify(e.details), crypto.randomBytes(32), crypto.randomBytes(32),
      ]);
    });

    const chainDb = bench.open(POOL);
    const writer = createChainWriter(chainDb, { batchMax: 256, writeTimeoutMs: 30_000 });
    const chained = await rate(CONCURRENCY, SECONDS, (w) => writer.recordEvent(sampleEvent(w)));
    const stats = writer.stats();
    console.log(`plain autocommit INSERT      ${fmt(plain).padStart(9)} rows/s`);
    console.log(`recordEvent (group commit)   ${fmt(chained).padStart(9)} rows/s   mean batch ${(stats.committed / stats.batches).toFixed(1)}`);
    console.log(`ratio chained / plain        ${(chained / plain).toFixed(2)}x   (target >= 2.0x, with the Merkle tree maintained)`);

    // Grow the chain, then time a full verification.
    const { rows } = await chainDb.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log');
    let have = rows[0]!.n;
    while (have < VERIFY_ROWS) {
      const n = Math.min(4096, VERIFY_ROWS - have);
      await Promise.all(Array.from({ length: n }, (_, i) => writer.recordEvent(sampleEvent(have + i))));
      have += n;
    }
    await writer.close();
    const verifiers = {
      'chain and tree, 1 thread    ': async () => {
        const { chain, tree } = await verifyChainAndTree(chainDb, { trustedKeys: new Map() });
        return { ...chain, valid: chain.valid && tree.valid };
      },
      'full verification, 1 thread ': () => verifyChain(chainDb, { trustedKeys: new Map() }),
    };
    for (const [name, verify] of Object.entries(verifiers)) {
      const runs: number[] = [];
      for (let i = 0; i < 3; i++) {
        const started = performance.now();
        const result = await verify();
        if (!result.valid || result.checked !== have) throw new Error(`benchmark chain did not verify: ${JSON.stringify(result)}`);
        runs.push(result.checked / ((performance.now() - started) / 1000));
      }
      runs.sort((a, b) => a - b);
      console.log(`${name}  ${fmt(runs[1]!).padStart(9)} rows/s   (median of 3 over ${fmt(have)} rows; min ${fmt(runs[0]!)}, max ${fmt(runs[2]!)}; target >= 100,000/s)`);
    }
  } finally {
    await bench.drop();
  }
}
