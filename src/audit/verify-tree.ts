import type { Queryable } from '../db/database.js';
import { readStoredRecords, storedLeafHash } from './stored-records.js';
import { HASH_SIZE } from './merkle.js';
import { TILE_WIDTH, tilesForSize, type Tile } from './tiles.js';
import { TreeEdge } from './tree.js';
import { TimeSlicer, type RecordSource } from './verify-chain.js';

/** What the tree check found wrong (docs/audit-chain.md, "Verification"). */
export type TreeProblem = 'tile_mismatch' | 'tree_size_mismatch' | 'checkpoint_root_mismatch';

export interface TreeFinding {
  seq: number;
  problem: TreeProblem;
  detail: string;
}

/** A tile_mismatch with the tile's level and the last record under the bad hash. */
interface TileFinding extends TreeFinding {
  level: number;
  through: number;
}

export interface TreeResult {
  valid: boolean;
  /** Leaves the stored tiles hold. */
  tree_size: number;
  /** Records hashed into the recomputed tree. */
  leaves_checked: number;
  /** Stored tiles compared with the recomputed ones. */
  tiles_checked: number;
  /** Signed checkpoint roots compared with the recomputed tree's root at their size. */
  roots_checked: number;
  /** The recomputed root at `tree_size`, standard base64 (when the walk got there). */
  root?: string;
  first_invalid_seq?: number;
  problem?: TreeProblem;
  detail?: string;
}

/** Reads one level's stored tiles in `idx` order, a page at a time. */
class TileCursor {
  private page: Array<{ idx: number; hashes: Buffer }> = [];
  private next = 0;
  constructor(
    private readonly db: Pick<Queryable, 'query'>,
    private readonly level: number,
  ) {}

  async get(index: number): Promise<Buffer | undefined> {
    for (;;) {
      while (this.page.length > 0 && this.page[0]!.idx < index) this.page.shift();
      if (this.page.length > 0) return this.page[0]!.idx === index ? this.page[0]!.hashes : undefined;
      if (this.next > index) return undefined;
      const { rows } = await this.db.query<{ idx: number; hashes: Uint8Array }>(
        'SELECT idx, hashes FROM public.audit_tiles WHERE level = $1 AND idx >= $2 ORDER BY idx LIMIT 64',
        [this.level, index],
      );
      this.page = rows.map((r) => ({ idx: r.idx, hashes: Buffer.from(r.hashes) }));
      this.next = rows.length < 64 ? Number.MAX_SAFE_INTEGER : rows[rows.length - 1]!.idx + 1;
      if (rows.length === 0) return undefined;
    }
  }
}

/** The leaf hashes of the records `from`+1..`size`, a few thousand at a time; ends early at a gap in seq. */
async function* storedLeaves(db: RecordSource, from: number, size: number, pageSize: number, slicer: TimeSlicer): AsyncGenerator<Buffer[]> {
  let walked = from;
  let leaves: Buffer[] = [];
  reading: for await (const records of readStoredRecords(db, from, pageSize)) {
    for (const record of records) {
      if (slicer.due()) await slicer.pause();
      if (walked === size || record.seq !== walked + 1) break reading;
      leaves.push(storedLeafHash(record));
      walked += 1;
    }
    // Each page handed over re-reads the tree's partial tiles: not for every chunk read.
    if (leaves.length >= 4096) {
      yield leaves;
      leaves = [];
    }
  }
  if (leaves.length > 0) yield leaves;
}

/**
 * The stored tree's size and the log's last seq, from one snapshot: a record and its leaf are
 * committed together, so a tree shorter than the log is never a verification racing a writer.
 */
async function readSizes(db: Pick<Queryable, 'query'>): Promise<{ size: number; head: number }> {
  const { rows } = await db.query<{ size: number | null; head: number | null }>(
    `SELECT (SELECT least(idx, ${Math.floor(Number.MAX_SAFE_INTEGER / TILE_WIDTH) - 1}) * ${TILE_WIDTH} + octet_length(hashes) / ${HASH_SIZE}
               FROM public.audit_tiles WHERE level = 0 ORDER BY idx DESC LIMIT 1) AS size,
            (SELECT least(max(seq), ${Number.MAX_SAFE_INTEGER}) FROM public.audit_log) AS head`,
  );
  return { size: rows[0]?.size ?? 0, head: rows[0]?.head ?? 0 };
}

/** The first leaf (as a seq) under hash `position` of tile (level, index). */
const seqOf = (level: number, index: number, position: number): number => (index * TILE_WIDTH + position) * TILE_WIDTH ** level + 1;

