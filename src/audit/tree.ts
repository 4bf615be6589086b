import type { Database, Queryable } from '../db/database.js';
import { AUDIT_CHAIN_LOCK } from '../db/advisory-locks.js';
import { recordLeafHash, type ChainRecord } from './canonical.js';
import { EMPTY_ROOT, HASH_SIZE, treeRoot, type NodeSource } from './merkle.js';
import { TILE_WIDTH, appendLeaves, tileNodeSource, tileWidth, type Tile, type TileReader } from './tiles.js';

/**
 * The Merkle tree over the audit log as the database stores it: C2SP tlog-tiles of height 8 in
 * `audit_tiles` (migration 008). Leaf n−1 is SHA-256(0x00 ‖ canonical(record n)).
 *
 * The chain writer keeps the tree's right edge — the partial tile of each level — in memory and
 * appends each batch's leaves to it inside the batch's transaction, so the log and its tree
 * always commit together and a batch never re-reads a tile. After another process wrote, the
 * edge is read again under the chain's lock (one query), and records that have no leaf yet
 * (written before migration 008, or by an older gateway during a rolling upgrade) are hashed in.
 */

const Q = <R>(db: Pick<Queryable, 'query'>, text: string, params?: readonly unknown[]) => db.query<R>(text, params);

const asBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** Hashes at tile level `level` in a tree of `size` leaves. */
const countAt = (size: number, level: number): number => Math.floor(size / TILE_WIDTH ** level);

/** The tree's size and the contents of the rightmost, partial tile of every level (absent when the level's count is a multiple of 256). */
export class TreeEdge {
  private constructor(
    readonly size: number,
    private readonly partial: ReadonlyMap<number, Buffer>,
  ) {}

  static empty(): TreeEdge {
    return new TreeEdge(0, new Map());
  }

  /** An edge from stored tiles; `tiles` maps `level/index` to their stored contents. */
  static fromTiles(size: number, read: (level: number, index: number) => Buffer | undefined): TreeEdge {
    const partial = new Map<number, Buffer>();
    for (let level = 0; countAt(size, level) > 0; level++) {
      const width = countAt(size, level) % TILE_WIDTH;
      if (width === 0) continue;
      const index = Math.floor(countAt(size, level) / TILE_WIDTH);
      const data = read(level, index);
      if (!data || data.length !== width * HASH_SIZE) {
        throw new TreeCorruptError(`tile ${level}/${index} holds ${data ? data.length / HASH_SIZE : 0} hashes, ${width} expected at tree size ${size}`);
      }
      partial.set(level, data);
    }
    return new TreeEdge(size, partial);
  }

  /** Tile reader for {@link appendLeaves}: only the partial tiles at this size exist here. */
  private readonly reader: TileReader = (level, index, width) => {
    const data = this.partial.get(level);
    if (!data || index !== Math.floor(countAt(this.size, level) / TILE_WIDTH) || data.length < width * HASH_SIZE) {
      return Promise.reject(new TreeCorruptError(`tile ${level}/${index} is not on the tree's right edge`));
    }
    return Promise.resolve(data);
  };

  /**
   * Appends leaf hashes: returns the grown edge and every changed tile (full contents, as
   * {@link appendLeaves} computes them). Pure: this edge is unchanged, so a failed transaction
   * leaves the cached edge as it was.
   */
  async append(leaves: readonly Buffer[]): Promise<{ edge: TreeEdge; tiles: Tile[] }> {
    if (leaves.length === 0) return { edge: this, tiles: [] };
    const tiles = await appendLeaves(this.size, leaves, this.reader);
    const size = this.size + leaves.length;
    const partial = new Map<number, Buffer>();
    for (let level = 0; countAt(size, level) > 0; level++) {
      const width = countAt(size, level) % TILE_WIDTH;
      if (width === 0) continue;
      const index = Math.floor(countAt(size, level) / TILE_WIDTH);
      const changed = tiles.find((t) => t.level === level && t.index === index);
      const data = changed ? changed.data : this.partial.get(level);
      if (!data || data.length !== width * HASH_SIZE) throw new TreeCorruptError(`tile ${level}/${index} was not computed`);
      partial.set(level, data);
    }
    return { edge: new TreeEdge(size, partial), tiles };
  }

  /** The partial tile (level, index) at this size: the rightmost one of its level. */
  tileData(level: number, index: number): Buffer {
    const data = this.partial.get(level);
    if (!data || index !== Math.floor(countAt(this.size, level) / TILE_WIDTH)) throw new TreeCorruptError(`tile ${level}/${index} is not a partial tile at size ${this.size}`);
    return data;
  }

