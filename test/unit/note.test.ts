import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { leafHash } from '../../src/audit/merkle.js';
import {
  KEY_TYPE_COSIGNATURE_V1,
  KEY_TYPE_ED25519,
  MalformedNoteError,
  cosign,
  cosignatureSignedMessage,
  cosignatureTime,
  ed25519PrivateKey,
  formatCheckpoint,
  isValidKeyName,
  noteKeyHash,
  openNote,
  parseCheckpoint,
  parseSignatureLine,
  parseSignerKey,
  parseVerifierKey,
  rawPublicKey,
  signNote,
  signerKey,
  verifierKey,
  verifyCosignature,
  type NoteVerifierKey,
} from '../../src/audit/note.js';

const mustKey = (vkey: string): NoteVerifierKey => {
  const key = parseVerifierKey(vkey);
  assert.ok(key, `parseVerifierKey(${vkey})`);
  return key;
};

// golang.org/x/mod sumdb/note/note.go (package example) and note_test.go.
const PETER_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const PETER_SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const ENOCH_VKEY = 'EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop';
const NEUMANN_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG = '— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';
const ENOCH_SIG = '— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n';

// C2SP signed-note.md, "Example".
const C2SP_VKEY = 'example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k';
const C2SP_NOTE = 'This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n';

// florolf/tlog-scales tests/test_signing.py (TestCheckpointSigning): a checkpoint of the
// arche2025h1 staging CT log with its own signatures and five witness cosignatures. The log key
// and the remora.n621.de witness key are from that file; the witness key is also in
// transparency-dev/formats note/note_cosigv1_test.go (TestCoSigV1NewVerifier).
const ARCHE_VKEY = 'arche2025h1.staging.ct.transparency.dev+ba2f06c0+AU0vHmlGCS/PdN8b2OaGmKprLI8HKM+dJ472xgFYh15f';
const REMORA_VKEY = 'remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2';
const ARCHE_TEXT = 'arche2025h1.staging.ct.transparency.dev\n1432088532\nU7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=\n';
const REMORA_LINE = '— remora.n621.de 2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI+aVCIobWX9sXTynk5XeU/zZ0WBxtqB0DrAWfBw==\n';
const ARCHE_NOTE =
  `${ARCHE_TEXT}\n` +
  '— arche2025h1.staging.ct.transparency.dev zTM8sQAAAZ5W0WdjBAMARjBEAiBjW5IQf9pvsYLfQFX6hoGREPMHbdQ3urbllzalApkptQIgIpwtEroeW2BXaHAI4kJXFbon5Ch9MNL5zRNZ55lvGt0=\n' +
  '— arche2025h1.staging.ct.transparency.dev ui8GwCF1+kWqZrxGdhj4aX3gcw7XUlXQQabg/27lefwhUkzbC3NygNI75MdhL1bfTW9g8Ei59RA23oHP7Ry1k3ZFWwQ=\n' +
  '— transparency.dev/DEV:witness-little-garden 2AQqhwAAAABqEiEgzgFIqqhbUoDwjMWE6UP8nd8/KYTzwZ2rhIgcqoXHAwVkjZr4AscylP3v7sEodkRAErumC2q44vdgJY096st5BQ==\n' +
  '— witness1.smartit.nu/witness1 pIyCDwAAAABqEiEghIp82KWebrw7/oHQwlTAm3g2RKS4+eebl8eO0WH+/iEcxZ75W3u5hNI7TOQtmJbqmNWVuE0tgh0XwzdZsDsUAQ==\n' +
  REMORA_LINE +
  '— witness.stagemole.eu Z/euoAAAAABqEiEgw0i+7g2ENfDAWHmtRzCfKTHSDwYDJA2NmKeGi9Y8FtEyOUvVr+AJmIY/2TUFucgKi7lI7cUiOvKFYe/TmN9DAg==\n';

