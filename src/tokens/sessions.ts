import { recordOrUndo } from '../audit/record-or-undo.js';
import type { Config } from '../config.js';
import type { Role } from '../users/user-queries.js';
import { issueAccessToken, type Amr } from './access-tokens.js';
import type { KeyStore } from './keys.js';
import type { RefreshTokenStore, RotateResult, Session } from './refresh-tokens.js';

/** What a client receives for a session (SPEC §3 tokens response). */
export interface SessionTokens {
  accessToken: string;
  expiresIn: number;
  refreshToken: string;
  refreshExpiresIn: number;
}

export interface SessionDeps {
  config: Config;
  keys: KeyStore;
  refreshTokens: RefreshTokenStore;
}

function signAccessToken(deps: SessionDeps, session: Session, refresh: { token: string; expiresIn: number }): SessionTokens {
  const { config } = deps;
  const access = issueAccessToken(deps.keys, { ...config.tokens, ttlSeconds: config.tokens.accessTtlSeconds }, {
    sub: session.userId,
    sid: session.familyId,
    amr: session.amr,
    roles: session.roles,
    authTime: session.authTime,
  });
  return { accessToken: access.token, expiresIn: access.expiresIn, refreshToken: refresh.token, refreshExpiresIn: refresh.expiresIn };
}

/**
 * Issues a session for a successful login, in the one order that fails closed: the refresh
 * family, then its audit record (`record` gets the session id; if it throws, the family is revoked
 * and the error propagates), and only then the signed access token.
 */
export async function startSession(
  deps: SessionDeps,
  user: { id: string; roles: Role[] },
  amr: Amr[],
  record: (sessionId: string) => Promise<unknown>,
): Promise<SessionTokens> {
  const { familyId, issued, authTime } = await deps.refreshTokens.startFamily(user.id, amr);
  // Never disclosed, but revoked anyway: a session without its record must not exist.
  await recordOrUndo(() => record(familyId), () => deps.refreshTokens.revokeFamily(familyId, 'audit_unavailable'));
  return signAccessToken(deps, { familyId, userId: user.id, roles: user.roles, amr, authTime }, issued);
}

/** Continues a session whose refresh token was just rotated: record it (or put the rotation back), then sign. */
export async function continueSession(
  deps: SessionDeps,
  rotated: Extract<RotateResult, { ok: true }>,
  record: () => Promise<unknown>,
): Promise<SessionTokens> {
  // Not recorded, so not done: the presented token stays the current one.
  await recordOrUndo(record, () => deps.refreshTokens.undoRotation(rotated.previousHash, rotated.issued.hash));
  return signAccessToken(deps, rotated.session, rotated.issued);
}
