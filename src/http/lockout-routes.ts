import { Router, type Request, type RequestHandler } from 'express';
import type { Services } from '../services.js';
import { normalizeUsername, usernameProblem } from '../users/usernames.js';
import { recordForRequest } from './audit-request.js';
import { HttpError, invalidRequest } from './errors.js';
import { recordRead } from './record-read.js';
import { authOf, requireAuth } from './require-auth.js';

/** The `{username}` path parameter as the account key lockouts use. */
function accountParam(req: Request): string {
  const raw = String(req.params.username);
  if (usernameProblem(raw)) throw invalidRequest('not a username', { fields: ['username'] });
  return normalizeUsername(raw);
}

/**
 * Current lockouts (docs/api.md): list and show (role `security`, `auditor` or `admin`, recorded as
 * `audit.queried`), and unlock (role `admin`, recorded as `lockout.cleared` with the actor).
 */
export function lockoutRoutes(services: Services): Router {
  const { writer, lockout } = services;
  const readers = requireAuth(services, ['security', 'auditor', 'admin']);
  const admins = requireAuth(services, ['admin']);

  const listLockouts: RequestHandler = async (req, res) => {
    const items = (await lockout.list()).sort((a, b) => b.locked_since.localeCompare(a.locked_since));
    await recordRead(writer, req, res, { resource: 'lockouts', returned: items.length });
    res.set('Cache-Control', 'no-store').json({ items, degraded: lockout.degraded });
  };

  const showLockout: RequestHandler = async (req, res) => {
    const account = accountParam(req);
    const info = await lockout.get(account);
    await recordRead(writer, req, res, { resource: 'lockouts', username: account, returned: info ? 1 : 0 });
    if (!info) throw new HttpError('not_found', { detail: 'The account is not locked' });
    res.set('Cache-Control', 'no-store').json(info);
  };

  const clearLockout: RequestHandler = async (req, res) => {
    const account = accountParam(req);
    const wasLocked = await lockout.clear(account);
    await recordForRequest(writer, req, res, {
      eventType: 'lockout.cleared',
      outcome: 'success',
      username: String(req.params.username),
      actorId: authOf(res).sub,
      details: { was_locked: wasLocked, ...(lockout.degraded ? { lockout_store: 'degraded' } : {}) },
    });
    res.status(204).end();
  };

  const router = Router();
  router.get('/admin/lockouts', readers, listLockouts);
  router.get('/admin/lockouts/:username', readers, showLockout);
  router.delete('/admin/lockouts/:username', admins, clearLockout);
  return router;
}
