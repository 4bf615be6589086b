import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, it } from 'node:test';
import {
  EntryReader,
  RECORDS_HEADER,
  encodeEntry,
  formatManifest,
  hashCanonical,
  openManifest,
  parseManifestText,
  parseStem,
  recordsFileName,
  segmentStem,
  signManifest,
  type SegmentManifest,
} from '../../src/audit/archive-format.js';
import { GENESIS_HASH, canonicalRecord, chainHash, recordLeafHash } from '../../src/audit/canonical.js';
import { keyIdOf } from '../../src/audit/checkpoints.js';
import { ed25519PrivateKey } from '../../src/audit/note.js';
import { DOC_EXAMPLE_RECORD } from '../helpers/events.js';

const KEY = ed25519PrivateKey(Buffer.alloc(32, 7)); // the example key of docs/audit-chain.md, never a real one
const STEM = segmentStem(1, 1);
const EXAMPLE: SegmentManifest = {
  origin: 'auth.example.com/audit-log',
  segment: STEM,
  file: recordsFileName(STEM),
  fileSha256: Buffer.alloc(32, 0xab),
  fileSize: 321,
  records: 1,
  firstSeq: 1,
  lastSeq: 1,
  prevHash: GENESIS_HASH,
  endHash: chainHash(GENESIS_HASH, DOC_EXAMPLE_RECORD),
  treeSize: 1,
  treeRoot: recordLeafHash(DOC_EXAMPLE_RECORD),
  firstOccurredAt: DOC_EXAMPLE_RECORD.occurred_at,
  lastOccurredAt: DOC_EXAMPLE_RECORD.occurred_at,
  previousManifest: Buffer.alloc(32),
};

describe('archive segment format (docs/archives.md)', () => {
  it('when the example segment of the docs is signed with the example key, then the manifest is exactly the published test vector', () => {
    const note = signManifest(EXAMPLE, KEY);
    assert.equal(
      note.split('\n\n')[1],
      '— auth.example.com/audit-log Lnk9AbzWZ5slrGXxIRrTQyQLGpHJfXH5Fi+CKmU3qk+iHctk3ksqBw/HNqZSPVRkmBU3jqJ6D40bg2Oo4zW2SmwaJQY=\n',
    );
    assert.match(note, /^authtrail-archive-segment\/v1\norigin auth\.example\.com\/audit-log\nsegment authtrail-audit-0{19}1-0{19}1\n/);
    assert.match(note, /\nend_hash wmqkTV4oNx8gHvv\/w6OXH1O1odZRAMk\/zEQFGoaEtlE=\ntree_size 1\ntree_root \+zoxK5llFPHduDKlhcC6MzHRdRTTNcy9Sl8pqSP3OfE=\n/);
    const publicKey = crypto.createPublicKey(KEY);
    const opened = openManifest(note, new Map([[keyIdOf(publicKey), publicKey]]), EXAMPLE.origin);
    assert.equal(opened.check, 'ok');
    assert.deepEqual(opened.manifest, EXAMPLE);
  });

  it('when a manifest is edited, signed by another key, names another origin or is malformed, then it does not open', () => {
    const note = signManifest(EXAMPLE, KEY);
    const publicKey = crypto.createPublicKey(KEY);
    const trusted = new Map([[keyIdOf(publicKey), publicKey]]);
    assert.equal(openManifest(note.replace('file_size 321', 'file_size 322'), trusted).check, 'bad_signature');
    assert.equal(openManifest(signManifest(EXAMPLE, crypto.generateKeyPairSync('ed25519').privateKey), trusted).check, 'unknown_key');
    assert.equal(openManifest(note, trusted, 'other.example/log').check, 'wrong_origin');
    assert.equal(openManifest(note.replace('records 1\n', ''), trusted).check, 'malformed');
  });

  it('when manifest text is not in the one canonical form, then it does not parse', () => {
    const text = formatManifest(EXAMPLE);
    assert.deepEqual(parseManifestText(text), EXAMPLE);
    const lines = text.split('\n');
    const variants = [
      [lines[0], lines[2], lines[1], ...lines.slice(3)].join('\n'), // two lines swapped
      text.replace('first_seq 1', 'first_seq 01'),
      text.replace('records 1', 'records 2'),
      text.replace('tree_size 1', 'tree_size 2'),
      text.replace(`file ${EXAMPLE.file}`, 'file other.records.gz'),
      text.replace(/prev_hash \S+/, 'prev_hash AAAA'),
      text.replace(/file_sha256 \S+/, `file_sha256 ${'AB'.repeat(32)}`),
      text.replace(/first_occurred_at \S+/, 'first_occurred_at 2026-01-02T03:04:05Z'),
      text.slice(0, -1),
    ];
    for (const variant of variants) assert.equal(parseManifestText(variant), undefined, variant);
    assert.deepEqual(parseStem(STEM), { firstSeq: 1, lastSeq: 1 });
    for (const bad of ['authtrail-audit-1-1', segmentStem(5, 4), `${STEM}x`]) assert.equal(parseStem(bad), undefined, bad);
  });

  it('when entries are read back in chunks of any size, then each yields its canonical bytes and stored hash, and the chain recomputes', () => {
    const records = [1, 2, 3].map((seq) => ({ ...DOC_EXAMPLE_RECORD, seq, event_id: crypto.randomUUID() }));
    let prev = GENESIS_HASH;
    const hashes = records.map((r) => (prev = chainHash(prev, r)));
    const data = Buffer.concat([RECORDS_HEADER, ...records.map((r, i) => encodeEntry(r, hashes[i]!))]);
    for (const size of [1, 7, 64, data.length]) {
      const reader = new EntryReader();
      const entries = [];
      for (let at = 0; at < data.length; at += size) entries.push(...reader.push(data.subarray(at, at + size)));
      reader.end();
      assert.deepEqual(entries.map((e) => e.seq), [1, 2, 3]);
      let chain = GENESIS_HASH;
      entries.forEach((e, i) => {
        assert.ok(e.canonical.equals(canonicalRecord(records[i]!)));
        const { hash, leaf } = hashCanonical(chain, e.canonical);
        assert.ok(hash.equals(e.hash) && hash.equals(hashes[i]!));
        assert.ok(leaf.equals(recordLeafHash(records[i]!)));
        chain = hash;
      });
    }
    assert.throws(() => new EntryReader().push(Buffer.from('not a records file, definitely not')), /header/);
    const cut = new EntryReader();
    cut.push(data.subarray(0, data.length - 5));
    assert.throws(() => cut.end(), /ends inside an entry/);
  });
});
