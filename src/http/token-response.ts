import type { Request, Response } from 'express';
import * as cookie from 'cookie';
import type { Config } from '../config.js';
import type { SessionTokens } from '../tokens/sessions.js';

/** Refresh cookie: `__Host-` prefix, so it is Secure, host-only and Path=/. */
export const REFRESH_COOKIE = '__Host-authtrail_refresh';

/**
 * The browser's Origin when it is allowed to use the refresh cookie: one of REFRESH_COOKIE_ORIGINS,
 * or the gateway's own (its host is the request's `Host`: the console at /console). A page of
 * another site cannot send our host as its Origin, and the cookie is host-only and SameSite=Strict.
 */
export function cookieOrigin(req: Request, config: Config): string | undefined {
  const origin = req.get('origin');
  if (!origin) return undefined;
  if (config.tokens.refreshCookieOrigins.includes(origin)) return origin;
  return isOwnOrigin(origin, req.get('host')) ? origin : undefined;
}

function isOwnOrigin(origin: string, host: string | undefined): boolean {
  if (!host || !/^https?:\/\/[^/\s]+$/.test(origin)) return false;
  try {
    return new URL(origin).host === new URL(`http://${host}`).host;
  } catch {
    return false;
  }
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
