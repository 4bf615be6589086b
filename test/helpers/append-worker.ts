// A separate gateway-like process that appends records to a shared database.
// argv: <database url> <count> <start at (epoch ms)> <worker id>
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { createPostgresDatabase } from '../../src/db/database.js';
import { sampleEvent } from './events.js';

const [url, countText, startAtText, worker] = process.argv.slice(2);
const db = createPostgresDatabase({ url: url!, poolMax: 4, statementTimeoutMs: 10_000, connectTimeoutMs: 3000 });
const writer = createChainWriter(db, { batchMax: 64, writeTimeoutMs: 20_000 });
await db.query('SELECT 1'); // connected before the starting gun
await new Promise((r) => setTimeout(r, Math.max(0, Number(startAtText) - Date.now())));
const count = Number(countText);
const results = await Promise.allSettled(
  Array.from({ length: count }, (_, i) => writer.recordEvent(sampleEvent(i, { deviceId: `worker-${worker}` }))),
);
const seqs = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.seq] : []));
const failed = results.filter((r) => r.status === 'rejected').length;
await writer.close();
await db.close();
process.stdout.write(JSON.stringify({ seqs, failed, batches: writer.stats().batches }));
