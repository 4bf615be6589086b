import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { archivePartitions } from '../src/audit/archive.js';
import { GENESIS_HASH, chainHash, type ChainRecord } from '../src/audit/canonical.js';
import { createChainWriter } from '../src/audit/chain-writer.js';
import { keyIdOf } from '../src/audit/checkpoints.js';
import { formatMicros } from '../src/audit/clock.js';
import { backfillTree } from '../src/audit/tree.js';
import { verifyArchiveDirectory } from '../src/audit/verify-archive.js';
import { normalizeUsername } from '../src/users/usernames.js';
import { sampleEvent } from '../test/helpers/events.js';
import { benchDatabase, fmt } from './lib.js';

const ROWS = Number(process.env.BENCH_ARCHIVE_ROWS ?? 1_000_000);
const MONTHS = 2;

/** The first instant of the UTC month `back` months before now. */
function monthStart(back: number): Date {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - back, 1));
}

/**
 * Archives ROWS records in two closed months (written straight into their partitions, correctly
 * chained, then the Merkle tiles built as at start-up) and times `audit:archive`'s whole path —
 * read, check chain and tiles, gzip, write, read back and verify, record and drop — then the
 * archive verification of `audit:verify --archive` over the segments written.
 */
export async function benchArchive(): Promise<void> {
  const bench = await benchDatabase();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-bench-archive-'));
  try {
    console.log(`\n## Audit archive (PostgreSQL, ${fmt(ROWS)} records in ${MONTHS} monthly segments)`);
    const db = bench.db;
    let prev = GENESIS_HASH;
    let seq = 0;
    const seeded = performance.now();
    for (let m = 0; m < MONTHS; m++) {
      const start = monthStart(8 - m);
      await db.query('SELECT audit_log_add_month($1::timestamptz)', [start.toISOString()]);
      const count = Math.floor(ROWS / MONTHS) + (m === MONTHS - 1 ? ROWS % MONTHS : 0);
      // Spread over the first 25 days of the month, in seq order.
      const stepMicros = BigInt(Math.max(1, Math.floor((25 * 86_400_000_000) / Math.max(1, count))));
      for (let done = 0; done < count; done += 5000) {
        const n = Math.min(5000, count - done);
        const cols: unknown[][] = Array.from({ length: 19 }, () => []);
        for (let i = 0; i < n; i++) {
          seq += 1;
          const e = sampleEvent(seq);
          const record: ChainRecord = {
            seq, event_id: crypto.randomUUID(), occurred_at: formatMicros(BigInt(start.getTime()) * 1000n + BigInt(done + i) * stepMicros),
            event_type: e.eventType, outcome: e.outcome, reason: e.reason ?? null, username: e.username ?? null, user_id: e.userId ?? null,
            ip: e.ip ?? null, user_agent: e.userAgent ?? null, device_id: e.deviceId ?? null, mfa_method: e.mfaMethod ?? null,
            session_id: null, request_id: e.requestId ?? null, actor_id: null, details: JSON.stringify(e.details),
          };
          const hash = chainHash(prev, record);
          const values = [
            record.seq, record.event_id, record.occurred_at, record.event_type, record.outcome, record.reason, record.username, record.user_id,
            record.ip, record.user_agent, record.device_id, record.mfa_method, record.session_id, record.request_id, record.actor_id,
            record.details, prev, hash, record.username === null ? null : normalizeUsername(record.username),
          ];
          values.forEach((v, k) => cols[k]!.push(v));
          prev = hash;
        }
        await db.query(
          `INSERT INTO audit_log (seq, event_id, occurred_at, event_type, outcome, reason, username, user_id, ip, user_agent, device_id,
             mfa_method, session_id, request_id, actor_id, details, prev_hash, hash, account)
           SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::uuid[],
             $9::inet[], $10::text[], $11::text[], $12::text[], $13::uuid[], $14::text[], $15::uuid[], $16::json[], $17::bytea[], $18::bytea[], $19::text[])`,
          cols,
        );
      }
    }
    await backfillTree(db, { chunk: 50_000 });
    // The head stays in the database: a few records of today.
    const writer = createChainWriter(db, { batchMax: 64, writeTimeoutMs: 30_000 });
    await Promise.all(Array.from({ length: 10 }, (_, i) => writer.recordEvent(sampleEvent(i))));
    await writer.close();
    await db.query('ANALYZE audit_log');
    console.log(`(seeded ${fmt(ROWS)} records and their tiles in ${((performance.now() - seeded) / 1000).toFixed(1)} s)`);

    const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
    const key = { privateKey, publicKey, keyId: keyIdOf(publicKey) };
    let started = performance.now();
    const summary = await archivePartitions(db, { dir, hotDays: 90, retentionDays: 400, key, origin: 'bench.example/audit-log' });
    const archiveSeconds = (performance.now() - started) / 1000;
    const archived = summary.archived.reduce((n, a) => n + a.records, 0);
    const bytes = summary.archived.reduce((n, a) => n + a.bytes, 0);
    if (!summary.ok || archived !== ROWS) throw new Error(`benchmark archive did not archive every record: ${JSON.stringify({ ...summary, due_for_deletion: undefined })}`);

    started = performance.now();
    const verified = await verifyArchiveDirectory(db, [dir], { trustedKeys: new Map([[key.keyId, publicKey]]) });
    const verifySeconds = (performance.now() - started) / 1000;
    if (!verified.result.valid || verified.result.records !== ROWS) throw new Error(`benchmark archive did not verify: ${JSON.stringify(verified.result)}`);

    console.log(
      `archive write (read, check chain and tiles, gzip, write, read back, verify, drop)  ${fmt(archived / archiveSeconds).padStart(9)} rows/s   ` +
        `(${archiveSeconds.toFixed(1)} s; ${(bytes / 1e6).toFixed(1)} MB gzip, ${(bytes / archived).toFixed(0)} bytes a record)`,
    );
    console.log(`archive verification (signatures, file hashes, chain, tree)                   ${fmt(ROWS / verifySeconds).padStart(9)} rows/s   (${verifySeconds.toFixed(1)} s)`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    await bench.drop();
  }
}
