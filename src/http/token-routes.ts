import { Router, type RequestHandler } from 'express';
import type { Services } from '../services.js';
import { isRefreshTokenShaped } from '../tokens/refresh-tokens.js';
import { continueSession } from '../tokens/sessions.js';
import { recordForRequest } from './audit-request.js';
import { HttpError } from './errors.js';
import { optionalJsonBody } from './json-body.js';
import { clearRefreshCookie, presentedRefreshToken, sendTokens } from './token-response.js';

const invalidRefreshToken = (): HttpError => new HttpError('invalid_refresh_token');

/** `POST /refresh` and `POST /logout` (docs/api.md; README, "Tokens"). */
export function tokenRoutes(services: Services): Router {
  const { config, refreshTokens, writer } = services;

  const refresh: RequestHandler = async (req, res) => {
    const token = presentedRefreshToken(req, config);
    if (!token || !isRefreshTokenShaped(token)) {
      await recordForRequest(writer, req, res, { eventType: 'token.refresh_failed', outcome: 'failure', reason: token ? 'malformed_token' : 'no_token' });
      throw invalidRefreshToken();
    }
    const result = await refreshTokens.rotate(token);
    if (!result.ok) {
      const reuse = result.reason === 'reuse_detected';
      await recordForRequest(writer, req, res, {
        eventType: reuse ? 'token.reuse_detected' : 'token.refresh_failed',
        outcome: 'failure',
        reason: result.reason,
        userId: result.session?.userId ?? null,
        sessionId: result.session?.familyId ?? null,
        details: reuse ? { family_revoked: true } : null,
      });
      throw invalidRefreshToken();
    }
    const { session } = result;
    const tokens = await continueSession(services, result, () =>
      recordForRequest(writer, req, res, {
        eventType: 'token.refreshed',
        outcome: 'success',
        userId: session.userId,
        sessionId: session.familyId,
        details: result.viaGrace ? { grace: true } : null,
      }),
    );
    sendTokens(req, res, config, tokens);
  };

  /** 204 whatever was presented: logout never tells whether a token existed. */
  const logout: RequestHandler = async (req, res) => {
    const token = presentedRefreshToken(req, config);
    const session = token && isRefreshTokenShaped(token) ? await refreshTokens.revokeByToken(token, 'logout') : undefined;
    await recordForRequest(writer, req, res, {
      eventType: 'logout',
      outcome: session ? 'success' : 'failure',
      reason: session ? null : 'unknown_token',
      userId: session?.userId ?? null,
      sessionId: session?.familyId ?? null,
    });
    clearRefreshCookie(req, res, config);
    res.status(204).end();
  };

  const router = Router();
  router.post('/refresh', optionalJsonBody(), refresh);
  router.post('/logout', optionalJsonBody(), logout);
  return router;
}