/**
 * Where the walk over `audit_log` starts when a prefix of the log was archived (docs/archives.md):
 * either the archived records' leaf hashes, fed in order by `leaves` (the archive verifier reads
 * them from the segments: every tile and checkpoint root over them is checked as over records in
 * the database), or only the stored tree's `edge` at the archive's end (the archived prefix is then
 * not checked: its checkpoint roots are skipped).
 */
export type TreePrefix =
  | { size: number; leaves: (sink: (leaves: Buffer[]) => Promise<void>) => Promise<void> }
  | { size: number; edge: TreeEdge };

/**
 * Recomputes the Merkle tree from the records and holds the stored tiles to it: every full tile
 * as the walk completes it, the partial tiles at the stored tree's size, no tile beyond it, and
 * the root of every signed checkpoint note at its size. Streams the records a page at a time and
 * keeps only the tree's right edge in memory. Reports the lowest seq under a bad hash.
 */
export async function verifyTree(
  db: RecordSource,
  options: {
    roots: ReadonlyMap<number, Buffer>;
    batchSize?: number;
    slicer?: TimeSlicer;
    /** The archived prefix of the log, when there is one (docs/archives.md). */
    prefix?: TreePrefix | undefined;
    /**
     * The leaf hashes of the records in the database, in seq order from the first after the
     * prefix (from 1 without one), a page at a time, instead of reading the records again
     * ({@link verifyChainAndTree} feeds them from the chain walk); ends early at a gap.
     */
    leaves?: AsyncIterable<Buffer[]> | undefined;
  },
): Promise<TreeResult> {
  const pageSize = options.batchSize ?? 5000;
  const slicer = options.slicer ?? new TimeSlicer();
  const { size: storedSize, head } = await readSizes(db);
  const cursors = new Map<number, TileCursor>();
  const cursor = (level: number) => cursors.get(level) ?? cursors.set(level, new TileCursor(db, level)).get(level)!;
  const findings: TreeFinding[] = [];
  const tileFindings: TileFinding[] = [];
  const skipped = options.prefix && 'edge' in options.prefix ? options.prefix.size : 0;
  const checkpointSizes = [...options.roots.keys()].filter((size) => size <= storedSize && size > skipped).sort((a, b) => a - b);
  let nextCheckpoint = 0;
  let tilesChecked = 0;
  let rootsChecked = 0;
  let lastGoodRoot = skipped;
  let rootMismatch: (TreeFinding & { through: number }) | undefined;

  const compare = (tile: Tile, stored: Buffer | undefined): void => {
    tilesChecked += 1;
    if (stored?.equals(tile.data)) return;
    let at = 0;
    while (stored && at < tile.width && stored.subarray(at * HASH_SIZE, (at + 1) * HASH_SIZE).equals(tile.data.subarray(at * HASH_SIZE, (at + 1) * HASH_SIZE))) at += 1;
    const position = Math.min(at, tile.width - 1);
    const seq = seqOf(tile.level, tile.index, position);
    const what = !stored ? 'is missing' : stored.length !== tile.data.length ? `holds ${stored.length / HASH_SIZE} hashes, ${tile.width} recomputed` : `differs from the records at hash ${at}`;
    const through = seqOf(tile.level, tile.index, position + 1) - 1;
    tileFindings.push({ seq, through, level: tile.level, problem: 'tile_mismatch', detail: `tile ${tile.level}/${tile.index} ${what}` });
  };

  let edge = options.prefix && 'edge' in options.prefix ? options.prefix.edge : TreeEdge.empty();
  const grow = async (leaves: Buffer[]): Promise<void> => {
    const { edge: next, tiles } = await edge.append(leaves);
    // Full tiles are final: compare them now. Partial ones only at the end, at the stored size.
    for (const tile of tiles) if (tile.width === TILE_WIDTH) compare(tile, await cursor(tile.level).get(tile.index));
    edge = next;
    while (nextCheckpoint < checkpointSizes.length && checkpointSizes[nextCheckpoint]! <= edge.size) {
      const size = checkpointSizes[nextCheckpoint]!;
      nextCheckpoint += 1;
      if (size !== edge.size) continue; // leaves are appended up to each checkpoint size exactly (below)
      rootsChecked += 1;
      if ((await edge.root()).equals(options.roots.get(size)!)) {
        lastGoodRoot = size;
      } else if (!rootMismatch) {
        // The records after the last checkpoint whose root matched were changed. Decided at the end:
        // a bad tile in that range names the changed record itself.
        rootMismatch = {
          seq: lastGoodRoot + 1,
          through: size,
          problem: 'checkpoint_root_mismatch',
          detail: `the signed checkpoint of tree size ${size} names another root than the records give; records ${lastGoodRoot + 1}..${size} were rewritten`,
        };
      }
    }
  };

  let walked = edge.size;
  /** Appends leaves up to the stored size, cut at each checkpoint size exactly so that every signed root is compared. */
  const feed = async (incoming: Buffer[]): Promise<void> => {
    let rest = incoming.length > storedSize - walked ? incoming.slice(0, Math.max(0, storedSize - walked)) : incoming;
    while (rest.length > 0) {
      const cut = checkpointSizes[nextCheckpoint];
      const take = cut !== undefined && cut > walked && cut - walked < rest.length ? cut - walked : rest.length;
      walked += take;
      await grow(rest.slice(0, take));
      rest = rest.slice(take);
    }
  };
  if (options.prefix && 'leaves' in options.prefix) await options.prefix.leaves(feed);

  // Then the records in the database, up to the stored tree's size. When the archive gave fewer
  // leaves than it should have, they cannot be placed: the tree ends at the archive's gap.
  if (walked === (options.prefix?.size ?? 0)) {
    for await (const page of options.leaves ?? storedLeaves(db, walked, storedSize, pageSize, slicer)) {
      await feed(page);
      if (walked === storedSize) break;
    }
  } else if (options.leaves) {
    // Started and closed, so that its producer stops waiting for a reader.
    const unread = options.leaves[Symbol.asyncIterator]();
    await unread.next();
    await unread.return?.();
  }

  if (head > storedSize) {
    // Such records are in no checkpoint a witness cosigns, and no inclusion proof reaches them.
    findings.push({ seq: storedSize + 1, problem: 'tree_size_mismatch', detail: `the log holds records up to ${head} but the tree covers only ${storedSize}: records ${storedSize + 1}.. are in no tile` });
  }
  if (walked < storedSize) {
    findings.push({ seq: walked + 1, problem: 'tree_size_mismatch', detail: `the tree covers ${storedSize} records but the log holds only ${walked} before a gap or its end` });
  } else {
    // The partial tiles at the stored size, and nothing beyond the tiles of that size.
    for (const { level, index, width } of tilesForSize(storedSize)) {
      if (width === TILE_WIDTH) continue;
      compare({ level, index, width, data: edge.tileData(level, index) }, await cursor(level).get(index));
    }
    const expected = new Map<number, number>();
    for (const { level } of tilesForSize(storedSize)) expected.set(level, (expected.get(level) ?? 0) + 1);
    const { rows } = await db.query<{ level: number; n: number }>('SELECT level, count(*)::int AS n FROM public.audit_tiles GROUP BY level ORDER BY level');
    for (const { level, n } of rows) {
      if (n !== (expected.get(level) ?? 0)) {
        findings.push({ seq: storedSize + 1, problem: 'tree_size_mismatch', detail: `level ${level} holds ${n} tiles, ${expected.get(level) ?? 0} at tree size ${storedSize}` });
      }
    }
  }
  const beyond = [...options.roots.keys()].filter((size) => size > storedSize).sort((a, b) => a - b)[0];
  if (beyond !== undefined) {
    findings.push({ seq: storedSize + 1, problem: 'tree_size_mismatch', detail: `a signed checkpoint covers ${beyond} records but the tree ends at ${storedSize}` });
  }

  // A changed record changes its hash at every level above it: a bad hash whose records hold a bad
  // hash of a lower level is that one's consequence, and the lowest level names the record itself.
  for (const f of tileFindings) {
    if (!tileFindings.some((g) => g.level < f.level && g.seq >= f.seq && g.seq <= f.through)) findings.push(f);
  }
  if (rootMismatch && !findings.some((f) => f.problem === 'tile_mismatch' && f.seq >= rootMismatch!.seq && f.seq <= rootMismatch!.through)) {
    findings.push({ seq: rootMismatch.seq, problem: rootMismatch.problem, detail: rootMismatch.detail });
  }
  const first = findings.sort((a, b) => a.seq - b.seq)[0];
  const result: TreeResult = {
    valid: !first,
    tree_size: storedSize,
    leaves_checked: walked - skipped,
    tiles_checked: tilesChecked,
    roots_checked: rootsChecked,
  };
  if (walked === storedSize) result.root = (await edge.root()).toString('base64');
  if (first) Object.assign(result, { first_invalid_seq: first.seq, problem: first.problem, detail: first.detail });
  return result;
}
