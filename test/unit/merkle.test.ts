import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  EMPTY_ROOT,
  consistencyProof,
  inclusionProof,
  leafHash,
  memoryNodeSource,
  nodeHash,
  rootFromInclusion,
  rootOf,
  treeRoot,
  verifyConsistency,
  verifyInclusion,
  type NodeSource,
} from '../../src/audit/merkle.js';
import {
  TILE_WIDTH,
  appendLeaves,
  changedTiles,
  encodeTileIndex,
  entryBundlePath,
  parseEntryBundlePath,
  parseTilePath,
  tileData,
  tileNodeSource,
  tilePath,
  tileRoot,
  tileWidth,
  tilesForSize,
  type Tile,
  type TileReader,
} from '../../src/audit/tiles.js';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const b64 = (s: string): Buffer => Buffer.from(s, 'base64');

// transparency-dev/merkle testonly/constants.go: LeafInputs, NodeHashes, RootHashes.
const LEAF_INPUTS = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(hex);
const NODE_HASHES = [
  [
    '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
    '0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7',
    '07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7',
    'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    '4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658',
    'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
    '46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1',
  ],
  [
    'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
    '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
    '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
    'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
  ],
  ['d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7', '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4'],
  ['5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328'],
];
const ROOT_HASHES = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];
const LEAF_HASHES = LEAF_INPUTS.map(leafHash);

