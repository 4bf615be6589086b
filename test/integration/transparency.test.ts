import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import request from 'supertest';
import { chainHash, recordLeafHash, type ChainRecord } from '../../src/audit/canonical.js';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { createCheckpointer, readCheckpointNote, type Checkpoint } from '../../src/audit/checkpoints.js';
import { EMPTY_ROOT, memoryNodeSource, rootOf, treeRoot, verifyConsistency, verifyInclusion } from '../../src/audit/merkle.js';
import { openNote, parseCheckpoint, parseVerifierKey } from '../../src/audit/note.js';
import { tileData, tileNodeSource, tilePath, tilesForSize } from '../../src/audit/tiles.js';
import { CANONICAL_SELECT, backfillTree, readTreeSize, storedRoot } from '../../src/audit/tree.js';
import { verifyTree } from '../../src/audit/verify-tree.js';
import { createLogger } from '../../src/logger.js';
import { tempSigningKey } from '../helpers/audit.js';
import { appendSignedChain, writeSampleEvents } from '../helpers/chain-fixture.js';
import { sampleEvent } from '../helpers/events.js';
import { adminQuery, asSuperuser, createTestDatabase, urlFor, type TestDatabase } from '../helpers/postgres.js';
import { ROOT, runTs } from '../helpers/processes.js';
import { auditRows, createTestGateway, uniqueName, type TestGateway } from '../helpers/test-gateway.js';
import { checkpointNow } from '../helpers/transparency.js';

const PASSWORD = 'correct horse battery staple';

/** The leaf hash of every stored record, recomputed from its canonical form. */
async function leavesOf(db: TestDatabase['db']): Promise<Buffer[]> {
  const { rows } = await db.query<ChainRecord>(CANONICAL_SELECT, [0, 10_000_000]);
  return rows.map((r) => recordLeafHash(r));
}

/** Every stored tile, `level/index` → hashes. */
async function storedTiles(db: TestDatabase['db']): Promise<Map<string, Buffer>> {
  const { rows } = await db.query<{ level: number; idx: number; hashes: Buffer }>('SELECT level, idx, hashes FROM audit_tiles');
  return new Map(rows.map((r) => [`${r.level}/${r.idx}`, Buffer.from(r.hashes)]));
}

/** The tiles a tree of these leaves has, computed in memory from the leaves alone. */
async function expectedTiles(leaves: Buffer[]): Promise<Map<string, Buffer>> {
  const source = memoryNodeSource(leaves);
  const tiles = new Map<string, Buffer>();
  for (const { level, index, width } of tilesForSize(leaves.length)) tiles.set(`${level}/${index}`, await tileData(level, index, width, source));
  return tiles;
}

describe('Merkle tree: the chain writer keeps C2SP tiles in the transaction of the records', () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
  });
  after(async () => {
    await t.drop();
  });

  it('when records arrive in uneven batches from two writers across the first tile boundary, then every stored tile and root equals the tree over the canonical leaves (255, 256, 257)', async () => {
    const a = createChainWriter(t.db, { batchMax: 7, writeTimeoutMs: 10_000 });
    const b = createChainWriter(t.db, { batchMax: 3, writeTimeoutMs: 10_000 });
    const seen = new Map<number, Buffer>();
    for (const target of [255, 256, 257, 300]) {
      const have = await readTreeSize(t.db);
      // Both writers at once: each must notice the other's records and re-read the tree's edge under the lock.
      await Promise.all(Array.from({ length: target - have }, (_, i) => (i % 2 === 0 ? a : b).recordEvent(sampleEvent(have + i))));
      const leaves = await leavesOf(t.db);
      assert.equal(leaves.length, target);
      assert.equal(await readTreeSize(t.db), target, 'the tree covers exactly the committed records');
      assert.deepEqual(await storedTiles(t.db), await expectedTiles(leaves), `tiles at size ${target}`);
      for (const n of [1, 2, 3, 254, 255, 256, 257, target].filter((x) => x <= target)) {
        const root = await storedRoot(t.db, n);
        assert.ok(root.equals(rootOf(leaves.slice(0, n))), `root at size ${n} (tree of ${target})`);
        if (seen.has(n)) assert.ok(seen.get(n)!.equals(root), `the root at size ${n} never changes`);
        seen.set(n, root);
      }
    }
    await Promise.all([a.close(), b.close()]);
  });

  it('when a batch fails, then neither its records nor its tiles are stored, and the next batch extends the tree from what was committed', async () => {
    const writer = createChainWriter(t.db, { batchMax: 8, writeTimeoutMs: 10_000 });
    await writer.recordEvent(sampleEvent(1));
    const before = await readTreeSize(t.db);
    // An event id that already exists makes the INSERT fail: the whole transaction rolls back.
    const { rows } = await t.db.query<{ event_id: string }>('SELECT event_id::text AS event_id FROM audit_log WHERE seq = 1');
    const duplicate = createChainWriter(t.db, { batchMax: 8, writeTimeoutMs: 10_000 });
    const original = crypto.randomUUID;
    crypto.randomUUID = () => rows[0]!.event_id as ReturnType<typeof crypto.randomUUID>;
    try {
      await assert.rejects(duplicate.recordEvent(sampleEvent(2)), { code: 'ERR_AUDIT_UNAVAILABLE' });
    } finally {
      crypto.randomUUID = original;
    }
    assert.equal(await readTreeSize(t.db), before, 'no tile of the failed batch');
    await duplicate.recordEvent(sampleEvent(3));
    await writer.recordEvent(sampleEvent(4));
    const leaves = await leavesOf(t.db);
    assert.deepEqual(await storedTiles(t.db), await expectedTiles(leaves));
    await Promise.all([writer.close(), duplicate.close()]);
  });
});

