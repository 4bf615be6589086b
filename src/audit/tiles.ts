/**
 * C2SP tlog-tiles (https://c2sp.org/tlog-tiles): the Merkle tree stored as tiles of height 8.
 *
 * The tile at level L, index N holds up to 256 consecutive hashes of tree level 8·L: hash i of it
 * is node (8·L, N·256 + i), that is MTH(D[(N·256 + i)·256^L : (N·256 + i + 1)·256^L]). Level 0
 * tiles hold leaf hashes. A full tile holds 256 hashes (8,192 bytes); the rightmost tile of a
 * level may be partial, with W = floor(size / 256^L) mod 256 hashes, served at `.p/W`. Only full
 * tiles are hashed into the level above. Pure code: the storage is behind a {@link TileReader}.
 */
import { EMPTY_ROOT, HASH_SIZE, nodeHash, rootOf, type NodeSource } from './merkle.js';

/** Tree levels per tile. */
export const TILE_HEIGHT = 8;
/** Hashes in a full tile. */
export const TILE_WIDTH = 256;
/** Highest tile level the spec allows. */
export const MAX_TILE_LEVEL = 63;

/** A tile: its level, its index within the level and its width (256 for a full tile). */
export interface TileCoordinates {
  readonly level: number;
  readonly index: number;
  readonly width: number;
}

/** A tile with its contents: `width` concatenated 32-byte hashes. */
export interface Tile extends TileCoordinates {
  readonly data: Buffer;
}

/**
 * Reads the tile at (level, index): its hashes concatenated, at least `width` of them (the width
 * the tile has at the tree size of the caller; a wider or full version of the tile is fine, the
 * extra hashes are ignored). Two-argument readers are fine too.
 */
export type TileReader = (level: number, index: number, width: number) => Promise<Uint8Array>;

