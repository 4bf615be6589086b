import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, it } from 'node:test';
import { canonicalRecord, chainHash, recordHashes, recordLeafHash, GENESIS_HASH, type ChainRecord } from '../../src/audit/canonical.js';
import {
  checkCheckpointSignature,
  checkpointToLine,
  checkpointVerifierKey,
  exportLineHash,
  FIRST_LINE_PREV,
  keyIdOf,
  readCheckpointNote,
  signCheckpointNote,
  trustedKeyFrom,
  type SigningKey,
} from '../../src/audit/checkpoints.js';
import { rootOf } from '../../src/audit/merkle.js';
import { openNote, parseVerifierKey } from '../../src/audit/note.js';
import { DOC_EXAMPLE_RECORD } from '../helpers/events.js';

const RECORD: ChainRecord = DOC_EXAMPLE_RECORD;

/** The example key of docs/audit-chain.md: seed = 32 bytes of 0x07. */
function exampleKey(): SigningKey {
  const privateKey = crypto.createPrivateKey({
    key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.alloc(32, 7)]),
    format: 'der',
    type: 'pkcs8',
  });
  const publicKey = crypto.createPublicKey(privateKey);
  return { privateKey, publicKey, keyId: keyIdOf(publicKey) };
}

const NOTE = `auth.example.com/audit-log
1
+zoxK5llFPHduDKlhcC6MzHRdRTTNcy9Sl8pqSP3OfE=
authtrail-chain-head wmqkTV4oNx8gHvv/w6OXH1O1odZRAMk/zEQFGoaEtlE=

— auth.example.com/audit-log Lnk9AUub+4Ps1KBhw6sSBBb85SerUzSlSaE9ntped/uqoVBNS1KkuIP0h3AKXTRxy8SqYPhpNLjvy7HlKM8I3sf8+AY=
`;
const VKEY = 'auth.example.com/audit-log+2e793d01+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs';

describe('Merkle leaves and checkpoint notes (docs/audit-chain.md test vectors)', () => {
  it('when the test vector record is hashed, then its leaf is SHA-256(0x00 ‖ canonical) as documented, and one encoding gives both hashes', () => {
    const leaf = recordLeafHash(RECORD);
    assert.equal(leaf.toString('hex'), 'fb3a312b996514f1ddb832a585c0ba3331d17514d335ccbd4a5f29a923f739f1');
    assert.ok(leaf.equals(crypto.createHash('sha256').update(Buffer.of(0)).update(canonicalRecord(RECORD)).digest()));
    const both = recordHashes(GENESIS_HASH, RECORD);
    assert.ok(both.hash.equals(chainHash(GENESIS_HASH, RECORD)));
    assert.ok(both.leaf.equals(leaf));
    assert.ok(rootOf([leaf]).equals(leaf), 'a one-leaf tree has the leaf as root');
  });

  it('when the one-record log is checkpointed with the example key, then the note and the verifier key are exactly the documented ones', () => {
    const key = exampleKey();
    const cp = signCheckpointNote(key, 'auth.example.com/audit-log', { size: 1, root: recordLeafHash(RECORD), chainHead: chainHash(GENESIS_HASH, RECORD) }, '2026-01-02T03:04:06.000000Z');
    assert.equal(cp.note, NOTE);
    assert.equal(checkpointVerifierKey('auth.example.com/audit-log', key.publicKey), VKEY);
    assert.deepEqual(openNote(NOTE, [parseVerifierKey(VKEY)!]).signatures.map((s) => s.verified), [true]);
    const body = readCheckpointNote(NOTE)!;
    assert.deepEqual([body.origin, body.size, body.chainHead.toString('hex')], ['auth.example.com/audit-log', 1, 'c26aa44d5e28371f201efbffc3a3971f53b5a1d65100c93fcc44051a8684b651']);
  });

  it('when a note is checked, then only a trusted key under the expected origin passes, and any edit fails', () => {
    const key = exampleKey();
    const trusted = new Map([[key.keyId, key.publicKey]]);
    const cp = signCheckpointNote(key, 'auth.example.com/audit-log', { size: 1, root: recordLeafHash(RECORD), chainHead: chainHash(GENESIS_HASH, RECORD) }, '2026-01-02T03:04:06.000000Z');
    assert.equal(checkCheckpointSignature(cp, trusted), 'ok');
    assert.equal(checkCheckpointSignature(cp, trusted, { origin: 'auth.example.com/audit-log' }), 'ok');
    assert.equal(checkCheckpointSignature(cp, trusted, { origin: 'other.example/log' }), 'wrong_origin');
    const stranger = crypto.generateKeyPairSync('ed25519').publicKey;
    assert.equal(checkCheckpointSignature(cp, new Map([[keyIdOf(stranger), stranger]])), 'unknown_key');
    const edited = { ...cp, note: cp.note!.replace('\n1\n', '\n2\n'), seq: 2 };
    assert.equal(checkCheckpointSignature(edited, trusted), 'bad_signature');
    assert.equal(checkCheckpointSignature({ ...cp, seq: 2 }, trusted), 'bad_signature', 'the row must say what the note says');
  });

  it('when a trusted key is given as a verifier key or a PEM, then both name the same key, and the verifier key fixes the origin', () => {
    const key = exampleKey();
    const fromVkey = trustedKeyFrom(VKEY);
    const fromPem = trustedKeyFrom(key.publicKey.export({ format: 'pem', type: 'spki' }).toString());
    const fromPrivate = trustedKeyFrom(key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
    assert.deepEqual([keyIdOf(fromVkey.publicKey), keyIdOf(fromPem.publicKey), keyIdOf(fromPrivate.publicKey)], [key.keyId, key.keyId, key.keyId]);
    assert.deepEqual([fromVkey.origin, fromPem.origin], ['auth.example.com/audit-log', undefined]);
    assert.throws(() => trustedKeyFrom('not a key'));
  });

  it('when checkpoints are exported, then each note line carries the hash of the line before it', () => {
    const key = exampleKey();
    const cp = signCheckpointNote(key, 'o.example/log', { size: 1, root: recordLeafHash(RECORD), chainHead: chainHash(GENESIS_HASH, RECORD) }, '2026-01-02T03:04:06.000000Z');
    const first = checkpointToLine(cp);
    const second = checkpointToLine(cp, exportLineHash(first));
    assert.equal((JSON.parse(first) as { prev: string }).prev, FIRST_LINE_PREV);
    assert.equal((JSON.parse(second) as { prev: string }).prev, crypto.createHash('sha256').update(first).digest('hex'));
    assert.equal((JSON.parse(second) as { v: number; seq: number; note: string }).note, cp.note);
  });
});