  /** Node source over the right edge: every node of the decomposition of `size`, so the root. */
  private nodeSource(): NodeSource {
    const source = tileNodeSource((level, index, width) => this.reader(level, index, width), this.size);
    return source;
  }

  /** The root hash of the tree (RFC 9162 MTH), computed from the edge alone. */
  root(): Promise<Buffer> {
    return this.size === 0 ? Promise.resolve(Buffer.from(EMPTY_ROOT)) : treeRoot(this.size, this.nodeSource());
  }
}

/** The stored tiles contradict each other or the log: the tree cannot be extended. */
export class TreeCorruptError extends Error {
  readonly code = 'ERR_AUDIT_TREE_CORRUPT';
  override readonly name = 'TreeCorruptError';
}

/** Leaves in the stored tree: read from the last level-0 tile. */
export async function readTreeSize(db: Pick<Queryable, 'query'>): Promise<number> {
  const { rows } = await Q<{ idx: number; n: number }>(db, 'SELECT idx, octet_length(hashes) AS n FROM public.audit_tiles WHERE level = 0 ORDER BY idx DESC LIMIT 1');
  const last = rows[0];
  return last ? last.idx * TILE_WIDTH + last.n / HASH_SIZE : 0;
}

/** The stored tree's right edge (two queries: the size, then the partial tiles). */
export async function readTreeEdge(db: Pick<Queryable, 'query'>): Promise<TreeEdge> {
  const size = await readTreeSize(db);
  const wanted: Array<[number, number]> = [];
  for (let level = 0; countAt(size, level) > 0; level++) {
    if (countAt(size, level) % TILE_WIDTH !== 0) wanted.push([level, Math.floor(countAt(size, level) / TILE_WIDTH)]);
  }
  if (wanted.length === 0) return TreeEdge.fromTiles(size, () => undefined);
  const { rows } = await Q<{ level: number; idx: number; hashes: Uint8Array }>(
    db,
    'SELECT level, idx, hashes FROM public.audit_tiles WHERE (level, idx) IN (SELECT * FROM unnest($1::smallint[], $2::bigint[]))',
    [wanted.map(([l]) => l), wanted.map(([, i]) => i)],
  );
  const found = new Map(rows.map((r) => [`${r.level}/${r.idx}`, asBuffer(r.hashes)]));
  return TreeEdge.fromTiles(size, (level, index) => found.get(`${level}/${index}`));
}

/**
 * The statement that stores changed tiles, its parameters numbered from `$first`: a new tile is
 * inserted, a grown one gets only its new hashes appended (the trigger of migration 008 allows
 * nothing else). Returns each tile's stored width, which {@link checkTileWidths} holds to what was
 * computed.
 */
export const upsertTilesSql = (first = 1): string => `INSERT INTO public.audit_tiles (level, idx, hashes)
  SELECT * FROM unnest($${first}::smallint[], $${first + 1}::bigint[], $${first + 2}::bytea[])
  ON CONFLICT (level, idx) DO UPDATE SET hashes = audit_tiles.hashes || EXCLUDED.hashes
  RETURNING level, idx, octet_length(hashes) AS n`;

/** Parameters of {@link upsertTilesSql} for tiles computed by growing a tree from `oldSize`. */
export function tileParams(oldSize: number, tiles: readonly Tile[]): [number[], number[], Buffer[]] {
  const levels: number[] = [];
  const indexes: number[] = [];
  const appended: Buffer[] = [];
  for (const tile of tiles) {
    const had = tileWidth(tile.level, tile.index, oldSize);
    levels.push(tile.level);
    indexes.push(tile.index);
    appended.push(tile.data.subarray(had * HASH_SIZE));
  }
  return [levels, indexes, appended];
}

/** Throws unless every tile is stored with exactly the width computed (so a stale edge can never append at the wrong place). */
export function checkTileWidths(tiles: readonly Tile[], rows: ReadonlyArray<{ level: number; idx: number; n: number }>): void {
  const stored = new Map(rows.map((r) => [`${r.level}/${r.idx}`, r.n / HASH_SIZE]));
  for (const tile of tiles) {
    const width = stored.get(`${tile.level}/${tile.index}`);
    if (width !== tile.width) throw new TreeCorruptError(`tile ${tile.level}/${tile.index} is stored with ${width} hashes, ${tile.width} computed`);
  }
}

