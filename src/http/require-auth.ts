import type { RequestHandler, Response } from 'express';
import type { Config } from '../config.js';
import { TokenError, verifyAccessToken, type AccessClaims } from '../tokens/access-tokens.js';
import type { KeyStore } from '../tokens/keys.js';
import type { Role } from '../users/user-queries.js';
import { HttpError } from './errors.js';

const BEARER = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)$/;

/** The verified caller of an admin route. */
export function authOf(res: Response): AccessClaims {
  const auth = (res.locals as { auth?: AccessClaims }).auth;
  if (!auth) throw new Error('authOf() used on a route without requireAuth()');
  return auth;
}

/**
 * A valid access token of this gateway (pinned algorithm, `typ`, `iss`, `aud`, `exp`) with one
 * of `roles`, and, for admin routes while ADMIN_REQUIRE_MFA is on, `otp` in its `amr`.
 */
export function requireAuth(
  deps: { keys: KeyStore; config: Config },
  roles: readonly Role[],
  options: { adminRoute?: boolean } = {},
): RequestHandler {
  const requireMfa = (options.adminRoute ?? true) && deps.config.adminRequireMfa;
  return (req, res, next) => {
    const match = BEARER.exec(req.get('authorization') ?? '');
    if (!match) {
      next(new HttpError(401, 'unauthorized', 'An access token is required', { headers: { 'WWW-Authenticate': 'Bearer realm="authtrail"' } }));
      return;
    }
    let claims: AccessClaims;
    try {
      claims = verifyAccessToken(deps.keys, deps.config.tokens, match[1]!);
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      next(
        new HttpError(401, 'unauthorized', 'The access token is not valid', {
          headers: { 'WWW-Authenticate': 'Bearer realm="authtrail", error="invalid_token"' },
        }),
      );
      return;
    }
    if (!claims.roles.some((r) => roles.includes(r))) {
      next(new HttpError(403, 'forbidden', 'Not allowed', { detail: `requires role ${roles.join(' or ')}` }));
      return;
    }
    if (requireMfa && !claims.amr.includes('otp')) {
      next(new HttpError(403, 'forbidden', 'Not allowed', { detail: 'requires a login with a second factor (amr otp)' }));
      return;
    }
    res.locals.auth = claims;
    next();
  };
}