describe('Merkle tree over 65,537 records: records without tiles are hashed in (backfill, older writers)', () => {
  let t: TestDatabase;
  let key: ReturnType<typeof tempSigningKey>;
  before(async () => {
    key = tempSigningKey();
    t = await createTestDatabase();
  });
  after(async () => {
    await t.drop();
    fs.rmSync(key.dir, { recursive: true, force: true });
  });

  it('when 65,535 records exist without tiles, then the start-up backfill builds them in chunks, and the writer carries the tree over two tile levels (65,536 and 65,537)', async () => {
    // The fast bulk path: records inserted straight into audit_log, as before migration 008.
    await appendSignedChain(t.db, { count: 65_535, key });
    assert.equal(await readTreeSize(t.db), 0);
    const added = await backfillTree(t.db, { chunk: 20_000 });
    assert.equal(added, 65_535);
    assert.equal(await readTreeSize(t.db), 65_535);

    const writer = createChainWriter(t.db, { batchMax: 1, writeTimeoutMs: 30_000 });
    await writer.recordEvent(sampleEvent(1)); // 65,536: level 0 and level 1 tiles fill, level 2 begins
    // Another gateway of an older version writes without tiles; this writer hashes it in under the lock.
    await appendSignedChain(t.db, { count: 1, key });
    await writer.recordEvent(sampleEvent(2)); // 65,538
    await writer.close();

    const leaves = await leavesOf(t.db);
    assert.equal(leaves.length, 65_538);
    const tiles = await storedTiles(t.db);
    assert.deepEqual([...tiles.keys()].filter((k) => !k.startsWith('0/')).sort(), ['1/0', '2/0']);
    assert.equal(tiles.get('2/0')!.length, 32, 'one hash at level 2: the root of the first 65,536 leaves');
    assert.deepEqual(tiles, await expectedTiles(leaves));
    for (const n of [65_535, 65_536, 65_537, 65_538]) assert.ok((await storedRoot(t.db, n)).equals(rootOf(leaves.slice(0, n))), `root at ${n}`);
    const check = await verifyTree(t.db, { roots: new Map() });
    assert.deepEqual([check.valid, check.tree_size, check.leaves_checked, check.tiles_checked], [true, 65_538, 65_538, tilesForSize(65_538).length]);
  });
});

describe('audit_tiles is append-only', () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
    await writeSampleEvents(t.db, 3);
  });
  after(async () => {
    await t.drop();
  });

  const refused = async (sql: string, params: unknown[] = []) =>
    assert.rejects(t.db.query(sql, params), (err: { code?: string; message: string }) => {
      assert.equal(err.code, '42501', err.message);
      return true;
    });

  it('when a stored hash is changed, cut off, or a tile deleted or truncated, then the database refuses it, whoever asks', async () => {
    const before = await storedTiles(t.db);
    await refused('UPDATE audit_tiles SET hashes = $1 WHERE level = 0 AND idx = 0', [crypto.randomBytes(96)]);
    await refused('UPDATE audit_tiles SET hashes = substring(hashes FROM 1 FOR 64) WHERE level = 0');
    await refused("UPDATE audit_tiles SET hashes = '\\x00'::bytea || substring(hashes FROM 2) WHERE level = 0");
    await refused('UPDATE audit_tiles SET idx = 7 WHERE level = 0');
    await refused('DELETE FROM audit_tiles');
    await refused('TRUNCATE audit_tiles');
    await t.db.query("INSERT INTO audit_cosignatures (tree_size, witness, key_id, line) VALUES (3, 'w', '\\x01020304', '— w AQIDBA==')");
    await refused('DELETE FROM audit_cosignatures');
    await refused("UPDATE audit_cosignatures SET line = '— w BAMCAQ=='");
    await refused('TRUNCATE audit_cosignatures');
    assert.deepEqual(await storedTiles(t.db), before);
  });

  it('when hashes are appended to a partial tile, then that is the one change allowed', async () => {
    await t.db.query('UPDATE audit_tiles SET hashes = hashes || $1 WHERE level = 0 AND idx = 0', [crypto.randomBytes(32)]);
    assert.equal(await readTreeSize(t.db), 4);
  });
});

