import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createPasswordHasher, type PasswordHasher } from '../../src/users/passwords.js';

const CONFIGURED_COST = 10; // ≈ 60 ms a compare here: long enough to measure, short enough for a unit test
const RUNS = 9;

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function elapsedMs(work: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

/**
 * Median time of a known user's failed check against the median of an unknown user's dummy check,
 * measured alternately in the same run, so machine speed and load cancel out.
 */
async function knownOverUnknown(hasher: PasswordHasher, stored: string): Promise<number> {
  const known: number[] = [];
  const unknown: number[] = [];
  await hasher.verifyDummy('warm-up'); // first calls pay for thread-pool start-up
  for (let i = 0; i < RUNS; i++) {
    known.push(await elapsedMs(() => hasher.verify('a wrong password guess', stored)));
    unknown.push(await elapsedMs(() => hasher.verifyDummy('a wrong password guess')));
  }
  return median(known) / median(unknown);
}

describe('password hashing', () => {
  it('when the stored hash has a lower cost than configured, then a wrong password takes as long as for an unknown user', async () => {
    const stored = await createPasswordHasher(4).hash('the right password of alice');
    const ratio = await knownOverUnknown(createPasswordHasher(CONFIGURED_COST), stored);
    assert.ok(ratio > 0.7 && ratio < 1.5, `known/unknown median time ${ratio.toFixed(3)} (an existing user is told apart when far from 1)`);
  });

  it('when the stored hash is of an unknown scheme, then the check fails and takes as long as for an unknown user', async () => {
    const hasher = createPasswordHasher(CONFIGURED_COST);
    for (const stored of ['', '!disabled', '$2b$04$legacy-without-prefix', 'hmac-sha256-bcrypt$not-a-bcrypt-hash']) {
      assert.deepEqual(await hasher.verify('anything', stored), { ok: false, needsRehash: false }, JSON.stringify(stored));
    }
    const ratio = await knownOverUnknown(hasher, 'argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA');
    assert.ok(ratio > 0.7 && ratio < 1.5, `known/unknown median time ${ratio.toFixed(3)}`);
  });

  it('when the stored hash has a lower cost, then the right password passes and asks for a rehash, a wrong one does neither', async () => {
    const stored = await createPasswordHasher(4).hash('the right password of bob');
    const hasher = createPasswordHasher(5);
    assert.deepEqual(await hasher.verify('the right password of bob', stored), { ok: true, needsRehash: true });
    assert.deepEqual(await hasher.verify('the wrong password of bob', stored), { ok: false, needsRehash: false });
    const rehashed = await hasher.hash('the right password of bob');
    assert.match(rehashed, /^hmac-sha256-bcrypt\$\$2b\$05\$/);
    assert.deepEqual(await hasher.verify('the right password of bob', rehashed), { ok: true, needsRehash: false });
  });

  it('when the stored hash has a higher cost (the cost was lowered), then it is checked at its own cost and never weakened', async () => {
    const stored = await createPasswordHasher(6).hash('the right password of carol');
    const hasher = createPasswordHasher(4);
    assert.deepEqual(await hasher.verify('the right password of carol', stored), { ok: true, needsRehash: false });
    assert.deepEqual(await hasher.verify('the wrong password of carol', stored), { ok: false, needsRehash: false });
  });

  it('when the password differs after 72 bytes or after a NUL, then it does not match (every byte counts)', async () => {
    const hasher = createPasswordHasher(4);
    const long = 'x'.repeat(80);
    const stored = await hasher.hash(long);
    assert.equal((await hasher.verify(`${'x'.repeat(79)}y`, stored)).ok, false);
    const withNul = await hasher.hash('before\0after');
    assert.equal((await hasher.verify('before\0other', withNul)).ok, false);
    assert.equal((await hasher.verify('before\0after', withNul)).ok, true);
  });
});
