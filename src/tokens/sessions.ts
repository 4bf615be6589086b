import { recordOrUndo } from '../audit/record-or-undo.js';
import type { Config } from '../config.js';
import { currentDeadline, DeadlineExceededError, outsideDeadline } from '../deadline.js';
import type { Role } from '../users/user-queries.js';
import { issueAccessToken, type Amr } from './access-tokens.js';
import type { KeyStore } from './keys.js';
import type { RefreshTokenStore, RotateResult, Session } from './refresh-tokens.js';

/** What a client receives for a session (the tokens response of docs/api.md). */
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
 * The request is about to answer with its tokens. If its deadline already answered 503
 * (src/deadline.ts), the client never learns of this success, so it is undone instead and the
 * call throws; otherwise the answer is claimed, and the deadline no longer fires.
 */
async function claimAnswerOrUndo(undo: () => Promise<unknown>): Promise<void> {
  const deadline = currentDeadline();
  if (!deadline || deadline.claim()) return;
  await outsideDeadline(undo).catch(() => {});
  throw new DeadlineExceededError(deadline.ms);
}

/**
 * Issues a session for a successful login, in the one order that fails closed: the refresh
 * family, then its audit record (`record` gets the session id; if it throws, the family is revoked
 * and the error propagates), then the answer is claimed (a session recorded only after the
 * request's deadline answered 503 is revoked: `deadline_exceeded`), and only then the signed
 * access token.
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
  await claimAnswerOrUndo(() => deps.refreshTokens.revokeFamily(familyId, 'deadline_exceeded'));
  return signAccessToken(deps, { familyId, userId: user.id, roles: user.roles, amr, authTime }, issued);
}

/**
 * Continues a session whose refresh token was just rotated: record it (or put the rotation back),
 * claim the answer (or put the rotation back: the client, told 503, still holds the old token),
 * then sign.
 */
export async function continueSession(
  deps: SessionDeps,
  rotated: Extract<RotateResult, { ok: true }>,
  record: () => Promise<unknown>,
): Promise<SessionTokens> {
  // Not recorded, so not done: the presented token stays the current one.
  const undo = () => deps.refreshTokens.undoRotation(rotated.previousHash, rotated.issued.hash);
  await recordOrUndo(record, undo);
  await claimAnswerOrUndo(undo);
  return signAccessToken(deps, rotated.session, rotated.issued);
}