describe('checkpoints are C2SP signed notes, served with the key, the tiles and proofs', () => {
  let gw: TestGateway;
  let security: string;
  let auditor: string;
  let plain: string;
  const cps: Checkpoint[] = [];

  const login = async (roles: Array<'user' | 'security' | 'admin' | 'auditor'>) => {
    const username = uniqueName(roles.join('-'));
    await gw.addUser(username, PASSWORD, roles);
    return (await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200)).body.access_token as string;
  };
  const get = (url: string, token?: string) => {
    const r = request(gw.app).get(url).buffer(true).parse((res, cb) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => cb(null, Buffer.concat(chunks)));
    });
    return token ? r.set('Authorization', `Bearer ${token}`) : r;
  };
  const text = (res: request.Response): string => (res.body as Buffer).toString('utf8');
  const json = (res: request.Response) => JSON.parse(text(res)) as Record<string, unknown>;

  before(async () => {
    gw = await createTestGateway({ env: { AUDIT_LOG_ORIGIN: 'auth.example.test/audit' } });
    security = await login(['security']);
    auditor = await login(['auditor']);
    plain = await login(['user']);
    for (let i = 0; i < 250; i++) await gw.services.writer.recordEvent(sampleEvent(i));
    cps.push((await checkpointNow(gw))!);
    for (let i = 0; i < 30; i++) await gw.services.writer.recordEvent(sampleEvent(i));
    cps.push((await checkpointNow(gw))!);
  });
  after(async () => {
    await gw.close();
  });

  it('when a checkpoint is signed, then it is origin, size, base64 root and the chain head, signed under the origin, and it verifies with the served key', async () => {
    const keyLine = text(await get('/audit-log/key', security).expect(200).expect('content-type', /^text\/plain/));
    const vkey = parseVerifierKey(keyLine.trim());
    assert.ok(vkey, keyLine);
    assert.equal(vkey.name, 'auth.example.test/audit');

    const res = await get('/audit-log/checkpoint', auditor).expect(200).expect('content-type', /^text\/plain/);
    const note = text(res);
    const opened = openNote(note, [vkey]);
    assert.deepEqual(opened.signatures.map((s) => [s.name, s.verified]), [['auth.example.test/audit', true]]);
    const body = parseCheckpoint(opened.text)!;
    const latest = cps[1]!;
    assert.deepEqual([body.origin, body.size], ['auth.example.test/audit', latest.seq]);
    assert.equal(body.extensions.length, 1);
    assert.match(body.extensions[0]!, /^authtrail-chain-head [A-Za-z0-9+/]{43}=$/);
    const leaves = await leavesOf(gw.t.db);
    assert.ok(body.root.equals(rootOf(leaves.slice(0, body.size))), 'the root is the tree over the canonical records');
    const { rows } = await gw.t.db.query<{ hash: Buffer }>('SELECT hash FROM audit_log WHERE seq = $1', [body.size]);
    assert.ok(readCheckpointNote(note)!.chainHead.equals(rows[0]!.hash), 'the extension names the chain head at that size');

    // A tampered note does not verify.
    const forged = note.replace(`\n${body.size}\n`, `\n${body.size + 1}\n`);
    assert.equal(openNote(forged, [vkey]).signatures[0]!.verified, false);
  });

  it('when a witness cosignature is stored for the checkpoint, then /audit-log/checkpoint appends its line', async () => {
    const latest = cps[1]!;
    const line = `— witness.example/w1 ${Buffer.concat([Buffer.from([1, 2, 3, 4]), crypto.randomBytes(72)]).toString('base64')}`;
    await gw.t.db.query('INSERT INTO audit_cosignatures (tree_size, witness, key_id, line) VALUES ($1, $2, $3, $4)', [latest.seq, 'witness.example/w1', Buffer.from([1, 2, 3, 4]), line]);
    const note = text(await get('/audit-log/checkpoint', security).expect(200));
    assert.equal(note, `${latest.note}${line}\n`);
  });

  it('when a client walks the tiles over HTTP, then it computes the checkpoint root itself (C2SP tlog-tiles paths)', async () => {
    const note = text(await get('/audit-log/checkpoint', security).expect(200));
    const { size, root } = readCheckpointNote(note)!;
    const fetched: string[] = [];
    const source = tileNodeSource(async (level, index, width) => {
      const url = `/audit-log/${tilePath(level, index, width)}`;
      fetched.push(url);
      const res = await get(url, auditor).expect(200).expect('content-type', 'application/octet-stream');
      const data = res.body as Buffer;
      assert.equal(data.length, width * 32);
      return data;
    }, size);
    assert.ok((await treeRoot(size, source)).equals(root));
    assert.ok(fetched.includes('/audit-log/tile/0/000') || fetched.some((u) => u.startsWith('/audit-log/tile/0/001')), fetched.join(' '));
    // A partial tile at an earlier, smaller width is the prefix of the stored one.
    const five = await get('/audit-log/tile/0/000.p/5', security).expect(200);
    const full = await get('/audit-log/tile/0/000', security).expect(200);
    assert.ok((five.body as Buffer).equals((full.body as Buffer).subarray(0, 160)));
    await get('/audit-log/tile/0/009', security).expect(404);
    await get('/audit-log/tile/3/000', security).expect(404);
    for (const bad of ['/audit-log/tile/0/1', '/audit-log/tile/0/000.p/256', '/audit-log/tile/0/000.p/0', '/audit-log/tile/00/000', '/audit-log/tile/0/x000/001', '/audit-log/tile/x/000']) {
      const res = await get(bad, security).expect(400);
      assert.deepEqual(json(res).fields, ['tile'], bad);
    }
  });

  it('when a record proof is asked, then it verifies with verifyInclusion against the signed root, for the latest and an earlier checkpoint', async () => {
    const leaves = await leavesOf(gw.t.db);
    for (const [seq, size] of [[1, undefined], [137, undefined], [cps[0]!.seq, cps[0]!.seq], [cps[1]!.seq, undefined], [2, cps[0]!.seq]] as const) {
      const res = await get(`/admin/audit/proof/${seq}${size ? `?tree_size=${size}` : ''}`, auditor).expect(200);
      const body = json(res) as { seq: number; leaf_index: number; leaf_hash: string; tree_size: number; root_hash: string; inclusion_proof: string[]; checkpoint: string };
      const expectedSize = size ?? cps[1]!.seq;
      assert.deepEqual([body.seq, body.leaf_index, body.tree_size], [seq, seq - 1, expectedSize]);
      const leaf = Buffer.from(body.leaf_hash, 'base64');
      assert.ok(leaf.equals(leaves[seq - 1]!), 'the leaf hash is SHA-256(0x00 ‖ canonical record)');
      const root = Buffer.from(body.root_hash, 'base64');
      assert.ok(verifyInclusion(leaf, seq - 1, expectedSize, body.inclusion_proof.map((h) => Buffer.from(h, 'base64')), root));
      const signed = readCheckpointNote(body.checkpoint)!;
      assert.deepEqual([signed.size, signed.root.equals(root)], [expectedSize, true], 'the checkpoint is the signed note of that size');
    }
  });

  it('when a consistency proof is asked between two checkpoints, then it verifies with verifyConsistency, and a size of no checkpoint is 404', async () => {
    const [a, b] = [cps[0]!.seq, cps[1]!.seq];
    const body = json(await get(`/admin/audit/consistency?from=${a}&to=${b}`, security).expect(200)) as {
      from: number; to: number; from_root: string; to_root: string; consistency_proof: string[];
    };
    assert.deepEqual([body.from, body.to], [a, b]);
    assert.ok(Buffer.from(body.from_root, 'base64').equals(cps[0]!.root!));
    assert.ok(verifyConsistency(a, b, Buffer.from(body.from_root, 'base64'), Buffer.from(body.to_root, 'base64'), body.consistency_proof.map((h) => Buffer.from(h, 'base64'))));
    const same = json(await get(`/admin/audit/consistency?from=${b}&to=${b}`, security).expect(200));
    assert.deepEqual(same.consistency_proof, []);
    assert.deepEqual(json(await get(`/admin/audit/consistency?from=${a + 1}&to=${b}`, security).expect(404)).fields, ['from']);
    assert.deepEqual(json(await get(`/admin/audit/proof/5?tree_size=${a + 1}`, security).expect(404)).fields, ['tree_size']);
    assert.deepEqual(json(await get(`/admin/audit/proof/${b + 1}?tree_size=${b}`, security).expect(404)).fields, ['seq']);
  });

  it('when a parameter is not a positive decimal size, then 400 names it before any SQL', async () => {
    const cases: Array<[string, string[]]> = [
      ['/admin/audit/proof/0', ['seq']],
      ['/admin/audit/proof/-1', ['seq']],
      ['/admin/audit/proof/1e3', ['seq']],
      ['/admin/audit/proof/01', ['seq']],
      ['/admin/audit/proof/99999999999999999', ['seq']],
      ['/admin/audit/proof/1?tree_size=abc', ['tree_size']],
      ['/admin/audit/proof/1?tree_size=1&tree_size=2', ['tree_size']],
      ['/admin/audit/proof/1?tree_size=%00', ['tree_size']],
      ['/admin/audit/consistency?from=1', ['to']],
      ['/admin/audit/consistency?to=1', ['from']],
      ['/admin/audit/consistency?from=x&to=y', ['from', 'to']],
      ['/admin/audit/consistency?from=3&to=2', ['from', 'to']],
    ];
    for (const [url, fields] of cases) {
      const res = await get(url, security).expect(400);
      assert.deepEqual(json(res).fields, fields, url);
    }
  });

  it('when read, then each answer is recorded as audit.queried with the reader as actor', async () => {
    const before = (await auditRows(gw.t, { eventType: 'audit.queried' })).length;
    await get('/audit-log/checkpoint', auditor).expect(200);
    await get('/audit-log/key', auditor).expect(200);
    await get('/audit-log/tile/0/000', auditor).expect(200);
    await get('/admin/audit/proof/3', auditor).expect(200);
    await get(`/admin/audit/consistency?from=${cps[0]!.seq}&to=${cps[1]!.seq}`, auditor).expect(200);
    const rows = (await auditRows(gw.t, { eventType: 'audit.queried' })).slice(before);
    assert.deepEqual(rows.map((r) => r.details?.resource), ['audit-log/checkpoint', 'audit-log/key', 'audit-log/tile', 'audit/proof', 'audit/consistency']);
    assert.ok(rows.every((r) => r.actor_id !== null && r.outcome === 'success'));
  });

  it('when a reader has no role for it, then the transparency routes answer 401 or 403', async () => {
    for (const url of ['/audit-log/checkpoint', '/audit-log/key', '/audit-log/tile/0/000', '/admin/audit/proof/1', `/admin/audit/consistency?from=1&to=2`]) {
      await get(url).expect(401);
      await get(url, plain).expect(403);
    }
  });
});

