import type { RequestHandler, Response } from 'express';
import { isUuid } from '../audit/record.js';
import type { Config } from '../config.js';
import { TokenError, verifyAccessToken, type AccessClaims } from '../tokens/access-tokens.js';
import type { KeyStore } from '../tokens/keys.js';
import type { Role, UserQueries } from '../users/user-queries.js';
import { HttpError } from './errors.js';

/** The auth scheme is case-insensitive (RFC 9110 §11.1). */
const BEARER = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)$/i;

/** The verified caller of a protected route; `roles` are the user's roles now, not the token's. */
export function authOf(res: Response): AccessClaims {
  const auth = (res.locals as { auth?: AccessClaims }).auth;
  if (!auth) throw new Error('authOf() used on a route without requireAuth()');
  return auth;
}

const unauthorized = (title: string, error?: string): HttpError =>
  new HttpError('unauthorized', {
    detail: title,
    headers: { 'WWW-Authenticate': error ? `Bearer realm="authtrail", error="${error}"` : 'Bearer realm="authtrail"' },
  });

/**
 * A valid access token of this gateway (pinned algorithm, `typ`, `iss`, `aud`, `exp`) whose user
 * is active and holds one of `roles` *now*, and whose session (`sid`) is not revoked: a token
 * outlives neither a disable, nor a demotion, nor a revoked session (one indexed query per
 * request; see docs/performance.md). For admin routes while ADMIN_REQUIRE_MFA is on, `otp` must be
 * in the token's `amr`.
 */
export function requireAuth(
  deps: { keys: KeyStore; config: Config; users: Pick<UserQueries, 'findLiveState'> },
  roles: readonly Role[],
  options: { adminRoute?: boolean } = {},
): RequestHandler {
  const requireMfa = (options.adminRoute ?? true) && deps.config.adminRequireMfa;
  return async (req, res, next) => {
    const match = BEARER.exec(req.get('authorization') ?? '');
    if (!match) throw unauthorized('An access token is required');
    let claims: AccessClaims;
    try {
      claims = verifyAccessToken(deps.keys, deps.config.tokens, match[1]!);
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      throw unauthorized('The access token is not valid', 'invalid_token');
    }
    const live = isUuid(claims.sub) && isUuid(claims.sid) ? await deps.users.findLiveState(claims.sub, claims.sid) : undefined;
    if (!live || live.status !== 'active' || !live.session_live) throw unauthorized('The session is no longer valid', 'invalid_token');
    if (!live.roles.some((r) => roles.includes(r))) {
      throw new HttpError('forbidden', { detail: `requires role ${roles.join(' or ')}` });
    }
    if (requireMfa && !claims.amr.includes('otp')) {
      throw new HttpError('forbidden', { detail: 'requires a login with a second factor (amr otp)' });
    }
    res.locals.auth = { ...claims, roles: live.roles };
    next();
  };
}
