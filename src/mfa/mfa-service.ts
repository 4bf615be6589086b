import crypto from 'node:crypto';
import type { Database } from '../db/database.js';
import { newRecoveryCodes, recoveryCodeHash } from './recovery-codes.js';
import type { SecretBox } from './secret-box.js';
import { base32Secret, matchTotp, newTotpSecret, otpauthUri } from './totp.js';

export type TotpCheck = 'ok' | 'invalid' | 'replayed' | 'not_enabled';

export interface Challenge {
  userId: string;
  username: string;
  requestId: string | null;
}

export interface MfaSettings {
  issuer: string;
  tokenTtlSeconds: number;
  /** Seconds since the epoch; tests move time. */
  now?: () => number;
}

const tokenHash = (token: string): Buffer => crypto.createHash('sha256').update(token, 'utf8').digest();

/**
 * TOTP enrollment and checks, recovery codes, and the single-use `mfa_token` of a two-step login.
 * Secrets are sealed with the user id as associated data and opened only to check a code.
 */
export function createMfaService(db: Database, box: SecretBox, settings: MfaSettings) {
  const now = settings.now ?? (() => Date.now() / 1000);

  async function replaceRecoveryCodes(tx: Pick<Database, 'query'>, userId: string): Promise<string[]> {
    const codes = newRecoveryCodes();
    await tx.query('DELETE FROM recovery_codes WHERE user_id = $1', [userId]);
    const values = codes.map((_, i) => `($1, $${i + 2})`).join(', ');
    await tx.query(`INSERT INTO recovery_codes (user_id, code_hash) VALUES ${values}`, [userId, ...codes.map(recoveryCodeHash)]);
    return codes;
  }

  return {
    /** Starts (or restarts) enrollment; the secret and URI are shown once. */
    async startEnrollment(user: { id: string; username: string }): Promise<{ secret: string; otpauthUri: string } | 'already_enabled'> {
      const secret = newTotpSecret();
      const { rows } = await db.query<{ id: string }>(
        'UPDATE users SET mfa_pending_secret_sealed = $2, updated_at = now() WHERE id = $1 AND NOT mfa_enabled RETURNING id',
        [user.id, box.seal(secret, user.id)],
      );
      if (rows.length === 0) return 'already_enabled';
      return { secret: base32Secret(secret), otpauthUri: otpauthUri(settings.issuer, user.username, secret) };
    },

    /** Activates MFA when `code` is valid for the pending secret; returns the ten recovery codes, shown once. */
    async confirmEnrollment(userId: string, code: string): Promise<{ ok: true; recoveryCodes: string[] } | { ok: false; reason: 'no_enrollment' | 'invalid_code' }> {
      const { rows } = await db.query<{ pending: Uint8Array | null }>(
        'SELECT mfa_pending_secret_sealed AS pending FROM users WHERE id = $1 AND NOT mfa_enabled',
        [userId],
      );
      const pending = rows[0]?.pending;
      if (!pending) return { ok: false, reason: 'no_enrollment' };
      const sealed = Buffer.from(pending);
      const step = matchTotp(box.open(sealed, userId), code, now());
      if (step === undefined) return { ok: false, reason: 'invalid_code' };
      return db.transaction(async (tx) => {
        const activated = await tx.query<{ id: string }>(
          `UPDATE users SET mfa_secret_sealed = mfa_pending_secret_sealed, mfa_pending_secret_sealed = NULL, mfa_enabled = true,
                  mfa_last_step = $3, updated_at = now()
            WHERE id = $1 AND mfa_pending_secret_sealed = $2 AND NOT mfa_enabled RETURNING id`,
          [userId, sealed, step],
        );
        if (activated.rows.length === 0) return { ok: false as const, reason: 'no_enrollment' as const };
        return { ok: true as const, recoveryCodes: await replaceRecoveryCodes(tx, userId) };
      });
    },

    /**
     * Checks a TOTP code and, when it matches, advances the user's last accepted step in the same
     * statement that checks it: of two parallel submissions of one code, one wins, one is a replay.
     */
    async verifyTotp(userId: string, code: string): Promise<TotpCheck> {
      const { rows } = await db.query<{ sealed: Uint8Array | null }>(
        'SELECT mfa_secret_sealed AS sealed FROM users WHERE id = $1 AND mfa_enabled',
        [userId],
      );
      const sealed = rows[0]?.sealed;
      if (!sealed) return 'not_enabled';
      const step = matchTotp(box.open(Buffer.from(sealed), userId), code, now());
      if (step === undefined) return 'invalid';
      const advanced = await db.query<{ id: string }>(
        'UPDATE users SET mfa_last_step = $2 WHERE id = $1 AND mfa_enabled AND (mfa_last_step IS NULL OR mfa_last_step < $2) RETURNING id',
        [userId, step],
      );
      return advanced.rows.length === 1 ? 'ok' : 'replayed';
    },

    /** Spends a recovery code; false when it is unknown or already used. */
    async useRecoveryCode(userId: string, code: string): Promise<boolean> {
      const { rows } = await db.query<{ user_id: string }>(
        `UPDATE recovery_codes SET used_at = now() WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL RETURNING user_id`,
        [userId, recoveryCodeHash(code)],
      );
      return rows.length === 1;
    },

    async remainingRecoveryCodes(userId: string): Promise<number> {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL', [userId]);
      return rows[0]?.n ?? 0;
    },

    /** New codes replace all earlier ones. */
    regenerateRecoveryCodes(userId: string): Promise<string[]> {
      return db.transaction((tx) => replaceRecoveryCodes(tx, userId));
    },

    /** Turns MFA off and forgets the secret and codes (user's own disable, or an admin reset). */
    async disable(userId: string): Promise<boolean> {
      return db.transaction(async (tx) => {
        const { rows } = await tx.query<{ was: boolean }>(
          `UPDATE users u SET mfa_enabled = false, mfa_secret_sealed = NULL, mfa_pending_secret_sealed = NULL, mfa_last_step = NULL,
                  updated_at = now()
             FROM (SELECT id, mfa_enabled AS was FROM users WHERE id = $1 FOR UPDATE) old
            WHERE u.id = old.id RETURNING old.was`,
          [userId],
        );
        await tx.query('DELETE FROM recovery_codes WHERE user_id = $1', [userId]);
        return rows[0]?.was ?? false;
      });
    },

    /** Issues the `mfa_token` for a login whose password was right. */
    async createChallenge(challenge: Challenge): Promise<string> {
      const token = crypto.randomBytes(32).toString('base64url');
      await db.query(
        `INSERT INTO mfa_challenges (token_hash, user_id, username, request_id, expires_at) VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))`,
        [tokenHash(token), challenge.userId, challenge.username, challenge.requestId, settings.tokenTtlSeconds],
      );
      return token;
    },

    /** Whose an `mfa_token` was, spent or expired alike (for the record of its refusal); undefined when never issued. */
    async challengeOwner(token: string): Promise<Challenge | undefined> {
      if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return undefined;
      const { rows } = await db.query<{ user_id: string; username: string; request_id: string | null }>(
        'SELECT user_id, username, request_id FROM mfa_challenges WHERE token_hash = $1',
        [tokenHash(token)],
      );
      const row = rows[0];
      return row ? { userId: row.user_id, username: row.username, requestId: row.request_id } : undefined;
    },

    /** Spends an `mfa_token`: it works once, before it expires, whatever the code turns out to be. */
    async consumeChallenge(token: string): Promise<Challenge | undefined> {
      if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return undefined;
      const { rows } = await db.query<{ user_id: string; username: string; request_id: string | null }>(
        `UPDATE mfa_challenges SET used_at = now() WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
         RETURNING user_id, username, request_id`,
        [tokenHash(token)],
      );
      const row = rows[0];
      return row ? { userId: row.user_id, username: row.username, requestId: row.request_id } : undefined;
    },
  };
}

export type MfaService = ReturnType<typeof createMfaService>;
