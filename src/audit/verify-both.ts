import type { Queryable } from '../db/database.js';
import { loadCheckpoints, summarizeWalks, walkRange, type VerifyOptions, type VerifyResult } from './verify-chain.js';
import { GENESIS_HASH } from './canonical.js';
import { verifyTree, type TreeResult } from './verify-tree.js';
import { verifyExportFile, type ExportResult } from './verify-export.js';
import { verifyChainParallel } from './verify-parallel.js';

/**
 * Hands pages of leaf hashes from the chain walk to the tree check, both running on one thread:
 * the producer waits while a few pages are unread, and stops being waited for once the consumer
 * has all it needs (the tree may cover fewer records than the log).
 */
class LeafChannel implements AsyncIterable<Buffer[]> {
  private readonly pages: Buffer[][] = [];
  private ended = false;
  private abandoned = false;
  private wakeConsumer: (() => void) | undefined;
  private wakeProducer: (() => void) | undefined;

  async push(page: Buffer[]): Promise<void> {
    if (this.abandoned) return;
    this.pages.push(page);
    this.wakeConsumer?.();
    while (this.pages.length > 4 && !this.abandoned) await new Promise<void>((resolve) => (this.wakeProducer = resolve));
  }

  end(): void {
    this.ended = true;
    this.wakeConsumer?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer[]> {
    try {
      for (;;) {
        const page = this.pages.shift();
        if (page) {
          this.wakeProducer?.();
          yield page;
        } else if (this.ended) {
          return;
        } else {
          await new Promise<void>((resolve) => (this.wakeConsumer = resolve));
        }
      }
    } finally {
      this.abandoned = true;
      this.wakeProducer?.();
    }
  }
}

/**
 * Full verification of the chain and the Merkle tree from one read of the records, on one thread:
 * each record is encoded once and gives both its chain hash and its leaf hash. The results are
 * those of `verifyChain` and `verifyTree` run separately.
 */
export async function verifyChainAndTree(
  db: Pick<Queryable, 'query'>,
  options: VerifyOptions,
): Promise<{ chain: VerifyResult; tree: TreeResult }> {
  const { trusted, findings, roots } = options.checkpoints ?? (await loadCheckpoints(db, options));
  const start = options.startAfter ?? { seq: 0, hash: GENESIS_HASH };
  if (start.seq !== 0) throw new RangeError('the tree is verified from the first record: start the chain there too');
  const channel = new LeafChannel();
  const walking = walkRange(db, { start, trusted, batchSize: options.batchSize, onLeaves: (leaves) => channel.push(leaves) }).finally(() => channel.end());
  const [outcome, fed] = await Promise.all([walking, verifyTree(db, { roots, leaves: channel })]);
  const chain = await summarizeWalks(db, { findings, outcomes: [outcome], trusted, walkedThrough: outcome.checked });
  // A broken chain ends the leaves early; the tree is then checked on its own, from the stored
  // records, so its findings are exactly those of a separate run.
  const tree = outcome.broken ? await verifyTree(db, { roots }) : fed;
  return { chain, tree };
}

/**
 * Everything a full verification of the database checks, as `npm run audit:verify` and the
 * compliance report run it: the checkpoints (table and export file), the chain, the tree, and the
 * export file's own line chain. With `url` (PostgreSQL), the chain is cut into ranges checked on
 * every core and the tree is checked after it; without (PGlite serves one connection), one pass
 * reads each record once for both.
 */
export async function verifyDatabase(
  db: Pick<Queryable, 'query'>,
  options: Pick<VerifyOptions, 'trustedKeys' | 'origin'> & { checkpointFiles: readonly string[]; url?: string | undefined },
): Promise<{ chain: VerifyResult; tree: TreeResult; exported: ExportResult | undefined }> {
  const verifyOptions = { trustedKeys: options.trustedKeys, origin: options.origin, ...(options.checkpointFiles.length > 0 ? { checkpointFile: options.checkpointFiles } : {}) };
  const checkpoints = await loadCheckpoints(db, verifyOptions);
  const { chain, tree } = options.url
    ? { chain: await verifyChainParallel(db, { ...verifyOptions, checkpoints, url: options.url }), tree: await verifyTree(db, { roots: checkpoints.roots }) }
    : await verifyChainAndTree(db, { ...verifyOptions, checkpoints });
  const exported = options.checkpointFiles.length > 0 ? await verifyExportFile(db, options.checkpointFiles) : undefined;
  return { chain, tree, exported };
}