describe('AUDIT_LOG_PUBLIC=true: checkpoint, key and tiles for anyone', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway({ env: { AUDIT_LOG_PUBLIC: 'true' } });
    for (let i = 0; i < 5; i++) await gw.services.writer.recordEvent(sampleEvent(i));
    await checkpointNow(gw);
  });
  after(async () => {
    await gw.close();
  });

  it('when asked without a token, then /audit-log/* answers and nothing is recorded, while the proofs still need a reader', async () => {
    const count = async () => (await auditRows(gw.t, { eventType: 'audit.queried' })).length;
    const before = await count();
    const note = (await request(gw.app).get('/audit-log/checkpoint').expect(200)).text;
    const key = (await request(gw.app).get('/audit-log/key').expect(200)).text.trim();
    assert.equal(openNote(note, [parseVerifierKey(key)!]).signatures[0]!.verified, true);
    assert.equal(parseVerifierKey(key)!.name, 'authtrail.local/audit-log', 'the default origin');
    const tile = await request(gw.app).get('/audit-log/tile/0/000.p/5').expect(200);
    assert.match(tile.headers['cache-control'] ?? '', /public.*immutable/);
    assert.equal(await count(), before, 'anonymous reads of hashes are not recorded');
    await request(gw.app).get('/admin/audit/proof/1').expect(401);
  });
});

