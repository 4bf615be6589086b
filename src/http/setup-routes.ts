import { Router, type RequestHandler } from 'express';
import { z } from 'zod';
import type { Services } from '../services.js';
import { createFirstAdmin } from '../users/first-run.js';
import { clientInfo } from './client-info.js';
import { HttpError, invalidRequest, parseInput } from './errors.js';
import { jsonBody } from './json-body.js';

const setupBody = z.object({ setup_token: z.string().max(256), username: z.string(), password: z.string().max(4096) });

/**
 * `POST /setup` (docs/api.md): creates the first administrator with the one-time token of the
 * setup link the gateway printed at start, once. An authentication route: every refusal is one
 * `setup.failed` record (written by recordAuthRefusals, with the problem code as reason).
 */
export function setupRoutes(services: Services): Router {
  const setup: RequestHandler = async (req, res) => {
    const raw = req.body as { username?: unknown } | undefined;
    if (raw && typeof raw.username === 'string') res.locals.login = { username: raw.username };
    const body = parseInput(setupBody, req.body, 'setup_token, username and password are strings');
    const pending = services.setup;
    if (!pending?.pending()) throw new HttpError('setup_completed', { detail: 'Sign in instead' });
    if (!pending.matches(body.setup_token)) throw new HttpError('invalid_setup_token', { detail: 'Use the setup link the gateway printed at start' });
    const client = clientInfo(req);
    const result = await createFirstAdmin(
      services,
      { username: body.username, password: body.password },
      { ip: client.ip, userAgent: client.userAgent, deviceId: client.deviceId, requestId: client.requestId, details: { bootstrap: true, via: 'setup' } },
    );
    if (!result.ok) {
      if (result.problem === 'users_exist' || result.problem === 'username_taken') {
        pending.finish();
        throw new HttpError('setup_completed', { detail: 'Sign in instead' });
      }
      throw invalidRequest(result.detail, { fields: [result.problem === 'weak_password' ? 'password' : 'username'] });
    }
    pending.finish();
    res.status(201).json({ id: result.user.id, username: result.user.username, roles: result.user.roles });
  };

  const router = Router();
  router.post('/setup', ...jsonBody(), setup);
  return router;
}
