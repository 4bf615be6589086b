import { Router, type RequestHandler } from 'express';
import { z } from 'zod';
import type { Services } from '../services.js';
import { createUser } from '../users/create-user.js';
import { ROLES } from '../users/user-queries.js';
import { clientInfo } from './client-info.js';
import { HttpError, invalidRequest } from './errors.js';
import { jsonBody } from './json-body.js';
import { authOf, requireAuth } from './require-auth.js';

const createUserBody = z.object({
  username: z.string(),
  password: z.string(),
  roles: z.array(z.enum(ROLES as [string, ...string[]])).max(ROLES.length).optional(),
});

/** `POST /admin/users` (role admin): creates a user, recorded as `user.created` with the actor. */
export function adminUserRoutes(services: Services): Router {
  const create: RequestHandler = async (req, res) => {
    const parsed = createUserBody.safeParse(req.body);
    if (!parsed.success) {
      throw invalidRequest('username and password are strings; roles, if given, a list of user, security, admin', {
        fields: [...new Set(parsed.error.issues.map((i) => i.path.join('.') || 'body'))],
      });
    }
    const client = clientInfo(req);
    const result = await createUser(
      {
        users: services.users,
        passwords: services.passwords,
        writer: services.writer,
        minPasswordLength: services.config.passwords.minLength,
      },
      { username: parsed.data.username, password: parsed.data.password, roles: (parsed.data.roles ?? ['user']) as never },
      { actorId: authOf(res).sub, ip: client.ip, userAgent: client.userAgent, deviceId: client.deviceId, requestId: client.requestId },
    );
    if (!result.ok) {
      if (result.problem === 'username_taken') throw new HttpError(409, 'username_taken', 'The username is taken');
      throw invalidRequest(result.detail);
    }
    res.status(201).json({ id: result.user.id, username: result.user.username, roles: result.user.roles });
  };

  const router = Router();
  router.post('/admin/users', requireAuth(services, ['admin']), ...jsonBody(), create);
  return router;
}
