import type { Queryable } from '../db/database.js';
import { loadCheckpoints, summarizeWalks, walkRange, type VerifyOptions, type VerifyResult } from './verify-chain.js';
import { GENESIS_HASH } from './canonical.js';
import { verifyTree, type TreeResult } from './verify-tree.js';

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