describe('npm run audit:verify recomputes the tree', () => {
  let template: TestDatabase;
  let key: ReturnType<typeof tempSigningKey>;
  let file: string;
  const copies: TestDatabase[] = [];

  before(async () => {
    key = tempSigningKey();
    file = path.join(key.dir, 'checkpoints.jsonl');
    template = await createTestDatabase();
    // Legacy checkpoints and export lines first (as before migration 008), then note checkpoints.
    await appendSignedChain(template.db, { count: 300, key, checkpointEvery: 100, checkpointFile: file });
    await backfillTree(template.db);
    const writer = createChainWriter(template.db, { batchMax: 16, writeTimeoutMs: 5000 });
    const checkpointer = createCheckpointer({ db: template.db, writer, key, file, everyRecords: 50, everySeconds: 3600, logger: createLogger('silent'), origin: 'verify.example/log' });
    for (let i = 0; i < 300; i++) await writer.recordEvent(sampleEvent(i));
    await writer.close();
    await checkpointer.close();
    await template.db.close();
  });
  after(async () => {
    await Promise.all(copies.map((c) => c.drop()));
    await template.drop();
    fs.rmSync(key.dir, { recursive: true, force: true });
  });

  const copy = async () => {
    const c = await createTestDatabase({ template: template.name });
    copies.push(c);
    return c;
  };
  const verify = async (db: TestDatabase, extra: string[] = []) => {
    const run = await runTs('src/cli/audit-verify.ts', ['--json', '--database-url', db.url, '--trusted-key', key.file, '--checkpoint-file', file, ...extra]);
    return { ...run, result: run.stdout ? (JSON.parse(run.stdout) as { valid: boolean; first_invalid_seq?: number; problem?: string; tree: { tree_size: number; roots_checked: number; first_invalid_seq?: number; problem?: string } }) : undefined };
  };

  it('when untouched, then legacy and note checkpoints, the tree and the export file all verify', async () => {
    const run = await verify(await copy());
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal(run.result!.tree.tree_size, 600);
    assert.ok(run.result!.tree.roots_checked >= 6, JSON.stringify(run.result));
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { v?: number; seq: number });
    assert.deepEqual(lines.map((l) => l.v ?? 1).slice(0, 4), [1, 1, 1, 2], 'legacy lines, then chained note lines');
  });

  it('when a hash in a tile is changed by a superuser, then it exits 1 naming tile_mismatch at the first record under it', async () => {
    const db = await copy();
    // Hash 37 of level-0 tile 1 is the leaf of record 256 + 37 + 1.
    await asSuperuser(db.name, `UPDATE audit_tiles SET hashes = overlay(hashes PLACING '\\xdeadbeef'::bytea FROM ${37 * 32 + 1}) WHERE level = 0 AND idx = 1`);
    const run = await verify(db);
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.deepEqual([run.result!.first_invalid_seq, run.result!.problem], [256 + 37 + 1, 'tile_mismatch']);
  });

  for (const seq of [2, 300]) {
    it(`when record ${seq}, inside a full tile, is edited, then both the chain and the tree name that record`, async () => {
      const db = await copy();
      await asSuperuser(db.name, `UPDATE audit_log SET outcome = 'success' WHERE seq = ${seq}`);
      const run = await verify(db);
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.deepEqual([run.result!.first_invalid_seq, run.result!.problem], [seq, 'hash_mismatch']);
      assert.deepEqual([run.result!.tree.first_invalid_seq, run.result!.tree.problem], [seq, 'tile_mismatch'], JSON.stringify(run.result!.tree));
    });
  }

  it('when a correctly chained record is in no tile (the tree shorter than the log), then it exits 1 naming tree_size_mismatch at that record', async () => {
    const db = await copy();
    const { rows } = await db.db.query<ChainRecord & { hash: Buffer }>(CANONICAL_SELECT.replace('FROM public.audit_log', ', hash FROM public.audit_log'), [0, 10_000]);
    const last = rows.at(-1)!;
    const record = { ...last, seq: last.seq + 1, event_id: crypto.randomUUID() };
    await asSuperuser(
      db.name,
      `INSERT INTO audit_log (seq, event_id, occurred_at, event_type, outcome, reason, username, account, user_id, ip, user_agent, device_id, mfa_method,
                              session_id, request_id, actor_id, details, prev_hash, hash)
       SELECT $1, $2, $3, $4, $5, $6, $7, account, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18 FROM audit_log WHERE seq = $19`,
      [record.seq, record.event_id, record.occurred_at, record.event_type, record.outcome, record.reason, record.username, record.user_id, record.ip, record.user_agent,
        record.device_id, record.mfa_method, record.session_id, record.request_id, record.actor_id, record.details, last.hash, chainHash(last.hash, record), last.seq],
    );
    const run = await verify(db);
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.deepEqual([run.result!.first_invalid_seq, run.result!.problem], [601, 'tree_size_mismatch'], run.stdout);
  });

  it('when a level-1 hash is forged, or a tile deleted, then it exits 1', async () => {
    const forged = await copy();
    await asSuperuser(forged.name, `UPDATE audit_tiles SET hashes = overlay(hashes PLACING '\\x00'::bytea FROM 33) WHERE level = 1 AND idx = 0`);
    const a = await verify(forged);
    assert.deepEqual([a.code, a.result!.first_invalid_seq, a.result!.problem], [1, 257, 'tile_mismatch']);

    const deleted = await copy();
    await asSuperuser(deleted.name, 'DELETE FROM audit_tiles WHERE level = 0 AND idx = 2');
    const b = await verify(deleted);
    assert.equal(b.code, 1, b.stdout);
    assert.equal(b.result!.problem, 'tree_size_mismatch');
  });

  it('when a record is rewritten with every later chain hash and every tile recomputed, then the signed roots catch it', async () => {
    const db = await copy();
    const { rows } = await db.db.query<ChainRecord & { hash: Buffer }>(CANONICAL_SELECT.replace('FROM public.audit_log', ', hash FROM public.audit_log'), [0, 10_000]);
    rows[449]!.username = 'mallory'; // record 450, after the legacy checkpoints, before the last notes
    let prev = rows[448]!.hash;
    const rewritten = rows.slice(449).map((r) => {
      const hash = chainHash(prev, r);
      const row = { seq: r.seq, prev, hash };
      prev = hash;
      return row;
    });
    const leaves = rows.map((r) => recordLeafHash(r));
    const tiles = await expectedTiles(leaves);
    const client = new pg.Client({ connectionString: urlFor(db.name) });
    await client.connect();
    try {
      await client.query('SET session_replication_role = replica');
      await client.query("UPDATE audit_log SET username = 'mallory', account = 'mallory' WHERE seq = 450");
      await client.query(
        'UPDATE audit_log a SET prev_hash = t.p, hash = t.h FROM unnest($1::bigint[], $2::bytea[], $3::bytea[]) AS t(s, p, h) WHERE a.seq = t.s',
        [rewritten.map((r) => r.seq), rewritten.map((r) => r.prev), rewritten.map((r) => r.hash)],
      );
      for (const [k, data] of tiles) {
        const [level, idx] = k.split('/').map(Number);
        await client.query('UPDATE audit_tiles SET hashes = $3 WHERE level = $1 AND idx = $2', [level, idx, data]);
      }
    } finally {
      await client.end();
    }
    const run = await verify(db);
    assert.equal(run.code, 1, run.stdout);
    assert.equal(run.result!.problem, 'checkpoint_mismatch', 'the chain heads in the notes catch it');
    const tree = (run.result as unknown as { tree: { problem: string; first_invalid_seq: number } }).tree;
    assert.equal(tree.problem, 'checkpoint_root_mismatch', 'and so do the roots, by themselves');
    assert.equal(tree.first_invalid_seq, 401, 'from the last checkpoint whose root matched');
  });

  it('when no trusted key is given, or a verifier key string is, then it exits 2, or verifies with that key alone', async () => {
    const db = await copy();
    const none = await runTs('src/cli/audit-verify.ts', ['--database-url', db.url, '--checkpoint-file', file]);
    assert.equal(none.code, 2);
    const vkey = (await runTs('src/cli/audit-key.ts', ['--key', key.file, '--origin', 'verify.example/log'])).stdout.trim();
    const byVkey = await runTs('src/cli/audit-verify.ts', ['--database-url', db.url, '--trusted-key', vkey, '--trusted-key', key.file, '--checkpoint-file', file]);
    assert.equal(byVkey.code, 0, byVkey.stdout + byVkey.stderr);
    const otherLog = await runTs('src/cli/audit-verify.ts', ['--json', '--database-url', db.url, '--trusted-key', key.file, '--origin', 'another.example/log']);
    assert.equal(otherLog.code, 1, 'notes naming another origin are not trusted');
    assert.equal((JSON.parse(otherLog.stdout) as { problem: string }).problem, 'checkpoint_unknown_key');
  });

  it("when run as an external auditor's read-only login (docs/runtime-role.sql), then it verifies, and that login reads nothing else and writes nothing", async () => {
    const db = await copy();
    const role = 'authtrail_auditor';
    await adminQuery(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${role}') THEN CREATE ROLE ${role} LOGIN; END IF; END $$`);
    await adminQuery(`GRANT CONNECT ON DATABASE ${db.name} TO ${role}`);
    // The file as an operator runs it, for a runtime role of this test only.
    const app = `authtrail_app_${crypto.randomBytes(4).toString('hex')}`;
    await adminQuery(`CREATE ROLE ${app} LOGIN`);
    try {
      await adminQuery(fs.readFileSync(path.join(ROOT, 'docs/runtime-role.sql'), 'utf8').replaceAll('authtrail_app', app), [], db.name);
      const url = urlFor(db.name, { user: role });
      const run = await runTs('src/cli/audit-verify.ts', ['--database-url', url, '--trusted-key', key.file, '--checkpoint-file', file]);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      const reader = db.open({ user: role });
      await assert.rejects(reader.query('SELECT count(*) FROM users'), /permission denied/);
      await assert.rejects(reader.query('SELECT count(*) FROM refresh_tokens'), /permission denied/);
      await assert.rejects(reader.query("INSERT INTO audit_tiles VALUES (5, 0, '\\x00'::bytea)"), /permission denied/);
      await assert.rejects(reader.query('INSERT INTO audit_checkpoints (seq, hash, signed_at, key_id, signature) VALUES (1, $1, now(), $2, $3)', [Buffer.alloc(32), 'k', Buffer.alloc(64)]), /permission denied/);
      await reader.close();
    } finally {
      await db.drop();
      copies.splice(copies.indexOf(db), 1);
      await adminQuery(`DROP ROLE IF EXISTS ${app}`);
    }
  });
});