describe('verifier keys (golang.org/x/mod sumdb/note)', () => {
  it('parses the published PeterNeumann key', () => {
    const key = mustKey(PETER_VKEY);
    assert.equal(key.name, 'PeterNeumann');
    assert.equal(key.type, KEY_TYPE_ED25519);
    assert.equal(key.keyHash.toString('hex'), 'c74f20a3');
    assert.equal(verifierKey(key.name, key.publicKey), PETER_VKEY);
    assert.deepEqual(noteKeyHash('PeterNeumann', 1, rawPublicKey(key.publicKey)), Buffer.from('c74f20a3', 'hex'));
  });

  it('refuses every substring and every one-byte change of it (note_test.go TestNewVerifier)', () => {
    for (let i = 0; i <= PETER_VKEY.length; i++) {
      for (let j = i + 1; j <= PETER_VKEY.length; j++) {
        if (i !== 0 || j !== PETER_VKEY.length) assert.equal(parseVerifierKey(PETER_VKEY.slice(i, j)), undefined, PETER_VKEY.slice(i, j));
      }
    }
    for (let i = 0; i < PETER_VKEY.length; i++) {
      const changed = PETER_VKEY.slice(0, i) + String.fromCharCode(PETER_VKEY.charCodeAt(i) + 1) + PETER_VKEY.slice(i + 1);
      assert.equal(parseVerifierKey(changed), undefined, changed);
    }
    // wrong key length and unknown algorithm, each with a key hash adjusted to match
    assert.equal(parseVerifierKey('PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=='), undefined);
    assert.equal(parseVerifierKey('PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW'), undefined);
    assert.equal(parseVerifierKey('PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW'), undefined); // upper-case hex
  });

  it('parses cosignature keys and refuses malformed ones (transparency-dev/formats note/note_cosigv1_test.go)', () => {
    const remora = mustKey(REMORA_VKEY);
    assert.equal(remora.type, KEY_TYPE_COSIGNATURE_V1);
    assert.equal(verifierKey(remora.name, remora.publicKey, KEY_TYPE_COSIGNATURE_V1), REMORA_VKEY);
    assert.equal(mustKey('TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6').type, KEY_TYPE_ED25519);
    for (const bad of [
      'bananas.sigstore.dev+12344556',
      'rekor.sigstore.dev+12345678+THIS_IS_NOT_BASE64!',
      'rekor.sigstore.dev+12345678+AwEB',
      'rekor.sigstore.dev+NOT_A_NUMBER+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
      'rekor.sigstore.dev+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
    ]) {
      assert.equal(parseVerifierKey(bad), undefined, bad);
    }
  });

  it('parses the published signer key and refuses its substrings and changes (note_test.go TestNewSigner)', () => {
    const signer = parseSignerKey(PETER_SKEY);
    assert.ok(signer);
    assert.equal(verifierKey(signer.name, signer.publicKey), PETER_VKEY);
    assert.equal(signerKey(signer.name, signer.privateKey), PETER_SKEY);
    for (let i = 0; i <= PETER_SKEY.length; i++) {
      for (let j = i + 1; j <= PETER_SKEY.length; j++) {
        if (i !== 0 || j !== PETER_SKEY.length) assert.equal(parseSignerKey(PETER_SKEY.slice(i, j)), undefined, PETER_SKEY.slice(i, j));
      }
    }
    for (let i = 0; i < PETER_SKEY.length; i++) {
      const changed = PETER_SKEY.slice(0, i) + String.fromCharCode(PETER_SKEY.charCodeAt(i) + 1) + PETER_SKEY.slice(i + 1);
      assert.equal(parseSignerKey(changed), undefined, changed);
    }
  });

  it('refuses names with spaces, plus signs or newlines', () => {
    for (const name of ['', 'a b', 'a+b', 'a\nb', 'a\tb', 'a\u00a0b', 'a\u0085b', 'a\u2028b', 'a\u3000b', 'a\u0001b', 'a\ud800']) {
      assert.equal(isValidKeyName(name), false, JSON.stringify(name));
      assert.throws(() => verifierKey(name, mustKey(PETER_VKEY).publicKey));
    }
    assert.equal(isValidKeyName('example.com/log42'), true);
    assert.equal(isValidKeyName('transparency.dev/DEV:witness-little-garden'), true);
  });
});

