import { sqlTimestamp } from '../audit/clock.js';
import { normalizeUsername } from './usernames.js';
import { FIRST_USER_LOCK } from '../db/advisory-locks.js';
import type { Database } from '../db/database.js';

/**
 * `auditor` reads what `security` reads — login history, lockouts, checkpoints, proofs and
 * verification results — and changes nothing: it is on no route that changes state.
 */
export type Role = 'user' | 'security' | 'admin' | 'auditor';
export const ROLES: readonly Role[] = ['user', 'security', 'admin', 'auditor'];

export interface UserSummary {
  id: string;
  username: string;
  roles: Role[];
  status: 'active' | 'disabled';
  mfa_enabled: boolean;
  created_at: string;
}

export interface UserRow {
  id: string;
  username: string;
  username_normalized: string;
  password_hash: string;
  roles: Role[];
  status: 'active' | 'disabled';
  mfa_enabled: boolean;
}

const COLUMNS = 'id, username, username_normalized, password_hash, roles, status, mfa_enabled';

/** Parameterized queries on `users`, returning plain rows. */
export function createUserQueries(db: Pick<Database, 'query' | 'transaction'>) {
  return {
    async findByNormalizedUsername(normalized: string): Promise<UserRow | undefined> {
      const { rows } = await db.query<UserRow>(`SELECT ${COLUMNS} FROM users WHERE username_normalized = $1`, [normalized]);
      return rows[0];
    },
    async findById(id: string): Promise<UserRow | undefined> {
      const { rows } = await db.query<UserRow>(`SELECT ${COLUMNS} FROM users WHERE id = $1`, [id]);
      return rows[0];
    },
    /** Inserts a user; resolves undefined when the normalized username is taken. */
    async insert(user: { username: string; normalized: string; passwordHash: string; roles: readonly Role[] }): Promise<UserRow | undefined> {
      const { rows } = await db.query<UserRow>(
        `INSERT INTO users (username, username_normalized, password_hash, roles) VALUES ($1, $2, $3, $4)
         ON CONFLICT (username_normalized) DO NOTHING RETURNING ${COLUMNS}`,
        [user.username, user.normalized, user.passwordHash, user.roles],
      );
      return rows[0];
    },
    /**
     * Inserts the first user: resolves undefined when any user exists. Exactly one of any number
     * of parallel calls, on any number of processes, inserts: each checks for users under one
     * advisory lock, and under READ COMMITTED its INSERT … WHERE NOT EXISTS sees every user
     * committed before the lock was granted.
     */
    insertFirst(user: { username: string; normalized: string; passwordHash: string; roles: readonly Role[] }): Promise<UserRow | undefined> {
      return db.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [...FIRST_USER_LOCK]);
        const { rows } = await tx.query<UserRow>(
          `INSERT INTO users (username, username_normalized, password_hash, roles)
           SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM users)
           ON CONFLICT (username_normalized) DO NOTHING RETURNING ${COLUMNS}`,
          [user.username, user.normalized, user.passwordHash, user.roles],
        );
        return rows[0];
      });
    },
    async updatePasswordHash(id: string, passwordHash: string): Promise<void> {
      await db.query('UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1', [id, passwordHash]);
    },
    /** Only for a user whose creation could not be recorded; nothing refers to it yet. */
    async deleteUnrecorded(id: string): Promise<void> {
      await db.query('DELETE FROM users WHERE id = $1', [id]);
    },
    async setStatus(id: string, status: 'active' | 'disabled'): Promise<UserRow | undefined> {
      const { rows } = await db.query<UserRow>(`UPDATE users SET status = $2, updated_at = now() WHERE id = $1 RETURNING ${COLUMNS}`, [id, status]);
      return rows[0];
    },
    async setRoles(id: string, roles: readonly Role[]): Promise<UserRow | undefined> {
      const { rows } = await db.query<UserRow>(`UPDATE users SET roles = $2, updated_at = now() WHERE id = $1 RETURNING ${COLUMNS}`, [id, roles]);
      return rows[0];
    },
    /** Users by username order, after `after` (keyset), filtered by a substring of the username, status and role. */
    async list(filter: { q?: string | undefined; status?: string | undefined; role?: string | undefined; after?: string | undefined; limit: number }): Promise<UserSummary[]> {
      const { rows } = await db.query<UserSummary>(
        `SELECT id, username, roles, status, mfa_enabled, ${sqlTimestamp('created_at')} AS created_at
           FROM users
          WHERE ($1::text IS NULL OR username_normalized LIKE $1)
            AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR $3 = ANY (roles))
            AND ($4::text IS NULL OR username_normalized > $4)
          ORDER BY username_normalized LIMIT $5`,
        [
          filter.q ? `%${normalizeUsername(filter.q).replace(/[\\%_]/g, (c) => `\\${c}`)}%` : null,
          filter.status ?? null,
          filter.role ?? null,
          filter.after ?? null,
          filter.limit,
        ],
      );
      return rows;
    },
    /**
     * The state an access token is checked against on every privileged request: the user's status
     * and roles now, and whether the token's session (refresh family) is still live.
     */
    async findLiveState(userId: string, sessionId: string): Promise<{ status: UserRow['status']; roles: Role[]; session_live: boolean } | undefined> {
      const { rows } = await db.query<{ status: UserRow['status']; roles: Role[]; session_live: boolean }>(
        `SELECT u.status, u.roles, (f.id IS NOT NULL AND f.revoked_at IS NULL AND f.absolute_expires_at > now()) AS session_live
           FROM users u LEFT JOIN refresh_families f ON f.id = $2 AND f.user_id = u.id
          WHERE u.id = $1`,
        [userId, sessionId],
      );
      return rows[0];
    },
    async count(): Promise<number> {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM users');
      return rows[0]?.n ?? 0;
    },
  };
}

export type UserQueries = ReturnType<typeof createUserQueries>;
