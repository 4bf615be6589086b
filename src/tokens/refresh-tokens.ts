import crypto from 'node:crypto';
import type { Database, Queryable } from '../db/database.js';
import type { Role } from '../users/user-queries.js';
import type { Amr } from './access-tokens.js';

/** 256 random bits, base64url (43 characters). Only its SHA-256 is stored. */
export function newRefreshToken(): string {
  return crypto.randomBytes(32).toString('base64url');
}

export function refreshTokenHash(token: string): Buffer {
  return crypto.createHash('sha256').update(token, 'utf8').digest();
}

const REFRESH_TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;
export const isRefreshTokenShaped = (token: string): boolean => REFRESH_TOKEN_SHAPE.test(token);

export interface RefreshSettings {
  idleTtlSeconds: number;
  absoluteTtlSeconds: number;
  /** 0: off. Otherwise the immediately previous token is still accepted this long after it was rotated. */
  reuseGraceSeconds: number;
}

/** A session the caller may use: the user as it is now (roles, status) and the family's `amr`. */
export interface Session {
  familyId: string;
  userId: string;
  roles: Role[];
  amr: Amr[];
  /** When the login that started the family happened (seconds since the epoch): `auth_time`. */
  authTime: number;
}

export interface Issued {
  token: string;
  /** Seconds until the new token expires (idle lifetime, capped by the family's absolute lifetime). */
  expiresIn: number;
  /** Undoes this issue (used when the audit record cannot be written). */
  hash: Buffer;
}

export type RotateFailure = 'unknown_token' | 'expired' | 'revoked' | 'user_disabled' | 'reuse_detected';

export type RotateResult =
  | { ok: true; session: Session; issued: Issued; previousHash: Buffer; viaGrace: boolean }
  | { ok: false; reason: RotateFailure; session: Session | undefined };

interface TakenRow {
  family_id: string;
  user_id: string;
  roles: Role[];
  amr: Amr[];
  auth_time: number;
  expires_in: number;
}

/**
 * Takes the current token of a live family in one statement: in PostgreSQL the second of two
 * concurrent updates of the row waits, re-checks `rotated_at IS NULL`, and finds nothing, so
 * parallel uses of one token have exactly one winner, across processes.
 */
const TAKE = `
  UPDATE refresh_tokens t SET rotated_at = now(), replaced_by = $2
    FROM refresh_families f JOIN users u ON u.id = f.user_id
   WHERE t.token_hash = $1 AND t.rotated_at IS NULL AND t.expires_at > now()
     AND f.id = t.family_id AND f.revoked_at IS NULL AND f.absolute_expires_at > now() AND u.status = 'active'
  RETURNING t.family_id, f.user_id, u.roles, f.amr, floor(extract(epoch FROM f.created_at))::int8::float8 AS auth_time,
            LEAST($3::int, floor(extract(epoch FROM f.absolute_expires_at - now())))::int AS expires_in`;

const INSERT_TOKEN = `
  INSERT INTO refresh_tokens (token_hash, family_id, expires_at)
  VALUES ($1, $2, now() + make_interval(secs => $3))`;

interface StoredToken {
  family_id: string;
  user_id: string;
  roles: Role[];
  amr: Amr[];
  auth_time: number;
  status: string;
  rotated_at_age: number | null;
  replaced_by: Uint8Array | null;
  expired: boolean;
  revoked: boolean;
}