describe('signed notes', () => {
  const peter = mustKey(PETER_VKEY);
  const enoch = mustKey(ENOCH_VKEY);

  it('signs the published note byte for byte (note_test.go TestSign)', () => {
    const signer = parseSignerKey(PETER_SKEY)!;
    assert.equal(signNote(NEUMANN_TEXT, [signer]), `${NEUMANN_TEXT}\n${PETER_SIG}`);
    assert.throws(() => signNote('abc', [signer]), MalformedNoteError);
    assert.throws(() => signNote(NEUMANN_TEXT, [{ name: 'a+b', privateKey: signer.privateKey }]), TypeError);
    assert.throws(() => signNote('a\rb\n', [signer]), MalformedNoteError);
  });

  it('opens the published notes (note_test.go TestOpen, C2SP signed-note example)', () => {
    const note = `${NEUMANN_TEXT}\n${PETER_SIG}${ENOCH_SIG}`;
    const one = openNote(note, [peter]);
    assert.equal(one.text, NEUMANN_TEXT);
    assert.deepEqual(
      one.signatures.map((s) => [s.name, s.keyHash.toString('hex'), s.known, s.verified]),
      [['PeterNeumann', 'c74f20a3', true, true], ['EnochRoot', 'af0cfe78', false, false]],
    );
    assert.deepEqual(openNote(note, [peter, enoch]).signatures.map((s) => s.verified), [true, true]);
    assert.deepEqual(openNote(note, []).signatures.map((s) => s.known), [false, false]);
    assert.deepEqual(openNote(note, [peter, peter]).signatures.map((s) => s.verified), [true, false]); // the same key twice is no ambiguity

    const c2sp = openNote(C2SP_NOTE, [mustKey(C2SP_VKEY)]);
    assert.equal(c2sp.text, 'This is an example message.\n');
    assert.equal(c2sp.signatures[0]!.verified, true);
  });

  it('reports a known signature that does not verify', () => {
    const tampered = `${NEUMANN_TEXT}\n${PETER_SIG.slice(0, 60)}ABCD${PETER_SIG.slice(60)}`;
    assert.deepEqual(openNote(tampered, [peter]).signatures.map((s) => [s.known, s.verified]), [[true, false]]);
    const otherText = `${NEUMANN_TEXT.replace('answer', 'solution')}\n${PETER_SIG}`;
    assert.deepEqual(openNote(otherText, [peter]).signatures.map((s) => [s.known, s.verified]), [[true, false]]);
  });

  it('refuses malformed notes', () => {
    const bad = [
      NEUMANN_TEXT,
      `${NEUMANN_TEXT}\n`,
      `${NEUMANN_TEXT}\n${PETER_SIG.slice(0, -1)}`,
      `\u0001${NEUMANN_TEXT}\n${PETER_SIG}`,
      `\ud800${NEUMANN_TEXT}\n${PETER_SIG}`,
      `${NEUMANN_TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=`,
      `${NEUMANN_TEXT}\n${PETER_SIG}Unexpected line.\n`,
      `${NEUMANN_TEXT}\n${PETER_SIG.repeat(101)}`,
      `${NEUMANN_TEXT}\n— PeterNeumann x08go\n`,
      `${NEUMANN_TEXT}\n-- PeterNeumann ${PETER_SIG.split(' ')[2]}`,
      `${NEUMANN_TEXT.replace('\n', '\r\n')}\n${PETER_SIG}`,
    ];
    for (const note of bad) assert.throws(() => openNote(note, [peter]), MalformedNoteError, JSON.stringify(note));
    assert.equal(openNote(`${NEUMANN_TEXT}\n${PETER_SIG.repeat(100)}`, [peter]).signatures.length, 100);
    // Blank lines inside the text are allowed by the spec: the last blank line separates.
    const blank = `a\n\nb\n`;
    const signer = parseSignerKey(PETER_SKEY)!;
    assert.equal(openNote(signNote(blank, [signer]), [peter]).text, blank);
  });

  it('round-trips any text and signer set (fast-check)', () => {
    // eslint-disable-next-line no-control-regex -- notes hold no control character
    const line = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }).filter((s) => !/[\u0000-\u001f]/.test(s));
    fc.assert(
      fc.property(fc.array(line, { minLength: 1, maxLength: 5 }), fc.integer({ min: 1, max: 3 }), (lines, count) => {
        const text = `${lines.join('\n')}\n`;
        const signers = Array.from({ length: count }, (_, i) => ({ name: `signer${i}.example`, privateKey: crypto.generateKeyPairSync('ed25519').privateKey }));
        const keys = signers.map((s) => mustKey(verifierKey(s.name, crypto.createPublicKey(s.privateKey))));
        const opened = openNote(signNote(text, signers), keys);
        assert.equal(opened.text, text);
        assert.deepEqual(opened.signatures.map((s) => s.verified), signers.map(() => true));
      }),
      { numRuns: 50 },
    );
  });
});

