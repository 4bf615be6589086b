import type { Queryable } from '../db/database.js';
import { loadCheckpoints, summarizeWalks, walkRange, type RecordSource, type VerifyOptions, type VerifyResult } from './verify-chain.js';
import { GENESIS_HASH } from './canonical.js';
import {
  checkHotContinuity,
  readArchiveRows,
  readTreeEdgeAt,
  verifyArchiveDirectory,
  verifyArchiveRows,
  type ArchiveEnd,
  type ArchiveFinding,
  type ArchiveResult,
} from './verify-archive.js';
import { verifyTree, type TreePrefix, type TreeResult } from './verify-tree.js';
import { verifyExportFile, type ExportResult } from './verify-export.js';

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
 * those of `verifyChain` and `verifyTree` run separately. With an archived `prefix` the chain
 * starts after it (`startAfter`, at the prefix's size) and the tree over it as the prefix says.
 */
export async function verifyChainAndTree(
  db: RecordSource,
  options: VerifyOptions & { prefix?: TreePrefix | undefined },
): Promise<{ chain: VerifyResult; tree: TreeResult }> {
  const { trusted, findings, roots } = options.checkpoints ?? (await loadCheckpoints(db, options));
  const start = options.startAfter ?? { seq: 0, hash: GENESIS_HASH };
  if (start.seq !== (options.prefix?.size ?? 0)) throw new RangeError('the tree is verified from the first record after the archived prefix: start the chain there too');
  const { prefix } = options;
  const channel = new LeafChannel();
  const walking = walkRange(db, { start, trusted, batchSize: options.batchSize, onLeaves: (leaves) => channel.push(leaves) }).finally(() => channel.end());
  const [outcome, fed] = await Promise.all([walking, verifyTree(db, { roots, prefix, leaves: channel })]);
  const chain = await summarizeWalks(db, { findings, outcomes: [outcome], trusted, walkedThrough: start.seq + outcome.checked });
  // A broken chain ends the leaves early; the tree is then checked on its own, from the stored
  // records, so its findings are exactly those of a separate run.
  const tree = outcome.broken ? await verifyTree(db, { roots, prefix }) : fed;
  return { chain, tree };
}

/** The archive's rows; none before the partitions migration. */
async function archiveRows(db: Pick<Queryable, 'query'>) {
  const { rows } = await db.query<{ ready: boolean }>(`SELECT to_regclass('public.audit_archives') IS NOT NULL AS ready`);
  return rows[0]?.ready ? readArchiveRows(db) : [];
}

/** The archive's result with another finding: the lower bad seq wins. */
function withFinding(result: ArchiveResult, finding: ArchiveFinding | undefined): ArchiveResult {
  if (!finding || (result.first_invalid_seq !== undefined && result.first_invalid_seq <= finding.seq)) return result;
  return { ...result, valid: false, first_invalid_seq: finding.seq, problem: finding.problem, detail: finding.detail };
}

const findingOf = (result: ArchiveResult): ArchiveFinding | undefined =>
  result.first_invalid_seq !== undefined && result.problem !== undefined ? { seq: result.first_invalid_seq, problem: result.problem, detail: result.detail ?? '' } : undefined;

/** A log whose first records were archived (docs/archives.md), as a full verification covers it. */
interface ArchivedPrefix {
  /** Where the log in the database starts: after the last segment `audit_archives` records. */
  start: ArchiveEnd;
  /** How the tree check covers the archived records: from the segments' records, or from the stored tiles only. */
  tree: TreePrefix | undefined;
  /** What was checked of the archive, once the tree check has run (it reads the segments); undefined when nothing is archived and no directory was given. */
  result(): Promise<ArchiveResult | undefined>;
}

/**
 * Without directories, the manifests recorded in `audit_archives` are checked (signed by a
 * trusted key, chained without gap, each tree root that of the stored tiles), and the records in
 * the database are verified from the last one on. With `dirs`, the segments themselves are read
 * as well: every archived record rehashed along the chain from the genesis, held to the trusted
 * checkpoints, and fed to the tree check. Either way the database's first record must continue the
 * archive's last.
 */
async function archivedPrefix(
  db: Pick<Queryable, 'query'>,
  options: Pick<VerifyOptions, 'trustedKeys' | 'origin'> & { dirs: readonly string[]; checkpoints: ReadonlyMap<number, Buffer> },
): Promise<ArchivedPrefix> {
  const rows = await archiveRows(db);
  if (rows.length === 0 && options.dirs.length === 0) return { start: { seq: 0, hash: GENESIS_HASH }, tree: undefined, result: () => Promise.resolve(undefined) };
  const keys = { trustedKeys: options.trustedKeys, origin: options.origin };
  const recorded = await verifyArchiveRows(db, keys, rows);
  const start = recorded.end;
  const hot = () => checkHotContinuity(db, start);
  if (options.dirs.length === 0) {
    return { start, tree: { size: start.seq, edge: await readTreeEdgeAt(db, start.seq) }, result: async () => withFinding(recorded.result, await hot()) };
  }
  let read: ArchiveResult | undefined;
  return {
    start,
    tree: {
      size: start.seq,
      leaves: async (sink) => {
        read = (await verifyArchiveDirectory(db, options.dirs, { ...keys, rows, checkpoints: options.checkpoints, onLeaves: sink })).result;
      },
    },
    result: async () => withFinding(withFinding(read ?? recorded.result, findingOf(recorded.result)), await hot()),
  };
}

/**
 * Everything a full verification of the database checks, as `npm run audit:verify` and the
 * compliance report run it: the checkpoints (table and export file), the archived prefix (its
 * recorded manifests, and with `archiveDirs` its segments' records), the chain, the tree, and the
 * export file's own line chain. One pass reads each record once for both chain and tree (on
 * two cores this is faster than cutting the chain across threads and reading the records again
 * for the tree: docs/performance.md).
 */
export async function verifyDatabase(
  db: RecordSource,
  options: Pick<VerifyOptions, 'trustedKeys' | 'origin'> & { checkpointFiles: readonly string[]; archiveDirs?: readonly string[] | undefined },
): Promise<{ chain: VerifyResult; tree: TreeResult; exported: ExportResult | undefined; archive: ArchiveResult | undefined }> {
  const verifyOptions = { trustedKeys: options.trustedKeys, origin: options.origin, ...(options.checkpointFiles.length > 0 ? { checkpointFile: options.checkpointFiles } : {}) };
  const checkpoints = await loadCheckpoints(db, verifyOptions);
  const prefix = await archivedPrefix(db, { ...verifyOptions, dirs: options.archiveDirs ?? [], checkpoints: checkpoints.trusted });
  const chainOptions = { ...verifyOptions, checkpoints, ...(prefix.start.seq > 0 ? { startAfter: prefix.start } : {}) };
  const { chain, tree } = await verifyChainAndTree(db, { ...chainOptions, prefix: prefix.tree });
  const archive = await prefix.result();
  const exported = options.checkpointFiles.length > 0 ? await verifyExportFile(db, options.checkpointFiles) : undefined;
  return { chain, tree, exported, archive };
}
