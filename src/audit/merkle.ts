/**
 * RFC 6962 / RFC 9162 Merkle trees over SHA-256: hashes, tree heads, inclusion and consistency
 * proofs (generation and verification). Pure code: no I/O, no database.
 *
 * Conventions (RFC 9162 §2.1):
 * - a leaf hash is SHA-256(0x00 ‖ data), an interior node SHA-256(0x01 ‖ left ‖ right);
 * - MTH of the empty tree is SHA-256("");
 * - the tree over n > 1 leaves splits at k, the largest power of two smaller than n.
 *
 * A node is named (level, index): the hash of the perfect subtree of 2^level leaves that starts at
 * leaf index·2^level. Sizes and indexes are JavaScript numbers and must be safe integers.
 *
 * Proofs list hashes from the leaf (or the old tree) upwards, in the order of RFC 9162.
 */
import crypto from 'node:crypto';

/** Bytes in every hash of the tree. */
export const HASH_SIZE = 32;

/** MTH({}) = SHA-256 of the empty string. */
export const EMPTY_ROOT: Buffer = crypto.hash('sha256', Buffer.alloc(0), 'buffer');

const sha256 = (data: Uint8Array): Buffer => crypto.hash('sha256', data, 'buffer');

const LEAF_PREFIX = 0x00;
const NODE_PREFIX = 0x01;

/** SHA-256(0x00 ‖ data): the hash of one log entry. */
export function leafHash(data: Uint8Array): Buffer {
  const input = Buffer.allocUnsafe(data.length + 1);
  input[0] = LEAF_PREFIX;
  input.set(data, 1);
  return sha256(input);
}

const nodeScratch = Buffer.allocUnsafe(1 + 2 * HASH_SIZE);

/** SHA-256(0x01 ‖ left ‖ right): the hash of an interior node. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  if (left.length === HASH_SIZE && right.length === HASH_SIZE) {
    nodeScratch[0] = NODE_PREFIX;
    nodeScratch.set(left, 1);
    nodeScratch.set(right, 1 + HASH_SIZE);
    return sha256(nodeScratch);
  }
  return sha256(Buffer.concat([Buffer.of(NODE_PREFIX), left, right]));
}

/**
 * MTH of a sequence of leaf hashes (or, more generally, of the hashes of consecutive perfect
 * subtrees of equal height). O(n) hashing, O(log n) memory besides the input.
 */
export function rootOf(leafHashes: readonly Uint8Array[]): Buffer {
  const n = leafHashes.length;
  if (n === 0) return Buffer.from(EMPTY_ROOT);
  // A stack of perfect subtrees, heights strictly decreasing: the binary decomposition of the count so far.
  const stack: { height: number; hash: Uint8Array }[] = [];
  for (let i = 0; i < n; i++) {
    // Read, never written: no copy. Every node above is a new buffer.
    let hash: Uint8Array = leafHashes[i]!;
    let height = 0;
    while (stack.length > 0 && stack[stack.length - 1]!.height === height) {
      hash = nodeHash(stack.pop()!.hash, hash);
      height += 1;
    }
    stack.push({ height, hash });
  }
  // MTH of a ragged tree: fold the perfect subtrees from the right.
  let root = stack.pop()!.hash;
  while (stack.length > 0) root = nodeHash(stack.pop()!.hash, root);
  return n === 1 ? Buffer.from(root) : (root as Buffer);
}

/**
 * Where node hashes come from: a store of tiles, an in-memory array, a database table.
 * `node(level, index)` is the hash of the perfect subtree of 2^level leaves starting at leaf
 * index·2^level. The callers in this module only ask for nodes that are complete within the tree
 * size they were given; a source may reject any other request.
 */
export interface NodeSource {
  node(level: number, index: number): Promise<Buffer>;
}