// transparency-dev/merkle cmd/proofgen/main.go: inclusionProofs (leaf index there is 1-based) and consistencyProofs.
const INCLUSION_VECTORS: { index: number; size: number; proof: string[] }[] = [
  { index: 0, size: 1, proof: [] },
  {
    index: 0,
    size: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    index: 5,
    size: 8,
    proof: [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
  { index: 2, size: 3, proof: ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125'] },
  {
    index: 1,
    size: 5,
    proof: [
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  },
];
const CONSISTENCY_VECTORS: { m: number; n: number; proof: string[] }[] = [
  { m: 1, n: 1, proof: [] },
  {
    m: 1,
    n: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    m: 6,
    n: 8,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
  {
    m: 2,
    n: 5,
    proof: ['5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', 'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b'],
  },
  {
    m: 6,
    n: 7,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
];

/** transparency-dev/merkle testdata/{inclusion,consistency}/**.json, gathered into one file (see its header). */
interface Probes {
  commit: string;
  inclusion: { path: string; leafIdx: number; treeSize: number; root: string; leafHash: string; proof: string[] | null; desc: string; wantErr: boolean }[];
  consistency: { path: string; size1: number; size2: number; root1: string; root2: string; proof: string[] | null; desc: string; wantErr: boolean }[];
}
const probes = JSON.parse(fs.readFileSync(new URL('./vectors/transparency-dev-merkle-probes.json', import.meta.url), 'utf8')) as Probes;

/** Tiles kept in a map, as a storage engineer would keep them in a table; the newest version of each. */
function tileStore(): { tiles: Map<string, Buffer>; write(tiles: Tile[]): void; read: TileReader; reads: number } {
  const store = {
    tiles: new Map<string, Buffer>(),
    reads: 0,
    write(tiles: Tile[]) {
      for (const t of tiles) store.tiles.set(`${t.level}/${t.index}`, t.data);
    },
    read: (level: number, index: number) => {
      store.reads += 1;
      const data = store.tiles.get(`${level}/${index}`);
      return data === undefined ? Promise.reject(new Error(`no tile ${level}/${index}`)) : Promise.resolve(data);
    },
  };
  return store;
}

async function tiledTree(leaves: Buffer[], batches: number[] = [leaves.length]): Promise<ReturnType<typeof tileStore>> {
  const store = tileStore();
  let size = 0;
  for (const count of batches) {
    const batch = leaves.slice(size, size + count);
    const tiles = await appendLeaves(size, batch, store.read);
    assert.deepEqual(
      tiles.map(({ level, index, width }) => ({ level, index, width })),
      changedTiles(size, size + batch.length),
    );
    store.write(tiles);
    size += batch.length;
  }
  return store;
}

const numbered = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));

function flipped(proof: Buffer[], at: number, bit = 1): Buffer[] {
  return proof.map((h, i) => {
    if (i !== at) return h;
    const copy = Buffer.from(h);
    copy[at % 32]! ^= bit;
    return copy;
  });
}

describe('RFC 6962 hashing (transparency-dev/merkle rfc6962/rfc6962_test.go)', () => {
  it('hashes the empty tree, leaves and nodes as published', () => {
    assert.equal(EMPTY_ROOT.toString('hex'), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(leafHash(Buffer.alloc(0)).toString('hex'), '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
    assert.equal(leafHash(Buffer.from('L123456')).toString('hex'), '395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56');
    assert.equal(nodeHash(Buffer.from('N123'), Buffer.from('N456')).toString('hex'), 'aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb');
  });

  it('golang.org/x/mod sumdb/tlog: the record hash of "hello world" and the empty tree', () => {
    // sumdb/tlog/note_test.go TestFormatTree: RecordHash("hello world") is the tree line TszzRg…
    assert.equal(leafHash(Buffer.from('hello world')).toString('base64'), 'TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=');
    // sumdb/tlog/tlog_test.go TestEmptyTree
    assert.deepEqual(rootOf([]), EMPTY_ROOT);
  });
});

describe('tree heads over the standard 8 test leaves (testonly/constants.go)', () => {
  it('leaf hashes and every complete node match NodeHashes', async () => {
    const source = memoryNodeSource(LEAF_HASHES);
    for (const [level, row] of NODE_HASHES.entries()) {
      for (const [index, want] of row.entries()) assert.equal((await source.node(level, index)).toString('hex'), want, `node (${level}, ${index})`);
    }
    await assert.rejects(source.node(3, 1), RangeError);
    await assert.rejects(source.node(0, 8), RangeError);
  });

  it('roots of sizes 0..8 match RootHashes, from rootOf, a memory source and a tile source', async () => {
    const store = await tiledTree(LEAF_HASHES, [3, 1, 4]);
    for (let size = 0; size <= 8; size++) {
      const want = ROOT_HASHES[size]!;
      assert.equal(rootOf(LEAF_HASHES.slice(0, size)).toString('hex'), want, `rootOf ${size}`);
      assert.equal((await treeRoot(size, memoryNodeSource(LEAF_HASHES.slice(0, size)))).toString('hex'), want, `memory ${size}`);
      assert.equal((await treeRoot(size, memoryNodeSource(LEAF_HASHES))).toString('hex'), want, `memory prefix ${size}`);
      assert.equal((await treeRoot(size, tileNodeSource(store.read, size))).toString('hex'), want, `tiles ${size}`);
    }
  });
});

describe('proofs (transparency-dev/merkle cmd/proofgen/main.go)', () => {
  const source = memoryNodeSource(LEAF_HASHES);

  for (const v of INCLUSION_VECTORS) {
    it(`inclusion of leaf ${v.index} in a tree of ${v.size}: generated exactly, and verified`, async () => {
      const proof = await inclusionProof(v.index, v.size, source);
      assert.deepEqual(proof.map((h) => h.toString('hex')), v.proof);
      const root = hex(ROOT_HASHES[v.size]!);
      assert.equal(verifyInclusion(LEAF_HASHES[v.index]!, v.index, v.size, proof, root), true);
      assert.deepEqual(rootFromInclusion(LEAF_HASHES[v.index]!, v.index, v.size, proof), root);
    });
  }

  for (const v of CONSISTENCY_VECTORS) {
    it(`consistency from ${v.m} to ${v.n}: generated exactly, and verified`, async () => {
      const proof = await consistencyProof(v.m, v.n, source);
      assert.deepEqual(proof.map((h) => h.toString('hex')), v.proof);
      assert.equal(verifyConsistency(v.m, v.n, hex(ROOT_HASHES[v.m]!), hex(ROOT_HASHES[v.n]!), proof), true);
    });
  }

  it('refuses impossible requests', async () => {
    await assert.rejects(inclusionProof(8, 8, source), RangeError);
    await assert.rejects(inclusionProof(0, 0, source), RangeError);
    await assert.rejects(consistencyProof(5, 4, source), RangeError);
    await assert.rejects(inclusionProof(0, 9, source), RangeError); // the source has only 8 leaves
    assert.deepEqual(await consistencyProof(0, 8, source), []);
  });
});

describe(`verification probes (transparency-dev/merkle testdata @ ${probes.commit.slice(0, 12)})`, () => {
  it(`all ${probes.inclusion.length} inclusion probes`, () => {
    for (const p of probes.inclusion) {
      const ok = verifyInclusion(b64(p.leafHash), p.leafIdx, p.treeSize, (p.proof ?? []).map(b64), b64(p.root));
      assert.equal(ok, !p.wantErr, `${p.path}: ${p.desc}`);
    }
  });

  // The Go verifier compares roots of equal sizes without looking at them; these are 15 bytes
  // ("don't care 2"), not hashes, and verifyConsistency refuses any root that is not 32 bytes.
  const stricter = new Set(['testdata/consistency/additional/sizes-are-equal-one-and-proof-is-empty.json']);

  it(`all ${probes.consistency.length} consistency probes`, () => {
    for (const p of probes.consistency) {
      const ok = verifyConsistency(p.size1, p.size2, b64(p.root1), b64(p.root2), (p.proof ?? []).map(b64));
      assert.equal(ok, !p.wantErr && !stricter.has(p.path), `${p.path}: ${p.desc}`);
    }
  });
});

describe('tile paths (C2SP tlog-tiles, golang.org/x/mod sumdb/tlog tlog_test.go)', () => {
  it('encodes N in groups of three digits', () => {
    assert.equal(encodeTileIndex(1234067), 'x001/x234/067'); // C2SP tlog-tiles
    assert.equal(encodeTileIndex(1), '001'); // tile/4/0/001
    assert.equal(encodeTileIndex(123456078), 'x123/x456/078'); // tile/3/5/x123/x456/078
    assert.equal(encodeTileIndex(3057500), 'x003/x057/500'); // tile/1/data/x003/x057/500
    assert.equal(encodeTileIndex(0), '000');
    assert.equal(encodeTileIndex(1000), 'x001/000');
    assert.equal(tilePath(5, 123456078), 'tile/5/x123/x456/078');
    assert.equal(tilePath(5, 123456078, 2), 'tile/5/x123/x456/078.p/2');
    assert.equal(tilePath(0, 1, 5), 'tile/0/001.p/5');
    assert.equal(entryBundlePath(3057500), 'tile/entries/x003/x057/500');
    assert.throws(() => tilePath(64, 0), RangeError);
    assert.throws(() => tilePath(0, 0, 0), RangeError);
    assert.throws(() => tilePath(0, -1), RangeError);
  });

  it('parses canonical paths and refuses every other form', () => {
    assert.deepEqual(parseTilePath('tile/0/x001/x234/067'), { level: 0, index: 1234067, width: 256 });
    assert.deepEqual(parseTilePath('tile/5/x123/x456/078.p/2'), { level: 5, index: 123456078, width: 2 });
    assert.deepEqual(parseTilePath('tile/63/000.p/255'), { level: 63, index: 0, width: 255 });
    assert.deepEqual(parseEntryBundlePath('tile/entries/x003/x057/500.p/7'), { index: 3057500, width: 7 });
    for (const bad of [
      'tile/3/123/456/078', // golang.org/x/mod: groups without x
      'tile/3/-1/123/456/078',
      'tile/00/001',
      'tile/64/001',
      'tile/0/x000/001',
      'tile/0/1',
      'tile/0/0001',
      'tile/0/x1234/001',
      'tile/0/001.p/256',
      'tile/0/001.p/0',
      'tile/0/001.p/010',
      'tile/0/001.p/',
      'tile/0/001/',
      '/tile/0/001',
      'tile/0/001\n',
      'tile/entries/001',
      'tile/data/001',
      'tile/0/x009/x007/x199/x254/x740/x992', // beyond 2^53
    ]) {
      assert.equal(parseTilePath(bad), undefined, bad);
    }
    assert.equal(parseEntryBundlePath('tile/0/001'), undefined);
    for (const [level, index, width] of [[0, 0, 256], [1, 999, 1], [2, 1000, 255], [63, 9007199254740991, 3]] as const) {
      assert.deepEqual(parseTilePath(tilePath(level, index, width)), { level, index, width });
    }
  });

  it('lists the tiles of a tree as C2SP describes (70,000 and 256 leaves)', () => {
    const tiles = tilesForSize(70000);
    const level0 = tiles.filter((t) => t.level === 0);
    assert.equal(level0.filter((t) => t.width === 256).length, 273);
    assert.deepEqual(level0.at(-1), { level: 0, index: 273, width: 112 });
    assert.deepEqual(tiles.filter((t) => t.level > 0), [
      { level: 1, index: 0, width: 256 },
      { level: 1, index: 1, width: 17 },
      { level: 2, index: 0, width: 1 },
    ]);
    assert.deepEqual(tilesForSize(256), [{ level: 0, index: 0, width: 256 }, { level: 1, index: 0, width: 1 }]);
    assert.deepEqual(tilesForSize(0), []);
    assert.equal(tileWidth(1, 1, 70000), 17);
    assert.equal(tileWidth(1, 2, 70000), 0);
    assert.equal(tileWidth(0, 12, 70000), 256);
  });

  it('lists the tiles that change as NewTiles does (golang.org/x/mod sumdb/tlog tile_test.go, height 10)', () => {
    for (const [oldSize, newSize, want] of [
      [1, 1, 0],
      [100, 101, 1],
      [1023, 1025, 3],
      [1024, 1030, 1],
      [1030, 2000, 1],
      [1030, 10000, 10],
      [49516517, 49516586, 3],
    ] as const) {
      assert.equal(changedTiles(oldSize, newSize, 10).length, want, `${oldSize} → ${newSize}`);
    }
  });
});

describe('tiles built incrementally', () => {
  it('hold exactly the nodes of the tree, for batches of every shape', async () => {
    const leaves = numbered(70000);
    const store = await tiledTree(leaves, [1, 255, 1, 300, 65000, 2, 4441]);
    const memory = memoryNodeSource(leaves);
    for (const t of tilesForSize(leaves.length)) {
      const stored = store.tiles.get(`${t.level}/${t.index}`)!;
      assert.equal(stored.length, t.width * 32, tilePath(t.level, t.index, t.width));
      assert.deepEqual(stored, await tileData(t.level, t.index, t.width, memory));
      if (t.width === TILE_WIDTH) assert.deepEqual(tileRoot(stored), await memory.node(8 * (t.level + 1), t.index));
    }
    assert.equal(store.tiles.size, tilesForSize(leaves.length).length);
    const tiles = tileNodeSource(store.read, leaves.length);
    assert.deepEqual(await treeRoot(leaves.length, tiles), rootOf(leaves));
    for (const size of [65535, 65536, 65537, 69999]) {
      assert.deepEqual(await treeRoot(size, tileNodeSource(store.read, size)), rootOf(leaves.slice(0, size)), `older size ${size}`);
    }
  });

  it('refuses tiles that are too short and nodes that are not complete', async () => {
    const source = tileNodeSource(() => Promise.resolve(Buffer.alloc(32 * 3)), 1000);
    await assert.rejects(source.node(0, 10), /3 hashes, 256 needed/);
    await assert.rejects(source.node(0, 1000), RangeError);
    await assert.rejects(source.node(10, 0), RangeError);
    await assert.rejects(appendLeaves(5, [Buffer.alloc(32)], () => Promise.resolve(Buffer.alloc(64))), /2 hashes, 5 needed/);
    await assert.rejects(appendLeaves(0, [Buffer.alloc(31)], () => Promise.resolve(Buffer.alloc(0))), RangeError);
  });
});

describe('properties (fast-check)', () => {
  const tree = fc
    .integer({ min: 1, max: 2000 })
    .chain((size) => fc.tuple(fc.constant(size), fc.array(fc.integer({ min: 1, max: 600 }), { minLength: 1, maxLength: 6 })));

  /** Splits `size` leaves into batches of the drawn lengths (the last takes the rest). */
  function batchesOf(size: number, lengths: number[]): number[] {
    const out: number[] = [];
    let left = size;
    for (const length of lengths) {
      if (left === 0) break;
      const take = Math.min(left, length);
      out.push(take);
      left -= take;
    }
    if (left > 0) out.push(left);
    return out;
  }

  it('every inclusion proof, from memory and from tiles, verifies against rootOf; a flipped byte fails', async () => {
    await fc.assert(
      fc.asyncProperty(tree, fc.array(fc.nat(), { minLength: 1, maxLength: 8 }), async ([size, lengths], picks) => {
        const leaves = numbered(size);
        const store = await tiledTree(leaves, batchesOf(size, lengths));
        const sources: NodeSource[] = [memoryNodeSource(leaves), tileNodeSource(store.read, size)];
        const root = rootOf(leaves);
        for (const source of sources) assert.deepEqual(await treeRoot(size, source), root);
        for (const pick of [0, size - 1, ...picks.map((p) => p % size)]) {
          const [fromMemory, fromTiles] = await Promise.all(sources.map((s) => inclusionProof(pick, size, s)));
          assert.deepEqual(fromTiles, fromMemory);
          assert.equal(verifyInclusion(leaves[pick]!, pick, size, fromTiles!, root), true);
          for (let at = 0; at < fromTiles!.length; at++) {
            assert.equal(verifyInclusion(leaves[pick]!, pick, size, flipped(fromTiles!, at), root), false);
          }
          assert.equal(verifyInclusion(flipped([leaves[pick]!], 0)[0]!, pick, size, fromTiles!, root), false);
          if (size > 1) assert.equal(verifyInclusion(leaves[pick]!, (pick + 1) % size, size, fromTiles!, root), false);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('every consistency proof m ≤ n, from memory and from tiles, verifies; a flipped byte fails', async () => {
    await fc.assert(
      fc.asyncProperty(tree, fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 1, maxLength: 6 }), async ([size, lengths], pairs) => {
        const leaves = numbered(size);
        const store = await tiledTree(leaves, batchesOf(size, lengths));
        for (const [a, b] of [[0, size - 1], [size - 1, size - 1], ...pairs]) {
          const n = 1 + (b! % size);
          const m = 1 + (a! % n);
          const rootM = rootOf(leaves.slice(0, m));
          const rootN = rootOf(leaves.slice(0, n));
          const fromMemory = await consistencyProof(m, n, memoryNodeSource(leaves));
          const fromTiles = await consistencyProof(m, n, tileNodeSource(store.read, n));
          assert.deepEqual(fromTiles, fromMemory);
          assert.equal(verifyConsistency(m, n, rootM, rootN, fromTiles), true, `${m} → ${n}`);
          for (let at = 0; at < fromTiles.length; at++) {
            assert.equal(verifyConsistency(m, n, rootM, rootN, flipped(fromTiles, at, 0x80)), false);
          }
          if (m < n) {
            assert.equal(verifyConsistency(m, n, flipped([rootM], 0)[0]!, rootN, fromTiles), false);
            assert.equal(verifyConsistency(m, n, rootM, flipped([rootN], 0)[0]!, fromTiles), false);
            assert.equal(verifyConsistency(m, n, rootM, rootN, fromTiles.slice(1)), false);
          }
        }
      }),
      { numRuns: 60 },
    );
  });
});

describe('a tree of 2^20 + 12,345 leaves through tiles', () => {
  // Leaf i is L[i mod 256], so that every full tile of a level is the same and the tiles can be
  // made on demand; the reference root below follows the recursive definition of RFC 9162.
  const L = Array.from({ length: 256 }, (_, j) => leafHash(Buffer.of(j)));
  const P: Buffer[] = [Buffer.alloc(0), rootOf(L)]; // P[l]: every hash of tile level l ≥ 1
  for (let l = 2; l <= 8; l++) P.push(rootOf(Array.from({ length: 256 }, () => P[l - 1]!)));
  const size = 2 ** 20 + 12345;
  let reads = 0;
  const readTile: TileReader = (level, index, width) => {
    reads += 1;
    assert.equal(width, tileWidth(level, index, size));
    return Promise.resolve(level === 0 ? Buffer.concat(L.slice(0, width)) : Buffer.concat(Array.from({ length: width }, () => P[level]!)));
  };

  const perfectMemo = new Map<string, Buffer>();
  function reference(start: number, n: number): Buffer {
    if ((n & (n - 1)) === 0) {
      const key = n >= 256 ? `${n}` : `${start % 256}/${n}`;
      let hash = perfectMemo.get(key);
      if (hash === undefined) {
        hash = n === 1 ? L[start % 256]! : nodeHash(reference(start, n / 2), reference(start + n / 2, n / 2));
        perfectMemo.set(key, hash);
      }
      return hash;
    }
    let k = 1;
    while (k * 2 < n) k *= 2;
    return nodeHash(reference(start, k), reference(start + k, n - k));
  }

  it('roots, inclusion and consistency proofs, reading a few tiles each', async () => {
    const source = tileNodeSource(readTile, size, { cacheTiles: 4 });
    const root = await treeRoot(size, source);
    assert.deepEqual(root, reference(0, size));
    for (const index of [0, 1, 255, 256, 65535, 65536, 2 ** 20 - 1, 2 ** 20, size - 1, 777777]) {
      reads = 0;
      const proof = await inclusionProof(index, size, source);
      assert.ok(reads <= 8, `${reads} tile reads for one inclusion proof`);
      assert.equal(verifyInclusion(L[index % 256]!, index, size, proof, root), true, `leaf ${index}`);
    }
    for (const m of [1, 255, 256, 4097, 65536, 70000, 2 ** 20, size - 1]) {
      const proof = await consistencyProof(m, size, source);
      assert.equal(verifyConsistency(m, size, reference(0, m), root, proof), true, `${m} → ${size}`);
    }
  });
});