describe('checkpoints', () => {
  it('formats and parses the golang.org/x/mod tree note (sumdb/tlog/note_test.go TestFormatTree, TestParseTree)', () => {
    const golden = 'go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n';
    const root = leafHash(Buffer.from('hello world'));
    assert.equal(formatCheckpoint({ origin: 'go.sum database tree', size: 123456789012, root }), golden);
    assert.deepEqual(parseCheckpoint(golden), { origin: 'go.sum database tree', size: 123456789012, root, extensions: [] });
    assert.equal(parseCheckpoint('go.sum database tree\n0xabcdef\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n'), undefined);
    assert.equal(parseCheckpoint('go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n'), undefined);
    assert.equal(parseCheckpoint(`${golden}JOE`), undefined);
    assert.deepEqual(parseCheckpoint(`${golden}JOE\n`)?.extensions, ['JOE']);
  });

  it('parses the C2SP tlog-checkpoint example and the arche2025h1 checkpoint', () => {
    const parsed = parseCheckpoint('example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n');
    assert.equal(parsed?.origin, 'example.com/behind-the-sofa');
    assert.equal(parsed?.size, 20852163);
    assert.equal(parsed?.root.toString('base64'), 'CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=');
    assert.equal(parseCheckpoint(ARCHE_TEXT)?.size, 1432088532);
  });

  it('refuses every non-canonical checkpoint', () => {
    const root = 'CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=';
    for (const bad of [
      `o\n1\n${root}`, // no final newline
      `\n1\n${root}\n`, // empty origin
      `o\n01\n${root}\n`,
      `o\n+1\n${root}\n`,
      `o\n1e3\n${root}\n`,
      `o\n-0\n${root}\n`,
      `o\n 1\n${root}\n`,
      `o\n9007199254740992\n${root}\n`,
      `o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n`, // non-zero padding bits
      `o\n1\nCsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=\n`, // base64url
      `o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n`, // unpadded
      `o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jx\n`, // 30 bytes
      `o\n1\n${root}\n\n`, // empty extension line
      `o\n1\n${root}\n\next\n`,
      `o\r\n1\n${root}\n`,
      `o\n1\n`,
    ]) {
      assert.equal(parseCheckpoint(bad), undefined, JSON.stringify(bad));
    }
    assert.equal(parseCheckpoint(`o\n0\n${root}\n`)?.size, 0);
    assert.equal(parseCheckpoint(`o\n9007199254740991\n${root}\n`)?.size, Number.MAX_SAFE_INTEGER);
  });

  it('formats with extensions and refuses what it could not parse back', () => {
    const root = crypto.randomBytes(32);
    const text = formatCheckpoint({ origin: 'example.com/log', size: 7, root, extensions: ['ext one', 'two'] });
    assert.deepEqual(parseCheckpoint(text), { origin: 'example.com/log', size: 7, root, extensions: ['ext one', 'two'] });
    assert.throws(() => formatCheckpoint({ origin: '', size: 1, root }));
    assert.throws(() => formatCheckpoint({ origin: 'a\nb', size: 1, root }));
    assert.throws(() => formatCheckpoint({ origin: 'o', size: -1, root }));
    assert.throws(() => formatCheckpoint({ origin: 'o', size: 1.5, root }));
    assert.throws(() => formatCheckpoint({ origin: 'o', size: 1, root: root.subarray(1) }));
    assert.throws(() => formatCheckpoint({ origin: 'o', size: 1, root, extensions: [''] }));
  });
});