/** Stores the tiles of a grown tree (one statement). */
export async function writeTiles(tx: Pick<Queryable, 'query'>, oldSize: number, tiles: readonly Tile[]): Promise<void> {
  if (tiles.length === 0) return;
  const { rows } = await Q<{ level: number; idx: number; n: number }>(tx, upsertTilesSql(), tileParams(oldSize, tiles));
  checkTileWidths(tiles, rows);
}

/** SQL that yields each record's fields in their canonical text (docs/audit-chain.md), from `seq > $1`, `$2` rows. */
export const CANONICAL_SELECT = `
  SELECT seq, event_id::text AS event_id, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_at,
         event_type, outcome, reason, username, user_id::text AS user_id, host(ip) AS ip, user_agent, device_id, mfa_method,
         session_id::text AS session_id, request_id, actor_id::text AS actor_id, details::text AS details
    FROM public.audit_log WHERE seq > $1 ORDER BY seq LIMIT $2`;

/**
 * Hashes the stored records after `edge.size` up to `toSeq` into the tree and writes their tiles,
 * a page at a time. Fails on a gap in `seq`: the tree covers a dense prefix of the log.
 */
export async function extendFromLog(tx: Pick<Queryable, 'query'>, edge: TreeEdge, toSeq: number, pageSize = 4096): Promise<TreeEdge> {
  let current = edge;
  while (current.size < toSeq) {
    const { rows } = await Q<ChainRecord>(tx, CANONICAL_SELECT, [current.size, Math.min(pageSize, toSeq - current.size)]);
    if (rows.length === 0) throw new TreeCorruptError(`record ${current.size + 1} is missing: the tree cannot cover records up to ${toSeq}`);
    const leaves: Buffer[] = [];
    for (const row of rows) {
      if (row.seq !== current.size + leaves.length + 1) throw new TreeCorruptError(`record ${current.size + leaves.length + 1} is missing from the log`);
      leaves.push(recordLeafHash(row));
    }
    const { edge: next, tiles } = await current.append(leaves);
    await writeTiles(tx, current.size, tiles);
    current = next;
  }
  return current;
}

/**
 * Builds the tiles of records that have none yet (start-up after migration 008, `npm run
 * migrate`): chunks of `chunk` records, each in its own transaction under the chain's lock, so
 * the writers of running gateways wait at most one chunk. Returns the records added.
 */
export async function backfillTree(db: Database, options: { chunk?: number; onProgress?: (size: number, head: number) => void } = {}): Promise<number> {
  const chunk = options.chunk ?? 10_000;
  let added = 0;
  for (;;) {
    const step = await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [...AUDIT_CHAIN_LOCK]);
      const { rows } = await tx.query<{ seq: number | null }>('SELECT max(seq) AS seq FROM public.audit_log');
      const head = rows[0]?.seq ?? 0;
      const edge = await readTreeEdge(tx);
      if (edge.size > head) throw new TreeCorruptError(`the tree covers ${edge.size} records but the log ends at ${head}`);
      if (edge.size === head) return { n: 0, size: edge.size, head };
      const next = await extendFromLog(tx, edge, Math.min(head, edge.size + chunk));
      return { n: next.size - edge.size, size: next.size, head };
    });
    added += step.n;
    if (step.n > 0) options.onProgress?.(step.size, step.head);
    if (step.size >= step.head) return added;
  }
}

/** Reads stored tiles for {@link tileNodeSource}: the first `width` hashes of tile (level, index). */
export function databaseTileReader(db: Pick<Queryable, 'query'>): TileReader {
  return async (level, index, width) => {
    const { rows } = await Q<{ hashes: Uint8Array }>(db, 'SELECT hashes FROM public.audit_tiles WHERE level = $1 AND idx = $2', [level, index]);
    const data = rows[0] ? asBuffer(rows[0].hashes) : undefined;
    if (!data || data.length < width * HASH_SIZE) throw new TreeCorruptError(`tile ${level}/${index} holds fewer than ${width} hashes`);
    return data.subarray(0, width * HASH_SIZE);
  };
}

/** Node source over the stored tree of `size` leaves (a few tiles read per proof or root). */
export function storedTree(db: Pick<Queryable, 'query'>, size: number): NodeSource & { readonly size: number } {
  return tileNodeSource(databaseTileReader(db), size);
}

/** The root of the stored tree at `size` leaves. */
export function storedRoot(db: Pick<Queryable, 'query'>, size: number): Promise<Buffer> {
  return treeRoot(size, storedTree(db, size));
}
