import crypto from 'node:crypto';
import bcrypt from 'bcrypt';
import { normalizeUsername } from './usernames.js';

/** Longest password accepted anywhere, in UTF-8 bytes; checked before any hashing. */
export const PASSWORD_MAX_BYTES = 1024;

/**
 * Stored hashes look like `hmac-sha256-bcrypt$<bcrypt hash>`. bcrypt reads at most 72 bytes and
 * stops at a NUL, so the password is first reduced to base64(HMAC-SHA-256(key, password)): 44
 * ASCII characters, no NUL, every byte of the password counts. The fixed HMAC key ties the
 * pre-hash to this scheme, so a leaked plain SHA-256 of a password elsewhere cannot be fed in
 * ("password shucking").
 */
const SCHEME = 'hmac-sha256-bcrypt$';
const PREHASH_KEY = 'authtrail/password/v1';

function prehash(password: string): string {
  return crypto.createHmac('sha256', PREHASH_KEY).update(password, 'utf8').digest('base64');
}

/** A bcrypt hash the bcrypt package can check ($2y$ it cannot); group 1 is the cost. */
const BCRYPT_HASH = /^\$2[ab]\$(\d{2})\$[./A-Za-z0-9]{53}$/;

export interface PasswordCheck {
  ok: boolean;
  /** The stored hash uses a lower cost than configured: store a new one now that the password is known. */
  needsRehash: boolean;
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  /** Takes at least as long as a compare at the configured cost, whatever the stored hash. */
  verify(password: string, stored: string): Promise<PasswordCheck>;
  /** Spends the same bcrypt work as a real check, for unknown users, so timing does not reveal them. */
  verifyDummy(password: string): Promise<void>;
}

/**
 * The time of a check must not tell an existing user from an unknown one, and an unknown one
 * costs a compare at the configured cost. So:
 * - a stored hash below the configured cost (the cost rose and the user has not logged in since)
 *   is compared alongside a dummy compare at the configured cost; both run in parallel on the
 *   libuv thread pool, so the answer comes after the slower, configured-cost one;
 * - a stored hash that is not ours or not a valid bcrypt hash never matches and costs the dummy
 *   compare, so such accounts look like every other failure;
 * - a stored hash above the configured cost (the cost was lowered) is compared at its own cost
 *   and kept: a lowered or mistyped BCRYPT_COST never weakens stored hashes on its own. Those
 *   accounts answer slower than unknown names until their password is set again.
 */
export function createPasswordHasher(cost: number): PasswordHasher {
  const dummy = bcrypt.hashSync(prehash(crypto.randomBytes(16).toString('hex')), cost);
  const dummyCompare = (digest: string): Promise<boolean> => bcrypt.compare(digest, dummy);
  return {
    async hash(password) {
      return SCHEME + (await bcrypt.hash(prehash(password), cost));
    },
    async verify(password, stored) {
      const digest = prehash(password);
      const inner = stored.startsWith(SCHEME) ? stored.slice(SCHEME.length) : '';
      const storedCost = BCRYPT_HASH.exec(inner)?.[1];
      if (storedCost === undefined) {
        await dummyCompare(digest);
        return { ok: false, needsRehash: false };
      }
      if (Number(storedCost) >= cost) return { ok: await bcrypt.compare(digest, inner), needsRehash: false };
      const [ok] = await Promise.all([bcrypt.compare(digest, inner), dummyCompare(digest)]);
      return { ok, needsRehash: ok };
    },
    async verifyDummy(password) {
      await dummyCompare(prehash(password));
    },
  };
}

export type PasswordPolicyProblem = 'too_short' | 'too_long' | 'same_as_username';

/**
 * NIST SP 800-63B: a minimum length, a generous maximum, no composition rules; the username
 * itself is refused. Length counts code points, so every script is treated alike.
 */
export function passwordPolicyProblem(password: string, username: string, minLength: number): PasswordPolicyProblem | undefined {
  if (Buffer.byteLength(password, 'utf8') > PASSWORD_MAX_BYTES) return 'too_long';
  if ([...password].length < minLength) return 'too_short';
  if (normalizeUsername(password) === normalizeUsername(username)) return 'same_as_username';
  return undefined;
}