export function createRefreshTokenStore(db: Database, settings: RefreshSettings) {
  async function issueInto(tx: Queryable, familyId: string, expiresIn: number): Promise<Issued> {
    const token = newRefreshToken();
    const hash = refreshTokenHash(token);
    await tx.query(INSERT_TOKEN, [hash, familyId, expiresIn]);
    return { token, expiresIn, hash };
  }

  /** Takes `hash` and issues its successor, in one transaction; undefined when it was not takeable. */
  async function take(hash: Buffer): Promise<{ session: Session; issued: Issued } | undefined> {
    const token = newRefreshToken();
    const nextHash = refreshTokenHash(token);
    return db.transaction(async (tx) => {
      const { rows } = await tx.query<TakenRow>(TAKE, [hash, nextHash, settings.idleTtlSeconds]);
      const row = rows[0];
      if (!row || row.expires_in <= 0) return undefined;
      await tx.query(INSERT_TOKEN, [nextHash, row.family_id, row.expires_in]);
      return {
        session: { familyId: row.family_id, userId: row.user_id, roles: row.roles, amr: row.amr, authTime: row.auth_time },
        issued: { token, expiresIn: row.expires_in, hash: nextHash },
      };
    });
  }

  async function lookup(hash: Buffer): Promise<StoredToken | undefined> {
    const { rows } = await db.query<StoredToken>(
      `SELECT t.family_id, f.user_id, u.roles, f.amr, floor(extract(epoch FROM f.created_at))::int8::float8 AS auth_time, u.status, t.replaced_by,
              extract(epoch FROM now() - t.rotated_at)::float8 AS rotated_at_age,
              (t.expires_at <= now() OR f.absolute_expires_at <= now()) AS expired,
              (f.revoked_at IS NOT NULL) AS revoked
         FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id JOIN users u ON u.id = f.user_id
        WHERE t.token_hash = $1`,
      [hash],
    );
    return rows[0];
  }

  async function revokeFamily(familyId: string, reason: string): Promise<boolean> {
    const { rows } = await db.query<{ id: string }>(
      `UPDATE refresh_families SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING id`,
      [familyId, reason],
    );
    return rows.length > 0;
  }

  return {
    /** Starts a family for a login and issues its first token; `authTime` is the login's time. */
    async startFamily(userId: string, amr: Amr[]): Promise<{ familyId: string; issued: Issued; authTime: number }> {
      const familyId = crypto.randomUUID();
      const expiresIn = Math.min(settings.idleTtlSeconds, settings.absoluteTtlSeconds);
      return db.transaction(async (tx) => {
        const { rows } = await tx.query<{ auth_time: number }>(
          `INSERT INTO refresh_families (id, user_id, amr, absolute_expires_at) VALUES ($1, $2, $3, now() + make_interval(secs => $4))
           RETURNING floor(extract(epoch FROM created_at))::int8::float8 AS auth_time`,
          [familyId, userId, amr, settings.absoluteTtlSeconds],
        );
        return { familyId, issued: await issueInto(tx, familyId, expiresIn), authTime: rows[0]!.auth_time };
      });
    },

    /** Rotates a presented token. A rotated token presented again revokes its whole family. */
    async rotate(token: string): Promise<RotateResult> {
      const hash = refreshTokenHash(token);
      const taken = await take(hash);
      if (taken) return { ok: true, ...taken, previousHash: hash, viaGrace: false };

      const stored = await lookup(hash);
      if (!stored) return { ok: false, reason: 'unknown_token', session: undefined };
      const session: Session = { familyId: stored.family_id, userId: stored.user_id, roles: stored.roles, amr: stored.amr, authTime: stored.auth_time };
      if (stored.revoked) return { ok: false, reason: 'revoked', session };
      if (stored.status !== 'active') {
        await revokeFamily(stored.family_id, 'user_disabled');
        return { ok: false, reason: 'user_disabled', session };
      }
      if (stored.expired) return { ok: false, reason: 'expired', session };
      if (stored.rotated_at_age !== null) {
        const withinGrace = settings.reuseGraceSeconds > 0 && stored.rotated_at_age < settings.reuseGraceSeconds && stored.replaced_by;
        if (withinGrace) {
          // A client that lost a race with itself: rotate the successor on its behalf.
          const successor = await take(Buffer.from(stored.replaced_by!));
          if (successor) return { ok: true, ...successor, previousHash: Buffer.from(stored.replaced_by!), viaGrace: true };
        }
        await revokeFamily(stored.family_id, 'reuse_detected');
        return { ok: false, reason: 'reuse_detected', session };
      }
      return { ok: false, reason: 'expired', session };
    },

    /** Puts a rotation back (the audit record for it could not be written): the old token is current again. */
    async undoRotation(previousHash: Buffer, issuedHash: Buffer): Promise<void> {
      await db.transaction(async (tx) => {
        await tx.query('DELETE FROM refresh_tokens WHERE token_hash = $1', [issuedHash]);
        await tx.query('UPDATE refresh_tokens SET rotated_at = NULL, replaced_by = NULL WHERE token_hash = $1 AND replaced_by = $2', [
          previousHash,
          issuedHash,
        ]);
      });
    },

    revokeFamily,

    /** Revokes the family of a presented token; the session when there was one. */
    async revokeByToken(token: string, reason: string): Promise<Session | undefined> {
      const stored = await lookup(refreshTokenHash(token));
      if (!stored) return undefined;
      await revokeFamily(stored.family_id, reason);
      return { familyId: stored.family_id, userId: stored.user_id, roles: stored.roles, amr: stored.amr, authTime: stored.auth_time };
    },

    /** Revokes every live family of a user; returns how many. */
    async revokeAllForUser(userId: string, reason: string): Promise<number> {
      const { rows } = await db.query<{ id: string }>(
        `UPDATE refresh_families SET revoked_at = now(), revoked_reason = $2 WHERE user_id = $1 AND revoked_at IS NULL RETURNING id`,
        [userId, reason],
      );
      return rows.length;
    },
  };
}

export type RefreshTokenStore = ReturnType<typeof createRefreshTokenStore>;
