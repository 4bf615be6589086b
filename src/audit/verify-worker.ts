// One range of a parallel verification, in its own thread with its own connection.
import { parentPort, workerData } from 'node:worker_threads';
import { createPostgresDatabase } from '../db/database.js';
import { walkRange } from './verify-chain.js';
import type { RangeTask, RangeReply } from './verify-parallel.js';

const task = workerData as RangeTask;
const db = createPostgresDatabase({ url: task.url, poolMax: 2, statementTimeoutMs: 600_000, connectTimeoutMs: 10_000, applicationName: 'authtrail-verify' });
try {
  const outcome = await walkRange(db, {
    start: {
      seq: task.afterSeq,
      hash: Buffer.from(task.startHash, 'hex'),
      prevHash: task.startPrevHash ? Buffer.from(task.startPrevHash, 'hex') : undefined,
    },
    endSeq: task.endSeq,
    trusted: new Map(task.trusted.map(([seq, hash]) => [seq, Buffer.from(hash, 'hex')])),
    batchSize: task.batchSize,
  });
  const reply: RangeReply = {
    ok: true,
    broken: outcome.broken,
    accountMismatch: outcome.accountMismatch,
    checked: outcome.checked,
    checkpointsChecked: outcome.checkpointsChecked,
    lastGoodCheckpoint: outcome.lastGoodCheckpoint ? { seq: outcome.lastGoodCheckpoint.seq, hash: outcome.lastGoodCheckpoint.hash.toString('hex') } : undefined,
  };
  parentPort!.postMessage(reply);
} catch (err) {
  parentPort!.postMessage({ ok: false, error: (err as Error).message } satisfies RangeReply);
} finally {
  await db.close();
}
