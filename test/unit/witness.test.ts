import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { consistencyProof, leafHash, memoryNodeSource, rootOf } from '../../src/audit/merkle.js';
import { KEY_TYPE_COSIGNATURE_V1, ed25519PrivateKey, formatCheckpoint, parseVerifierKey, signNote, verifierKey, verifyCosignature } from '../../src/audit/note.js';
import { createLogger } from '../../src/logger.js';
import { formatAddCheckpoint, parseAddCheckpoint, parseSignatureLines, parseSizeBody, SIZE_CONTENT_TYPE } from '../../src/witness/protocol.js';
import { readStateFile, writeStateFile } from '../../src/witness/state-file.js';
import { createWitness, parseLogList, type Witness } from '../../src/witness/witness.js';

// Independent vectors, computed with Python's `cryptography` package from RFC 8032's test keys:
// witness = RFC 8032 §7.1 TEST 1 seed, log = TEST 2 seed. Expected bytes follow C2SP
// tlog-cosignature "Ed25519 signed message" and signed-note "Verifier keys".
const WITNESS_SEED = Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex');
const LOG_SEED = Buffer.from('4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb', 'hex');
const VECTOR = {
  witnessName: 'witness.example.com/w1',
  witnessVkey: 'witness.example.com/w1+7e6f4aaa+BNdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea',
  logVkey: 'example.com/behind-the-sofa+37bc54d7+AT1AF8PoQ4lakrcKp00bfrycmCzPLsSWjMDNVfEq9GYM',
  // The checkpoint of the tlog-witness and tlog-cosignature examples, signed by the log key.
  checkpoint:
    'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n' +
    '\u2014 example.com/behind-the-sofa N7xU1+abfjKmQX7u2YhTdYaOXrug9rsbMBefB1zqpTMCh7Qbu95DTTW6yAHrIQI/NYE44uaYFncmQ4kfoZLG679blQk=\n',
  time: 1679315147,
  cosignature:
    '\u2014 witness.example.com/w1 fm9KqgAAAABkGFDL+TPmh4BYuAjsYRoqMJCWb/gWJaeRF/kmm5tlCr9sJ57DLErur7K0yDXc2ArN+TIuotuB/HbuL3AJsp3bv/aNCQ==\n',
};

const ORIGIN = 'example.com/behind-the-sofa';
const logKey = ed25519PrivateKey(LOG_SEED);
const witnessPrivate = ed25519PrivateKey(WITNESS_SEED);
const witnessKey = { privateKey: witnessPrivate, publicKey: crypto.createPublicKey(witnessPrivate), generated: false };
const leaves = Array.from({ length: 40 }, (_, i) => leafHash(Buffer.from(`record ${i + 1}`)));
const tree = memoryNodeSource(leaves);
const otherLeaves = leaves.map((l, i) => (i === 6 ? leafHash(Buffer.from('rewritten')) : l));
const otherTree = memoryNodeSource(otherLeaves);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'witness-unit-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function signedCheckpoint(size: number, from: readonly Buffer[] = leaves, key = logKey, name = ORIGIN): string {
  return signNote(formatCheckpoint({ origin: ORIGIN, size, root: rootOf(from.slice(0, size)) }), [{ name, privateKey: key }]);
}

async function request(witness: Witness, oldSize: number, size: number, source = tree, from: readonly Buffer[] = leaves) {
  const proof = oldSize > 0 && oldSize <= size ? await consistencyProof(oldSize, size, source) : [];
  return witness.addCheckpoint(formatAddCheckpoint({ oldSize, proof, checkpoint: signedCheckpoint(size, from) }));
}

function newWitness(file: string, now = () => 1_700_000_000): Witness {
  return createWitness({
    name: VECTOR.witnessName,
    key: witnessKey,
    logs: parseLogList([VECTOR.logVkey]),
    state: readStateFile(file) ?? { logs: {} },
    stateFile: file,
    logger: createLogger('silent'),
    now,
  });
}