function checkSize(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative safe integer, got ${value}`);
}

/** The largest power of two strictly smaller than n (n ≥ 2). */
function splitPoint(n: number): number {
  let k = 2 ** Math.floor(Math.log2(n - 1));
  while (k >= n) k /= 2; // Math.log2 rounds near 2^53
  while (k * 2 < n) k *= 2;
  return k;
}

/** log2 of a power of two. */
function log2Exact(k: number): number {
  let level = 0;
  while (2 ** level < k) level += 1;
  return level;
}

/**
 * MTH(D[begin:end]) read from the source as the perfect subtrees of the binary decomposition of
 * end - begin, folded from the right. `begin` must be a multiple of the largest power of two not
 * above end - begin (true of every right-hand part RFC 9162 splits off).
 */
async function rangeRoot(begin: number, end: number, source: NodeSource): Promise<Buffer> {
  if (end === begin) return Buffer.from(EMPTY_ROOT);
  const parts: Promise<Buffer>[] = [];
  let at = begin;
  let remaining = end - begin;
  for (let level = log2Exact(splitPoint(remaining + 1)); remaining > 0; level -= 1) {
    const width = 2 ** level;
    if (remaining >= width) {
      parts.push(source.node(level, at / width));
      at += width;
      remaining -= width;
    }
  }
  const hashes = await Promise.all(parts);
  let root = hashes.pop()!;
  while (hashes.length > 0) root = nodeHash(hashes.pop()!, root);
  return root;
}

/** MTH(D[0:size]) from the nodes of a source (O(log size) nodes read). */
export async function treeRoot(size: number, source: NodeSource): Promise<Buffer> {
  checkSize('size', size);
  return Buffer.from(await rangeRoot(0, size, source));
}

/**
 * The hash of the subtree D[start:start+width] where width is a power of two: one node. Nodes of
 * the source are copied so that callers may modify proofs without touching the source.
 */
async function perfect(start: number, width: number, source: NodeSource): Promise<Buffer> {
  return Buffer.from(await source.node(log2Exact(width), start / width));
}

/**
 * PATH(index, D[0:size]) of RFC 9162 §2.1.3.1: the inclusion proof of leaf `index` in the tree of
 * `size` leaves, from the leaf's sibling upwards. Empty for a tree of one leaf.
 */
export async function inclusionProof(index: number, size: number, source: NodeSource): Promise<Buffer[]> {
  checkSize('index', index);
  checkSize('size', size);
  if (index >= size) throw new RangeError(`leaf index ${index} is not below the tree size ${size}`);
  // Walk down from the root: each split contributes the hash of the half the leaf is not in.
  const path: Promise<Buffer>[] = [];
  let start = 0;
  let n = size;
  let m = index;
  while (n > 1) {
    const k = splitPoint(n);
    if (m < k) {
      path.push(rangeRoot(start + k, start + n, source).then((h) => Buffer.from(h)));
      n = k;
    } else {
      path.push(perfect(start, k, source));
      start += k;
      m -= k;
      n -= k;
    }
  }
  return (await Promise.all(path)).reverse();
}

/**
 * PROOF(m, D[0:n]) of RFC 9162 §2.1.4.1: proves that the tree of m leaves is a prefix of the tree
 * of n leaves. Empty when m = n, and when m = 0 (every tree extends the empty tree; verifiers such
 * as {@link verifyConsistency} refuse m = 0 as meaningless).
 */
export async function consistencyProof(m: number, n: number, source: NodeSource): Promise<Buffer[]> {
  checkSize('m', m);
  checkSize('n', n);
  if (m > n) throw new RangeError(`old size ${m} exceeds new size ${n}`);
  if (m === 0 || m === n) return [];
  // SUBPROOF(m, D[start:start+size], b), unrolled: each step adds one hash, the deepest last.
  const proof: Promise<Buffer>[] = [];
  let start = 0;
  let size = n;
  let left = m;
  let complete = true; // b: the old tree is the whole left part seen so far
  while (left !== size) {
    const k = splitPoint(size);
    if (left <= k) {
      proof.push(rangeRoot(start + k, start + size, source).then((h) => Buffer.from(h)));
      size = k;
    } else {
      proof.push(perfect(start, k, source));
      start += k;
      left -= k;
      size -= k;
      complete = false;
    }
  }
  // left = size: the old tree ends at a node of this tree; unless it is the whole old tree, name it.
  if (!complete) proof.push(rangeRoot(start, start + size, source).then((h) => Buffer.from(h)));
  return (await Promise.all(proof)).reverse();
}

const isHash = (h: Uint8Array): boolean => h.length === HASH_SIZE;

/**
 * The root that an inclusion proof implies for `leaf` at `index` in a tree of `size` leaves
 * (RFC 9162 §2.1.3.2), or undefined if the proof has the wrong shape for that position.
 */
export function rootFromInclusion(leaf: Uint8Array, index: number, size: number, proof: readonly Uint8Array[]): Buffer | undefined {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return undefined;
  if (!isHash(leaf) || !proof.every(isHash)) return undefined;
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leaf);
  for (const p of proof) {
    if (sn === 0) return undefined;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn /= 2;
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : undefined;
}

/** Whether `proof` proves `leaf` at `index` in the tree of `size` leaves whose root is `root`. */
export function verifyInclusion(leaf: Uint8Array, index: number, size: number, proof: readonly Uint8Array[], root: Uint8Array): boolean {
  const computed = rootFromInclusion(leaf, index, size, proof);
  return computed !== undefined && isHash(root) && computed.equals(root);
}

/**
 * Whether `proof` proves that the tree of m leaves with root `rootM` is a prefix of the tree of n
 * leaves with root `rootN` (RFC 9162 §2.1.4.2). m = n needs an empty proof and equal roots; m = 0
 * is refused, as a proof from the empty tree proves nothing (transparency-dev/merkle does the same).
 */
export function verifyConsistency(m: number, n: number, rootM: Uint8Array, rootN: Uint8Array, proof: readonly Uint8Array[]): boolean {
  if (!Number.isSafeInteger(m) || !Number.isSafeInteger(n) || m < 1 || m > n) return false;
  if (!isHash(rootM) || !isHash(rootN) || !proof.every(isHash)) return false;
  if (m === n) return proof.length === 0 && Buffer.from(rootM).equals(rootN);
  if (proof.length === 0) return false;
  // The old tree is a perfect subtree of the new one: its root is the first hash of the path.
  const path = isPowerOfTwo(m) ? [rootM, ...proof] : proof;
  let fn = m - 1;
  let sn = n - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Buffer = Buffer.from(path[0]!);
  let sr: Buffer = Buffer.from(path[0]!);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn /= 2;
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && fr.equals(rootM) && sr.equals(rootN);
}

function isPowerOfTwo(x: number): boolean {
  if (x < 1) return false;
  while (x % 2 === 0) x /= 2;
  return x === 1;
}

/**
 * A {@link NodeSource} over leaf hashes held in memory (tests, small trees): every level is
 * computed once, 2n hashes in all. Asking for a node that is not complete throws a RangeError.
 */
export function memoryNodeSource(leaves: readonly Uint8Array[]): NodeSource & { readonly size: number } {
  const levels: Buffer[][] = [leaves.map((leaf) => Buffer.from(leaf))];
  for (let below = levels[0]!; below.length > 1; ) {
    const level: Buffer[] = [];
    for (let i = 0; i + 1 < below.length; i += 2) level.push(nodeHash(below[i]!, below[i + 1]!));
    levels.push(level);
    below = level;
  }
  return {
    size: leaves.length,
    node(level, index) {
      const hash = levels[level]?.[index];
      if (!Number.isSafeInteger(level) || !Number.isSafeInteger(index) || hash === undefined) {
        return Promise.reject(new RangeError(`node (${level}, ${index}) is not complete in a tree of ${leaves.length} leaves`));
      }
      return Promise.resolve(hash);
    },
  };
}
