import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, it } from 'node:test';
import { createSecretBox } from '../../src/mfa/secret-box.js';
import { newRecoveryCodes, recoveryCodeHash } from '../../src/mfa/recovery-codes.js';
import { matchTotp, otpauthUri, timeStepOf, totpCode } from '../../src/mfa/totp.js';

describe('TOTP (RFC 6238)', () => {
  it('when given the Appendix B SHA-1 vectors, then the gateway code path produces the published 8-digit codes', () => {
    const secret = Buffer.from('12345678901234567890', 'ascii');
    const vectors: Array<[number, string]> = [
      [59, '94287082'],
      [1111111109, '07081804'],
      [1111111111, '14050471'],
      [1234567890, '89005924'],
      [2000000000, '69279037'],
      [20000000000, '65353130'],
    ];
    for (const [time, code] of vectors) assert.equal(totpCode(secret, time, 8), code, `T=${time}`);
  });

  it('when a code is one step old or one step early, then it matches that step; two steps away, it does not', () => {
    const secret = Buffer.from('12345678901234567890', 'ascii'); // fixed, so every code below is known to differ
    const now = 1_800_000_015;
    const step = timeStepOf(now);
    const codes = [-90, -60, -30, 0, 30, 60, 90].map((o) => totpCode(secret, now + o));
    assert.equal(new Set(codes).size, codes.length);
    assert.equal(matchTotp(secret, totpCode(secret, now), now), step);
    assert.equal(matchTotp(secret, totpCode(secret, now - 30), now), step - 1);
    assert.equal(matchTotp(secret, totpCode(secret, now + 30), now), step + 1);
    for (const offset of [-60, 60, -90, 90]) assert.equal(matchTotp(secret, totpCode(secret, now + offset), now), undefined, `offset ${offset}`);
  });

  it('when the code is not six digits, then it never matches', () => {
    const secret = crypto.randomBytes(20);
    const now = 1_800_000_000;
    const code = totpCode(secret, now);
    for (const bad of [`${code} `, code.slice(0, 5), `0${code}`, 'abcdef', '']) assert.equal(matchTotp(secret, bad, now), undefined, bad);
  });

  it('when an enrollment URI is built, then it carries issuer, account, base32 secret and the parameters', () => {
    const uri = new URL(otpauthUri('authtrail', 'alice@example.com', Buffer.from('12345678901234567890')));
    assert.equal(uri.protocol, 'otpauth:');
    assert.equal(uri.searchParams.get('secret'), 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ');
    assert.equal(uri.searchParams.get('issuer'), 'authtrail');
    assert.match(decodeURIComponent(uri.pathname), /authtrail:alice@example\.com$/);
  });
});

describe('sealed secrets (AES-256-GCM)', () => {
  const box = createSecretBox(crypto.randomBytes(32));
  const secret = crypto.randomBytes(20);

  it('when sealed and opened for the same user, then the secret comes back and the sealed form does not contain it', () => {
    const sealed = box.seal(secret, 'user-1');
    assert.ok(box.open(sealed, 'user-1').equals(secret));
    assert.equal(sealed.indexOf(secret), -1);
    assert.notDeepEqual(box.seal(secret, 'user-1'), sealed, 'a fresh IV each time');
  });

  it('when a sealed secret is altered, moved to another user, or opened with another key, then opening fails', () => {
    const sealed = box.seal(secret, 'user-1');
    const flipped = Buffer.from(sealed);
    flipped[flipped.length - 1]! ^= 1;
    assert.throws(() => box.open(flipped, 'user-1'));
    assert.throws(() => box.open(sealed, 'user-2'));
    assert.throws(() => createSecretBox(crypto.randomBytes(32)).open(sealed, 'user-1'));
  });
});

describe('recovery codes', () => {
  it('when generated, then there are ten distinct, readable codes whose hashes ignore case and dashes', () => {
    const codes = newRecoveryCodes();
    assert.equal(new Set(codes).size, 10);
    for (const code of codes) assert.match(code, /^[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}$/);
    assert.ok(recoveryCodeHash(codes[0]!).equals(recoveryCodeHash(codes[0]!.toUpperCase().replaceAll('-', ' '))));
    assert.ok(!recoveryCodeHash(codes[0]!).equals(recoveryCodeHash(codes[1]!)));
  });
});