describe('cosignatures (C2SP tlog-cosignature, cosignature/v1)', () => {
  it('verifies a real witness cosignature (florolf/tlog-scales tests/test_signing.py)', () => {
    const remora = mustKey(REMORA_VKEY);
    const arche = mustKey(ARCHE_VKEY);
    assert.deepEqual(verifyCosignature(ARCHE_TEXT, REMORA_LINE, remora), { time: 1779573024 });
    assert.equal(cosignatureTime(REMORA_LINE), 1779573024);
    assert.equal(verifyCosignature(ARCHE_TEXT.replace('1432088532', '42'), REMORA_LINE, remora), undefined);
    assert.equal(verifyCosignature(ARCHE_TEXT, REMORA_LINE, arche), undefined); // a type 0x01 key is not a witness key

    const opened = openNote(ARCHE_NOTE, [arche, remora]);
    assert.equal(opened.text, ARCHE_TEXT);
    assert.deepEqual(
      opened.signatures.map((s) => [s.name, s.keyHash.toString('hex'), s.known, s.verified, s.time]),
      [
        ['arche2025h1.staging.ct.transparency.dev', 'cd333cb1', false, false, undefined], // RFC 6962 type 0x05: not ours
        ['arche2025h1.staging.ct.transparency.dev', 'ba2f06c0', true, true, undefined],
        ['transparency.dev/DEV:witness-little-garden', 'd8042a87', false, false, undefined],
        ['witness1.smartit.nu/witness1', 'a48c820f', false, false, undefined],
        ['remora.n621.de', 'da77ade7', true, true, 1779573024],
        ['witness.stagemole.eu', '67f7aea0', false, false, undefined],
      ],
    );
  });

  it('reads the timestamp of a published payload (transparency-dev/formats TestCosignatureTimestamp)', () => {
    assert.equal(cosignatureTime('— w ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA=='), 1727964367);
    assert.equal(cosignatureTime('— w eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/4xkNQY='), undefined);
    assert.equal(cosignatureTime('— w 5%/$!'), undefined);
  });

  it('lays out its bytes as the spec says, checked by hand', () => {
    const seed = Buffer.alloc(32, 7);
    const privateKey = ed25519PrivateKey(seed);
    const publicKey = rawPublicKey(privateKey);
    const text = formatCheckpoint({ origin: 'example.com/authtrail', size: 1000, root: Buffer.alloc(32, 0xab) });
    const time = 1_767_323_045;
    const line = cosign(text, { name: 'witness.example/w1', privateKey, time });
    assert.match(line, /^— witness\.example\/w1 [A-Za-z0-9+/]{102}==\n$/);
    const payload = Buffer.from(line.slice('— witness.example/w1 '.length, -1), 'base64');
    assert.equal(payload.length, 4 + 8 + 64);
    const keyId = crypto.createHash('sha256').update(Buffer.concat([Buffer.from('witness.example/w1\n'), Buffer.of(0x04), publicKey])).digest().subarray(0, 4);
    assert.deepEqual(payload.subarray(0, 4), keyId);
    assert.equal(payload.subarray(4, 12).toString('hex'), time.toString(16).padStart(16, '0'));
    const message = Buffer.from(`cosignature/v1\ntime 1767323045\nexample.com/authtrail\n1000\n${Buffer.alloc(32, 0xab).toString('base64')}\n`);
    assert.deepEqual(cosignatureSignedMessage(text, time), message);
    assert.equal(crypto.verify(null, message, crypto.createPublicKey(privateKey), payload.subarray(12)), true);
    assert.deepEqual(payload.subarray(12), crypto.sign(null, message, privateKey)); // Ed25519 is deterministic

    const witness = mustKey(verifierKey('witness.example/w1', crypto.createPublicKey(privateKey), KEY_TYPE_COSIGNATURE_V1));
    assert.deepEqual(witness.keyHash, keyId);
    assert.deepEqual(verifyCosignature(text, line, witness), { time });
    assert.deepEqual(verifyCosignature(text, line.trimEnd(), witness), { time });
    assert.deepEqual(parseSignatureLine(line)?.keyHash, keyId);

    // The cosigned note opens with the log's key and the witness's key.
    const log = { name: 'example.com/authtrail', privateKey: crypto.generateKeyPairSync('ed25519').privateKey };
    const note = signNote(text, [log]) + line;
    const logKey = mustKey(verifierKey(log.name, crypto.createPublicKey(log.privateKey)));
    assert.deepEqual(openNote(note, [logKey, witness]).signatures.map((s) => [s.verified, s.time]), [[true, undefined], [true, time]]);

    // Any change breaks it: time, text, name, key type.
    const other = cosign(text, { name: 'witness.example/w1', privateKey, time: time + 1 });
    assert.deepEqual(verifyCosignature(text, other, witness), { time: time + 1 });
    const spliced = `${line.slice(0, 30)}${other.slice(30, 40)}${line.slice(40)}`;
    assert.equal(verifyCosignature(text, spliced, witness), undefined);
    assert.equal(verifyCosignature(text.replace('1000', '1001'), line, witness), undefined);
    assert.equal(verifyCosignature(text, line.replace('witness.example/w1', 'witness.example/w2'), witness), undefined);
    const asNoteKey = mustKey(verifierKey('witness.example/w1', crypto.createPublicKey(privateKey)));
    assert.equal(verifyCosignature(text, line, asNoteKey), undefined);
    assert.deepEqual(openNote(note, [asNoteKey]).signatures[1]!.known, false); // key hash of type 0x01 differs
    assert.throws(() => cosign('not a checkpoint\n', { name: 'w', privateKey, time }), MalformedNoteError);
    assert.throws(() => cosign(text, { name: 'w', privateKey, time: -1 }), RangeError);
  });
});