describe('the export file of each gateway instance', () => {
  let t: TestDatabase;
  let key: ReturnType<typeof tempSigningKey>;
  before(async () => {
    key = tempSigningKey();
    t = await createTestDatabase();
  });
  after(async () => {
    await t.drop();
    fs.rmSync(key.dir, { recursive: true, force: true });
  });

  const verify = (...files: string[]) =>
    runTs('src/cli/audit-verify.ts', ['--json', '--database-url', t.url, '--trusted-key', key.file, ...files.flatMap((f) => ['--checkpoint-file', f])]);

  it('when two instances sign checkpoints, then each copies the other\'s into its own file, and a file rotated mid-way goes on with the chain of the one before', async () => {
    const files = [path.join(key.dir, 'a.jsonl'), path.join(key.dir, 'b.jsonl')];
    const writers = files.map(() => createChainWriter(t.db, { batchMax: 4, writeTimeoutMs: 5000 }));
    const checkpointers = files.map((file, i) =>
      createCheckpointer({ db: t.db, writer: writers[i]!, key, file, everyRecords: 3, everySeconds: 3600, logger: createLogger('silent'), origin: 'multi.example/log' }),
    );
    for (let i = 0; i < 24; i++) await writers[i % 2]!.recordEvent(sampleEvent(i));
    // Rotated by an operator between two checkpoints: the next line starts a chain of its own.
    fs.renameSync(files[0]!, `${files[0]}.1`);
    for (let i = 24; i < 36; i++) await writers[i % 2]!.recordEvent(sampleEvent(i));
    await Promise.all(writers.map((w) => w.close()));
    // Each instance copies the others' checkpoints at its own next checkpoint: let each take one
    // after the last was signed (whichever signed it), as running instances do within
    // AUDIT_CHECKPOINT_EVERY_SECONDS, before both stop.
    for (const c of [...checkpointers, checkpointers[0]!]) await c.checkpointNow();
    for (const c of checkpointers) await c.close();
    for (const group of [[files[0]!], [files[1]!], [`${files[0]}.1`, files[0]!]]) {
      const run = await verify(...group);
      assert.equal(run.code, 0, `${group.join(' ')}: ${run.stdout}${run.stderr}`);
    }
    // The file rotated away lacks what came after it: alone, it reads as cut short.
    assert.equal((await verify(`${files[0]}.1`)).code, 1);
    // Read as one, the rotated files form one chain: a line taken out at the seam is found.
    const joined = path.join(key.dir, 'joined.jsonl');
    const older = fs.readFileSync(`${files[0]}.1`, 'utf8').trim().split('\n');
    fs.writeFileSync(joined, `${older.slice(0, -1).join('\n')}\n`);
    const cut = await verify(joined, files[0]!);
    assert.equal(cut.code, 1, cut.stdout);
    assert.equal((JSON.parse(cut.stdout) as { problem: string }).problem, 'export_chain_broken');
    const { rows } = await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_checkpoints WHERE note IS NOT NULL');
    const seqs = (file: string) => fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq);
    assert.deepEqual(seqs(files[1]!).length, rows[0]!.n, 'the second file holds every checkpoint, its own and the first instance\'s');
    const lastOfOlder = fs.readFileSync(`${files[0]}.1`, 'utf8').trim().split('\n').at(-1)!;
    assert.equal((JSON.parse(fs.readFileSync(files[0]!, 'utf8').split('\n')[0]!) as { prev: string }).prev, crypto.createHash('sha256').update(lastOfOlder).digest('hex'));
  });
});

describe('EMPTY_ROOT', () => {
  it('when the tree is empty, then its root is SHA-256 of nothing', () => {
    assert.equal(EMPTY_ROOT.toString('hex'), crypto.createHash('sha256').digest('hex'));
  });
});
