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

export interface PasswordCheck {
  ok: boolean;
  /** The stored hash uses a lower cost than configured: store a new one now that the password is known. */
  needsRehash: boolean;
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(password: string, stored: string): Promise<PasswordCheck>;
  /** Spends the same bcrypt work as a real check, for unknown users, so timing does not reveal them. */
  verifyDummy(password: string): Promise<void>;
}

export function createPasswordHasher(cost: number): PasswordHasher {
  const dummy = bcrypt.hashSync(prehash(crypto.randomBytes(16).toString('hex')), cost);
  return {
    async hash(password) {
      return SCHEME + (await bcrypt.hash(prehash(password), cost));
    },
    async verify(password, stored) {
      if (!stored.startsWith(SCHEME)) return { ok: false, needsRehash: false };
      const inner = stored.slice(SCHEME.length);
      const ok = await bcrypt.compare(prehash(password), inner);
      return { ok, needsRehash: ok && bcrypt.getRounds(inner) < cost };
    },
    async verifyDummy(password) {
      await bcrypt.compare(prehash(password), dummy);
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
