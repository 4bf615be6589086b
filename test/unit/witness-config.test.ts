import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, it } from 'node:test';
import { KEY_TYPE_COSIGNATURE_V1, verifierKey } from '../../src/audit/note.js';
import { createWitnessPusher } from '../../src/audit/witness-push.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { problemsOf } from '../helpers/config.js';

const vkey = (name: string, type: 0x01 | 0x04 = KEY_TYPE_COSIGNATURE_V1) => verifierKey(name, crypto.generateKeyPairSync('ed25519').publicKey, type);

describe('witness configuration (AUDIT_WITNESSES, AUDIT_WITNESS_QUORUM)', () => {
  it('when nothing is set, then there are no witnesses and the quorum is 1', () => {
    assert.deepEqual(loadConfig({}).witnesses, { list: [], quorum: 1, timeoutMs: 5000, retries: 2 });
  });

  it('when witnesses are listed as <url>|<vkey>, then each is named by its key and the quorum defaults to all of them', () => {
    const [a, b] = [vkey('a.example/w'), vkey('b.example/w')];
    const config = loadConfig({ AUDIT_WITNESSES: ` https://a.example/witness/|${a} , http://10.0.0.2:7380|${b}` });
    assert.deepEqual(config.witnesses.list, [
      { url: 'https://a.example/witness', verifierKey: a, name: 'a.example/w' },
      { url: 'http://10.0.0.2:7380', verifierKey: b, name: 'b.example/w' },
    ]);
    assert.equal(config.witnesses.quorum, 2);
    assert.equal(loadConfig({ AUDIT_WITNESSES: `https://a.example|${a},https://b.example|${b}`, AUDIT_WITNESS_QUORUM: '1' }).witnesses.quorum, 1);
  });

  it('when an entry is malformed, repeats a name, or the quorum exceeds the witnesses, then start-up names each problem without echoing values', () => {
    const a = vkey('a.example/w');
    const problems = problemsOf({ AUDIT_WITNESSES: `ftp://x|${a},https://b|not-a-key,https://c|${a}`, AUDIT_WITNESS_QUORUM: '5' });
    assert.deepEqual(problems, [
      'AUDIT_WITNESSES: entry 1 must be <http(s) URL>|<note verifier key name+hex+base64>',
      'AUDIT_WITNESSES: entry 2 must be <http(s) URL>|<note verifier key name+hex+base64>',
      'AUDIT_WITNESS_QUORUM: must not exceed the number of AUDIT_WITNESSES',
    ]);
    assert.deepEqual(problemsOf({ AUDIT_WITNESSES: `https://a|${a},https://b|${a}` }), ['AUDIT_WITNESSES: entry 2 repeats the witness name "a.example/w"']);
  });

  it('when a configured key is a log key (type 0x01) rather than a cosignature key, then the gateway refuses to start', () => {
    const config = loadConfig({ AUDIT_WITNESSES: `https://a.example|${vkey('a.example/w', 0x01)}` });
    const db = { query: () => Promise.reject(new Error('unused')) };
    const writer = { recordEvent: () => Promise.reject(new Error('unused')) };
    assert.throws(() => createWitnessPusher({ db, writer, witnesses: config.witnesses, logger: createLogger('silent') }), /entry 1 is not a cosignature verifier key/);
  });
});
