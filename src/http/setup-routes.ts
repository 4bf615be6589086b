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
  /**
   * One setup at a time in this process: the others wait for it and then find it done (409 at
   * once), instead of each hashing a password first and the last ones missing their deadline.
   * Across processes the database decides (createFirstAdmin).
   */
  let turns: Promise<unknown> = Promise.resolve();

  const setup: RequestHandler = async (req, res) => {
    const raw = req.body as { username?: unknown } | undefined;
    if (raw && typeof raw.username === 'string') res.locals.login = { username: raw.username };
    const body = parseInput(setupBody, req.body, 'setup_token, username and password are strings');
    const pending = services.setup;
    if (!pending?.pending()) throw new HttpError('setup_completed', { detail: 'Sign in instead' });
    if (!pending.matches(body.setup_token)) throw new HttpError('invalid_setup_token', { detail: 'Use the setup link the gateway printed at start' });
    const client = clientInfo(req);
    const turn = turns.then(async () => {
      if (!pending.pending()) throw new HttpError('setup_completed', { detail: 'Sign in instead' });
      const created = await createFirstAdmin(
        services,
        { username: body.username, password: body.password },
        { ip: client.ip, userAgent: client.userAgent, deviceId: client.deviceId, requestId: client.requestId, details: { bootstrap: true, via: 'setup' } },
      );
      // Decided before the next turn starts: a user exists now, made here or by another process.
      if (created.ok || created.problem === 'users_exist' || created.problem === 'username_taken') pending.finish();
      return created;
    });
    turns = turn.catch(() => {});
    const result = await turn;
    if (!result.ok) {
      if (result.problem === 'users_exist' || result.problem === 'username_taken') throw new HttpError('setup_completed', { detail: 'Sign in instead' });
      throw invalidRequest(result.detail, { fields: [result.problem === 'weak_password' ? 'password' : 'username'] });
    }
    res.status(201).json({ id: result.user.id, username: result.user.username, roles: result.user.roles });
  };

  const router = Router();
  router.post('/setup', ...jsonBody(), setup);
  return router;
}