describe('witness (C2SP tlog-witness add-checkpoint)', () => {
  it('when it cosigns the spec example with fixed keys and time, then the line is byte for byte the independent vector', async () => {
    const witness = newWitness(path.join(dir, 'vector.json'), () => VECTOR.time);
    assert.equal(witness.verifierKey, VECTOR.witnessVkey);
    const res = await witness.addCheckpoint(`old 0\n\n${VECTOR.checkpoint}`);
    assert.deepEqual([res.status, res.body], [200, VECTOR.cosignature]);
    const text = VECTOR.checkpoint.slice(0, VECTOR.checkpoint.indexOf('\n\n') + 1);
    assert.deepEqual(verifyCosignature(text, res.body, parseVerifierKey(VECTOR.witnessVkey)!), { time: VECTOR.time });
  });

  it('when the response is decoded by hand, then it is key hash ‖ big-endian time ‖ Ed25519 over "cosignature/v1\\ntime T\\n" ‖ text', async () => {
    const witness = newWitness(path.join(dir, 'layout.json'), () => 1_234_567_890);
    const res = await request(witness, 0, 5);
    assert.equal(res.status, 200);
    const [line] = parseSignatureLines(res.body)!;
    const payload = Buffer.from(line!.split(' ')[2]!, 'base64');
    assert.equal(payload.length, 4 + 8 + 64);
    const raw = witnessKey.publicKey.export({ format: 'jwk' }).x!;
    const pub = Buffer.from(raw, 'base64url');
    const id = crypto.createHash('sha256').update(Buffer.concat([Buffer.from(`${VECTOR.witnessName}\n`), Buffer.of(0x04), pub])).digest().subarray(0, 4);
    assert.deepEqual(payload.subarray(0, 4), id);
    assert.equal(payload.readBigUInt64BE(4), 1_234_567_890n);
    const text = formatCheckpoint({ origin: ORIGIN, size: 5, root: rootOf(leaves.slice(0, 5)) });
    assert.ok(crypto.verify(null, Buffer.from(`cosignature/v1\ntime 1234567890\n${text}`), witnessKey.publicKey, payload.subarray(12)));
  });

  it('when the log grows with valid consistency proofs, then each checkpoint is cosigned and the state file holds the latest size and root first', async () => {
    const file = path.join(dir, 'grow.json');
    const witness = newWitness(file);
    for (const [old, size] of [[0, 3], [3, 8], [8, 8], [8, 13], [13, 32], [32, 40]] as const) {
      const res = await request(witness, old, size);
      assert.equal(res.status, 200, `old ${old} → ${size}: ${res.body}`);
      const state = readStateFile(file)!.logs[ORIGIN]!;
      assert.deepEqual([state.size, state.root], [size, rootOf(leaves.slice(0, size)).toString('base64')]);
    }
    const status = witness.status();
    assert.equal(status.logs[0]!.size, 40);
    const served = witness.checkpoint(crypto.createHash('sha256').update(ORIGIN).digest('hex'))!;
    assert.ok(served.startsWith(`${ORIGIN}\n40\n`));
    assert.equal(served.split('\n\u2014 ').length - 1, 2, 'the log signature and the cosignature');
  });

  it('when old is not the latest cosigned size, then 409 text/x.tlog.size with that size', async () => {
    const witness = newWitness(path.join(dir, 'conflict.json'));
    assert.equal((await request(witness, 0, 10)).status, 200);
    const res = await request(witness, 4, 12);
    assert.deepEqual([res.status, res.contentType, parseSizeBody(res.body)], [409, SIZE_CONTENT_TYPE, 10]);
    assert.equal((await request(witness, 10, 12)).status, 200, 'retrying with the size from the 409 works');
  });

  it('when offered a smaller tree (rollback), a fork at the same size, or a proof that fails, then 409 / 400 / 422 and the refusals are counted as evidence', async () => {
    const file = path.join(dir, 'alarms.json');
    const witness = newWitness(file);
    assert.equal((await request(witness, 0, 20)).status, 200);

    const rollback = await request(witness, 10, 15);
    assert.deepEqual([rollback.status, rollback.body], [409, '20\n']);
    const rollbackOld = await request(witness, 20, 15);
    assert.equal(rollbackOld.status, 400, 'old size above the checkpoint size is a 400 per the spec');

    const fork = await request(witness, 20, 20, otherTree, otherLeaves);
    assert.equal(fork.status, 422);
    const forked = await request(witness, 20, 30, otherTree, otherLeaves);
    assert.equal(forked.status, 422, 'a rewritten tree has no valid proof from the witnessed root');

    const state = readStateFile(file)!.logs[ORIGIN]!;
    assert.equal(state.size, 20, 'nothing refused moved the state');
    assert.equal(state.refusals, 4);
    assert.equal(state.lastRefusal?.kind, 'inconsistent');
    assert.equal((await request(witness, 20, 30)).status, 200, 'the honest log still gets cosigned');
  });

  it('when the origin is unknown, the signature is not the log\'s, or the body is malformed, then 404, 403 and 400', async () => {
    const witness = newWitness(path.join(dir, 'refused.json'));
    const stranger = crypto.generateKeyPairSync('ed25519').privateKey;
    const unknown = signNote(formatCheckpoint({ origin: 'other.example/log', size: 1, root: leaves[0]! }), [{ name: 'other.example/log', privateKey: stranger }]);
    assert.equal((await witness.addCheckpoint(`old 0\n\n${unknown}`)).status, 404);
    assert.equal((await witness.addCheckpoint(`old 0\n\n${signedCheckpoint(3, leaves, stranger)}`)).status, 403, 'same name, another key: unknown signature only');
    const tampered = signedCheckpoint(3).replace(`${ORIGIN}\n3\n`, `${ORIGIN}\n4\n`);
    assert.equal((await witness.addCheckpoint(`old 0\n\n${tampered}`)).status, 403, 'a known key whose signature fails');
    for (const body of ['', 'old 0\n', `old 01\n\n${signedCheckpoint(3)}`, `old 0\nnot-base64\n\n${signedCheckpoint(3)}`, `new 0\n\n${signedCheckpoint(3)}`]) {
      assert.equal((await witness.addCheckpoint(body)).status, 400, JSON.stringify(body.slice(0, 20)));
    }
    const proofFromZero = formatAddCheckpoint({ oldSize: 0, proof: [leaves[0]!], checkpoint: signedCheckpoint(3) });
    assert.equal((await witness.addCheckpoint(proofFromZero)).status, 422, 'a proof from size 0 must be empty');
    const emptyWrongRoot = signNote(formatCheckpoint({ origin: ORIGIN, size: 0, root: leaves[0]! }), [{ name: ORIGIN, privateKey: logKey }]);
    assert.equal((await witness.addCheckpoint(`old 0\n\n${emptyWrongRoot}`)).status, 422, 'size 0 needs the empty root');
  });

  it('when requests race, then they are checked and stored one at a time: one of two with the same old size wins', async () => {
    const witness = newWitness(path.join(dir, 'race.json'));
    assert.equal((await request(witness, 0, 10)).status, 200);
    const results = await Promise.all([request(witness, 10, 20), request(witness, 10, 15)]);
    assert.deepEqual(results.map((r) => r.status).sort(), [200, 409]);
  });

  it('when restarted from its state file, then it remembers the latest size and refuses what it refused before', async () => {
    const file = path.join(dir, 'restart.json');
    assert.equal((await request(newWitness(file), 0, 25)).status, 200);
    const again = newWitness(file);
    assert.equal((await request(again, 0, 10)).status, 409);
    assert.equal((await request(again, 25, 25, otherTree, otherLeaves)).status, 422);
    assert.equal((await request(again, 25, 33)).status, 200);
  });

  it('when the state file is written, then it is replaced atomically with mode 0600 and no temporary file is left', async () => {
    const file = path.join(dir, 'atomic', 'state.json');
    await writeStateFile(file, { logs: {} });
    await writeStateFile(file, { logs: { a: { size: 1, root: leaves[0]!.toString('base64'), checkpoint: 'x', cosignedAt: 1, refusals: 0 } } });
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['state.json']);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.equal(readStateFile(file)!.logs.a!.size, 1);
    fs.writeFileSync(file, '{"format":"authtrail-witness-state-v1","logs":{"a":{"size":-1}}}');
    assert.throws(() => readStateFile(file), /invalid size/, 'a damaged state is an error, never an empty state');
  });

  it('when a request body is built and parsed, then it is the tlog-witness layout', () => {
    const proof = [leaves[0]!, leaves[1]!];
    const body = formatAddCheckpoint({ oldSize: 7, proof, checkpoint: VECTOR.checkpoint });
    assert.equal(body, `old 7\n${leaves[0]!.toString('base64')}\n${leaves[1]!.toString('base64')}\n\n${VECTOR.checkpoint}`);
    assert.deepEqual(parseAddCheckpoint(body), { oldSize: 7, proof, checkpoint: VECTOR.checkpoint });
    assert.throws(() => parseAddCheckpoint(`old 7\n${`${leaves[0]!.toString('base64')}\n`.repeat(64)}\n${VECTOR.checkpoint}`), /more than 63/);
  });

  it('when a log list names a cosignature key or a bad key, then it is refused; an origin may differ from the key name', () => {
    const cosigner = verifierKey('w.example/x', witnessKey.publicKey, KEY_TYPE_COSIGNATURE_V1);
    assert.throws(() => parseLogList([cosigner]), /not an Ed25519 note verifier key/);
    assert.throws(() => parseLogList(['example.com/log+00000000+AAAA']), /log 1/);
    const logs = parseLogList([`my.origin|${VECTOR.logVkey}`, VECTOR.logVkey]);
    assert.deepEqual([...logs.keys()], ['my.origin', ORIGIN]);
  });
});