function checkCount(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative safe integer, got ${value}`);
}

/** `N` of a tile path: groups of three digits, every group but the last prefixed `x` (1234067 → x001/x234/067). */
export function encodeTileIndex(index: number): string {
  checkCount('tile index', index);
  let n = index;
  let path = String(n % 1000).padStart(3, '0');
  while (n >= 1000) {
    n = Math.floor(n / 1000);
    path = `x${String(n % 1000).padStart(3, '0')}/${path}`;
  }
  return path;
}

function suffix(width: number): string {
  if (!Number.isInteger(width) || width < 1 || width > TILE_WIDTH) throw new RangeError(`tile width must be 1..${TILE_WIDTH}, got ${width}`);
  return width === TILE_WIDTH ? '' : `.p/${width}`;
}

/** `tile/<L>/<N>[.p/<W>]`, relative to the log's prefix; `.p/W` only for a partial tile (W < 256). */
export function tilePath(level: number, index: number, width: number = TILE_WIDTH): string {
  if (!Number.isInteger(level) || level < 0 || level > MAX_TILE_LEVEL) throw new RangeError(`tile level must be 0..${MAX_TILE_LEVEL}, got ${level}`);
  return `tile/${level}/${encodeTileIndex(index)}${suffix(width)}`;
}

/** `tile/entries/<N>[.p/<W>]`: the entry bundle beside level-0 tile N. */
export function entryBundlePath(index: number, width: number = TILE_WIDTH): string {
  return `tile/entries/${encodeTileIndex(index)}${suffix(width)}`;
}

const TILE_PATH = /^tile\/(0|[1-9][0-9]?|entries)\/((?:x[0-9]{3}\/)*[0-9]{3})(?:\.p\/([1-9][0-9]{0,2}))?$/;

function parsePath(path: string): { level: number | 'entries'; index: number; width: number } | undefined {
  if (typeof path !== 'string') return undefined;
  const match = TILE_PATH.exec(path);
  if (!match) return undefined;
  const [, levelText, indexText, widthText] = match;
  const level = levelText === 'entries' ? 'entries' : Number(levelText);
  if (level !== 'entries' && level > MAX_TILE_LEVEL) return undefined;
  const digits = indexText!.replaceAll('x', '').replaceAll('/', '');
  const index = Number(digits);
  if (!Number.isSafeInteger(index)) return undefined;
  const width = widthText === undefined ? TILE_WIDTH : Number(widthText);
  if (widthText !== undefined && width >= TILE_WIDTH) return undefined; // a full tile has no .p/ suffix
  // Canonical form only: no leading x000 groups, and so on.
  if (encodeTileIndex(index) !== indexText) return undefined;
  return { level, index, width };
}

/**
 * Parses `tile/<L>/<N>[.p/<W>]` strictly: L 0..63 without leading zeros, N in canonical groups,
 * W 1..255 without leading zeros; anything else (including entry bundle paths) is undefined.
 */
export function parseTilePath(path: string): TileCoordinates | undefined {
  const parsed = parsePath(path);
  if (parsed === undefined || parsed.level === 'entries') return undefined;
  return { level: parsed.level, index: parsed.index, width: parsed.width };
}

/** Parses `tile/entries/<N>[.p/<W>]` strictly, as {@link parseTilePath}. */
export function parseEntryBundlePath(path: string): { index: number; width: number } | undefined {
  const parsed = parsePath(path);
  if (parsed === undefined || parsed.level !== 'entries') return undefined;
  return { index: parsed.index, width: parsed.width };
}

/** Hashes at tree level `height`·level in a tree of `size` leaves. */
function countAt(size: number, level: number, height: number): number {
  return Math.floor(size / 2 ** (height * level));
}

/** The width of tile (level, index) in a tree of `size` leaves: 256 when full, 1..255 when partial, 0 when absent. */
export function tileWidth(level: number, index: number, size: number): number {
  checkCount('size', size);
  const count = countAt(size, level, TILE_HEIGHT);
  return Math.max(0, Math.min(TILE_WIDTH, count - index * TILE_WIDTH));
}

/**
 * Every tile of a tree of `size` leaves, level by level, left to right: the full tiles and the
 * partial tile of each level. (A tree of 70,000 leaves has 273 full and one partial level-0 tile,
 * one full and one partial level-1 tile, one partial level-2 tile.) About size/255 entries.
 */
export function tilesForSize(size: number): TileCoordinates[] {
  return changedTiles(0, size);
}

/**
 * The tiles to write when the tree grows from `oldSize` to `newSize` leaves: at each level whose
 * hash count changed, the tile that was partial (now wider or full), the new full tiles and the
 * new partial tile. Every other tile is unchanged. `height` exists only to check this against
 * golang.org/x/mod/sumdb/tlog (height 10); C2SP tiles have height 8.
 */
export function changedTiles(oldSize: number, newSize: number, height: number = TILE_HEIGHT): TileCoordinates[] {
  checkCount('old size', oldSize);
  checkCount('new size', newSize);
  if (oldSize > newSize) throw new RangeError(`old size ${oldSize} exceeds new size ${newSize}`);
  if (!Number.isInteger(height) || height < 1 || height > 30) throw new RangeError(`tile height must be 1..30, got ${height}`);
  const full = 2 ** height;
  const tiles: TileCoordinates[] = [];
  for (let level = 0; countAt(newSize, level, height) > 0; level++) {
    const oldCount = countAt(oldSize, level, height);
    const newCount = countAt(newSize, level, height);
    if (oldCount === newCount) continue;
    const lastFull = Math.floor(newCount / full);
    for (let index = Math.floor(oldCount / full); index < lastFull; index++) tiles.push({ level, index, width: full });
    const width = newCount % full;
    if (width > 0) tiles.push({ level, index: lastFull, width });
  }
  return tiles;
}

/** Throws unless `data` is a tile of 32-byte hashes holding at least `count` of them. */
function checkTileData(data: Uint8Array, count: number, what: string): void {
  if (data.length % HASH_SIZE !== 0 || data.length > TILE_WIDTH * HASH_SIZE) {
    throw new RangeError(`${what}: ${data.length} bytes is not a tile of 32-byte hashes`);
  }
  if (data.length < count * HASH_SIZE) throw new RangeError(`${what}: holds ${data.length / HASH_SIZE} hashes, ${count} needed`);
}

/** The first `count` hashes of a tile, as views into it (no copies). */
function hashesOf(data: Uint8Array, count: number): Uint8Array[] {
  const hashes: Uint8Array[] = [];
  for (let i = 0; i < count; i++) hashes.push(data.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
  return hashes;
}

function splitHashes(data: Uint8Array, count: number, what: string): Buffer[] {
  checkTileData(data, count, what);
  const hashes: Buffer[] = [];
  for (let i = 0; i < count; i++) hashes.push(Buffer.from(data.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE)));
  return hashes;
}

/** The hash a full tile contributes to the tile level above: the root of its 256 hashes. */
export function tileRoot(data: Uint8Array): Buffer {
  return rootOf(splitHashes(data, TILE_WIDTH, 'tileRoot'));
}

/**
 * Appends leaf hashes to a tiled tree of `oldSize` leaves and returns the new contents of every
 * tile that changes (exactly {@link changedTiles}(oldSize, oldSize + n)), level 0 first. Reads
 * only the partial tile of each level at `oldSize` (never a full one): hashes of complete tiles
 * are carried upwards as they fill. Write the tiles returned; the partial tiles of the old size
 * may be kept (a checkpoint of that size refers to them) or dropped once full ones replace them.
 */
export async function appendLeaves(oldSize: number, leafHashes: readonly Uint8Array[], readTile: TileReader): Promise<Tile[]> {
  checkCount('old size', oldSize);
  checkCount('new size', oldSize + leafHashes.length);
  leafHashes.forEach((h, i) => {
    if (h.length !== HASH_SIZE) throw new RangeError(`leaf hash ${i} has ${h.length} bytes, not ${HASH_SIZE}`);
  });
  const tiles: Tile[] = [];
  // Each level's tile is filled in place, one 8 KiB buffer per tile: no per-hash copies.
  let incoming: readonly Uint8Array[] = leafHashes;
  let oldCount = oldSize;
  for (let level = 0; incoming.length > 0; level++) {
    let index = Math.floor(oldCount / TILE_WIDTH);
    const have = oldCount % TILE_WIDTH;
    let data = Buffer.allocUnsafe(TILE_WIDTH * HASH_SIZE);
    let width = 0;
    if (have > 0) {
      const stored = await readTile(level, index, have);
      checkTileData(stored, have, `tile ${tilePath(level, index, have)}`);
      data.set(stored.subarray(0, have * HASH_SIZE));
      width = have;
    }
    const completed: Buffer[] = [];
    for (const hash of incoming) {
      data.set(hash, width * HASH_SIZE);
      width += 1;
      if (width === TILE_WIDTH) {
        tiles.push({ level, index, width: TILE_WIDTH, data });
        completed.push(rootOf(hashesOf(data, TILE_WIDTH)));
        data = Buffer.allocUnsafe(TILE_WIDTH * HASH_SIZE);
        width = 0;
        index += 1;
      }
    }
    if (width > 0) tiles.push({ level, index, width, data: data.subarray(0, width * HASH_SIZE) });
    incoming = completed;
    oldCount = Math.floor(oldCount / TILE_WIDTH);
  }
  return tiles;
}

/**
 * The contents of tile (level, index) of width `width` read from any node source (for example
 * one over leaf hashes in a database): the nodes (8·level, index·256 + i) for i < width.
 */
export async function tileData(level: number, index: number, width: number, source: NodeSource): Promise<Buffer> {
  tilePath(level, index, width); // validates
  const nodes: Promise<Buffer>[] = [];
  for (let i = 0; i < width; i++) nodes.push(source.node(TILE_HEIGHT * level, index * TILE_WIDTH + i));
  return Buffer.concat(await Promise.all(nodes));
}

/** Root of 2^k hashes, k ≤ 8, by pairwise hashing. */
function perfectRoot(hashes: Buffer[]): Buffer {
  let row = hashes;
  while (row.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < row.length; i += 2) next.push(nodeHash(row[i]!, row[i + 1]!));
    row = next;
  }
  return row[0] ?? Buffer.from(EMPTY_ROOT);
}

export interface TileNodeSourceOptions {
  /** Tiles kept in memory, least recently used dropped first (default 16: 128 KiB). */
  readonly cacheTiles?: number;
}

/**
 * A {@link NodeSource} for the tree of `size` leaves stored as tiles. Node (h, i) is read from the
 * tile at level floor(h/8): directly when h is a multiple of 8, else hashed from the 2^(h mod 8)
 * hashes below it in that tile (at most 127 hashings). A proof or a root reads O(log size)
 * tiles; memory is bounded by the small tile cache, whatever the size. Nodes that are not
 * complete within `size` are refused with a RangeError.
 */
export function tileNodeSource(readTile: TileReader, size: number, options: TileNodeSourceOptions = {}): NodeSource & { readonly size: number } {
  checkCount('size', size);
  const limit = Math.max(1, options.cacheTiles ?? 16);
  const cache = new Map<string, Promise<Buffer[]>>();

  function tile(level: number, index: number): Promise<Buffer[]> {
    const key = `${level}/${index}`;
    const cached = cache.get(key);
    if (cached !== undefined) {
      cache.delete(key);
      cache.set(key, cached);
      return cached;
    }
    const width = tileWidth(level, index, size);
    const loading = readTile(level, index, width).then((data) => splitHashes(data, width, `tile ${tilePath(level, index, width)}`));
    cache.set(key, loading);
    loading.catch(() => cache.delete(key));
    while (cache.size > limit) cache.delete(cache.keys().next().value!);
    return loading;
  }

  return {
    size,
    async node(level, index) {
      if (!Number.isInteger(level) || level < 0 || level > TILE_HEIGHT * (MAX_TILE_LEVEL + 1) || !Number.isSafeInteger(index) || index < 0) {
        throw new RangeError(`node (${level}, ${index}) does not exist`);
      }
      if ((index + 1) * 2 ** level > size) throw new RangeError(`node (${level}, ${index}) is not complete in a tree of ${size} leaves`);
      const tileLevel = Math.floor(level / TILE_HEIGHT);
      const span = 2 ** (level - tileLevel * TILE_HEIGHT); // hashes of the tile level under this node
      const first = index * span;
      const hashes = await tile(tileLevel, Math.floor(first / TILE_WIDTH));
      const offset = first % TILE_WIDTH;
      return Buffer.from(perfectRoot(hashes.slice(offset, offset + span)));
    },
  };
}
