import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { GENESIS_HASH } from './canonical.js';
import { loadCheckpoints, summarizeWalks, verifyChain, type Finding, type RecordSource, type RangeOutcome, type VerifyOptions, type VerifyResult } from './verify-chain.js';

/** What a worker checks: the rows after `afterSeq` up to `endSeq`. */
export interface RangeTask {
  url: string;
  afterSeq: number;
  startHash: string;
  startPrevHash: string | undefined;
  endSeq: number;
  trusted: Array<[number, string]>;
  batchSize: number | undefined;
}

export type RangeReply =
  | { ok: true; broken: Finding | undefined; accountMismatch: Finding | undefined; checked: number; checkpointsChecked: number; lastGoodCheckpoint: { seq: number; hash: string } | undefined }
  | { ok: false; error: string };

/** Under tsx (tests, benchmarks) the worker is TypeScript: register tsx inside it first. */
function startWorker(task: RangeTask): Promise<RangeOutcome> {
  const source = import.meta.url.endsWith('.ts');
  const url = new URL(`./verify-worker.${source ? 'ts' : 'js'}`, import.meta.url);
  const worker = source
    ? new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(url.href)}); })`, { eval: true, workerData: task })
    : new Worker(url, { workerData: task });
  return new Promise((resolve, reject) => {
    worker.once('message', (reply: RangeReply) => {
      if (!reply.ok) reject(new Error(reply.error));
      else
        resolve({
          broken: reply.broken,
          accountMismatch: reply.accountMismatch,
          checked: reply.checked,
          checkpointsChecked: reply.checkpointsChecked,
          lastGoodCheckpoint: reply.lastGoodCheckpoint ? { seq: reply.lastGoodCheckpoint.seq, hash: Buffer.from(reply.lastGoodCheckpoint.hash, 'hex') } : undefined,
        });
    });
    worker.once('error', reject);
  });
}

export interface ParallelOptions extends VerifyOptions {
  /** The PostgreSQL URL each worker connects to. */
  url: string;
  /** Default: the machine's parallelism, at most 4. */
  workers?: number;
  /** Below this many records one thread is faster than starting workers. Default 100,000. */
  minRecords?: number;
}

/**
 * {@link verifyChain} with the chain cut into contiguous ranges, each checked by its own thread
 * and connection: the verifier is CPU-bound (parsing rows, re-encoding, SHA-256), so this uses
 * every core. Each range starts from the stored hash of the row before it, and the row before a
 * range is itself checked by the previous range, so no link goes unchecked. The findings are
 * the same as the sequential walk's.
 */
export async function verifyChainParallel(db: RecordSource, options: ParallelOptions): Promise<VerifyResult> {
  const workers = options.workers ?? Math.min(availableParallelism(), 4);
  const start = options.startAfter ?? { seq: 0, hash: GENESIS_HASH };
  const { rows } = await db.query<{ seq: number | null }>('SELECT max(seq) AS seq FROM audit_log');
  const head = rows[0]?.seq ?? 0;
  if (workers < 2 || head - start.seq < (options.minRecords ?? 100_000)) return verifyChain(db, options);

  const { trusted, findings } = options.checkpoints ?? (await loadCheckpoints(db, options));
  const size = Math.ceil((head - start.seq) / workers);
  const tasks: RangeTask[] = [];
  for (let i = 0; i < workers; i++) {
    const afterSeq = start.seq + i * size;
    const endSeq = Math.min(afterSeq + size, head);
    if (afterSeq >= endSeq) break;
    let startHash = start.hash.toString('hex');
    let startPrevHash: string | undefined;
    if (i > 0) {
      // The stored row just before the range (checked by the previous range); missing, the previous range reports the gap.
      const before = await db.query<{ hash: Uint8Array; prev_hash: Uint8Array }>(
        'SELECT hash, prev_hash FROM audit_log WHERE seq <= $1 ORDER BY seq DESC LIMIT 1',
        [afterSeq],
      );
      const row = before.rows[0];
      startHash = row ? Buffer.from(row.hash).toString('hex') : startHash;
      startPrevHash = row ? Buffer.from(row.prev_hash).toString('hex') : undefined;
    }
    tasks.push({
      url: options.url,
      afterSeq,
      startHash,
      startPrevHash,
      endSeq,
      trusted: [...trusted].filter(([seq]) => seq > afterSeq && seq <= endSeq).map(([seq, hash]) => [seq, hash.toString('hex')]),
      batchSize: options.batchSize,
    });
  }
  const outcomes = await Promise.all(tasks.map(startWorker));
  // A range knows only its own checkpoints: a rewrite spans back to the last matching one of any range.
  for (const outcome of outcomes) {
    const broken = outcome.broken;
    if (broken?.problem !== 'checkpoint_mismatch' || broken.checkpointSeq === undefined) continue;
    const at = broken.checkpointSeq;
    // A loop, not Math.max(...spread): hundreds of thousands of checkpoints overflow the call stack.
    let previous = start.seq;
    for (const seq of trusted.keys()) if (seq < at && seq > previous) previous = seq;
    outcome.broken = {
      ...broken,
      seq: previous + 1,
      detail: `the signed checkpoint at seq ${at} does not match the chain; records ${previous + 1}..${at} were rewritten`,
    };
  }
  return summarizeWalks(db, { findings, outcomes, trusted, walkedThrough: head });
}
