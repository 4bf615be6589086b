import type { Request, Response } from 'express';
import * as cookie from 'cookie';
import type { Config } from '../config.js';
import type { SessionTokens } from '../tokens/sessions.js';

/** Refresh cookie: `__Host-` prefix, so it is Secure, host-only and Path=/. */
export const REFRESH_COOKIE = '__Host-authtrail_refresh';

/**
 * The browser's Origin when it is allowed to use the refresh cookie: one of REFRESH_COOKIE_ORIGINS,
 * or the gateway's own (the console at /console): exactly this request's scheme, `Host` and port.
 * A page of another site cannot send our origin, the cookie is host-only and SameSite=Strict, and
 * a fetch the browser itself calls cross-site (`Sec-Fetch-Site`) never counts as our own.
 */
export function cookieOrigin(req: Request, config: Config): string | undefined {
  const origin = req.get('origin');
  if (!origin) return undefined;
  if (config.tokens.refreshCookieOrigins.includes(origin)) return origin;
  return isOwnOrigin(req, origin) ? origin : undefined;
}

/** A serialized origin as browsers send it (scheme, host, optional port; nothing else) equal to the request's own. */
function isOwnOrigin(req: Request, origin: string): boolean {
  const host = req.get('host');
  if (!host || req.get('sec-fetch-site') === 'cross-site') return false;
  if (!/^https?:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/.test(origin)) return false;
  // `req.protocol` is https behind a proxy named by TRUST_PROXY that says so (X-Forwarded-Proto).
  return origin.toLowerCase() === `${req.protocol}://${host}`.toLowerCase();
}

/**
 * The refresh token a request presents: from the body, or from the cookie, which counts only with
 * an allowed `Origin` (SameSite=Strict is the first defence against cross-site use, this the second).
 */
export function presentedRefreshToken(req: Request, config: Config): string | undefined {
  const body = req.body as { refresh_token?: unknown } | undefined;
  if (body && typeof body.refresh_token === 'string') return body.refresh_token;
  if (!cookieOrigin(req, config)) return undefined;
  return cookie.parse(req.get('cookie') ?? '')[REFRESH_COOKIE];
}

/**
 * Answers with a session's tokens. For an allowed browser Origin the refresh token goes into an
 * HttpOnly cookie instead of the body, so page scripts never see it. A request already answered
 * (its deadline sent 503) gets nothing more: the session functions undo such late successes
 * before signing, so this is only the last guard.
 */
export function sendTokens(req: Request, res: Response, config: Config, tokens: SessionTokens): void {
  if (res.headersSent) throw new Error('the request was already answered; its tokens are not sent');
  const viaCookie = cookieOrigin(req, config) !== undefined;
  if (viaCookie) {
    res.cookie(REFRESH_COOKIE, tokens.refreshToken, {
      httpOnly: true,
      secure: true,
      sameSite: 'strict',
      path: '/',
      maxAge: tokens.refreshExpiresIn * 1000,
    });
  }
  res.set('Cache-Control', 'no-store').json({
    access_token: tokens.accessToken,
    token_type: 'Bearer',
    expires_in: tokens.expiresIn,
    ...(viaCookie ? {} : { refresh_token: tokens.refreshToken }),
    refresh_expires_in: tokens.refreshExpiresIn,
  });
}

export function clearRefreshCookie(req: Request, res: Response, config: Config): void {
  if (cookieOrigin(req, config)) res.clearCookie(REFRESH_COOKIE, { httpOnly: true, secure: true, sameSite: 'strict', path: '/' });
}
