import { Router, type Request, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import { isUuid } from '../audit/record.js';
import type { Services } from '../services.js';
import { createUserAdmin, type ActorContext, type AdminResult } from '../users/user-admin.js';
import { ROLES, type Role } from '../users/user-queries.js';
import { normalizeUsername } from '../users/usernames.js';
import { recordForRequest } from './audit-request.js';
import { clientInfo } from './client-info.js';
import { usersCursor } from './cursor.js';
import { HttpError, invalidRequest, parseInput } from './errors.js';
import { clientText } from './input.js';
import { jsonBody } from './json-body.js';
import { authOf, requireAuth } from './require-auth.js';

const role = z.enum(ROLES as [Role, ...Role[]]);
const createUserBody = z.object({ username: z.string(), password: z.string(), roles: z.array(role).max(ROLES.length).optional() });
const rolesBody = z.object({ roles: z.array(role).max(ROLES.length) });
const passwordBody = z.object({ password: z.string().max(4096) });
const listQuery = z.object({
  q: clientText(256).optional(),
  status: z.enum(['active', 'disabled']).optional(),
  role: role.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  // An issued cursor holds a normalized username: up to 256 characters of up to 3 UTF-8 bytes, in base64url.
  cursor: z.string().max(2048).optional(),
});

function actorOf(req: Request, res: Response): ActorContext {
  const client = clientInfo(req);
  return { actorId: authOf(res).sub, ip: client.ip, userAgent: client.userAgent, deviceId: client.deviceId, requestId: client.requestId };
}

function userId(req: Request): string {
  const id = String(req.params.id).toLowerCase();
  if (!isUuid(id)) throw new HttpError('not_found', { detail: 'No such user' });
  return id;
}

function unwrap<T>(result: AdminResult<T>): T {
  if (result.ok) return result.value;
  if (result.problem === 'not_found') throw new HttpError('not_found', { detail: 'No such user' });
  throw invalidRequest(result.detail);
}

const view = (u: { id: string; username: string; roles: Role[]; status: string; mfa_enabled: boolean }) => ({
  id: u.id,
  username: u.username,
  roles: u.roles,
  status: u.status,
  mfa_enabled: u.mfa_enabled,
});

/**
 * User management (role `admin`, docs/api.md): create, list and search, disable and enable, roles,
 * password reset, MFA reset, revoking sessions. Every action is recorded with the admin as actor.
 */
export function adminUserRoutes(services: Services): Router {
  const admin = createUserAdmin(services);

  const create: RequestHandler = async (req, res) => {
    const body = parseInput(createUserBody, req.body, 'username and password are strings; roles, if given, a list of user, security, admin');
    const result = await admin.create({ username: body.username, password: body.password, roles: body.roles ?? ['user'] }, actorOf(req, res));
    if (!result.ok) {
      if (result.problem === 'username_taken') throw new HttpError('username_taken');
      throw invalidRequest(result.detail);
    }
    res.status(201).json({ id: result.user.id, username: result.user.username, roles: result.user.roles });
  };

  const list: RequestHandler = async (req, res) => {
    const query = parseInput(listQuery, req.query, 'q, status (active, disabled), role, limit (1-1000) and cursor');
    const after = query.cursor ? usersCursor.decode(query.cursor).after : undefined;
    const rows = await services.users.list({ q: query.q, status: query.status, role: query.role, after, limit: query.limit + 1 });
    const items = rows.slice(0, query.limit);
    const last = items.at(-1);
    const nextCursor =
      rows.length > query.limit && last ? usersCursor.encode({ after: normalizeUsername(last.username) }) : null;
    await recordForRequest(services.writer, req, res, {
      eventType: 'user.searched',
      outcome: 'success',
      actorId: authOf(res).sub,
      details: { filters: { q: query.q ?? null, status: query.status ?? null, role: query.role ?? null }, returned: items.length },
    });
    res.json({ items, next_cursor: nextCursor });
  };

  const show: RequestHandler = async (req, res) => {
    const user = await services.users.findById(userId(req));
    if (!user) throw new HttpError('not_found', { detail: 'No such user' });
    res.json(view(user));
  };

  const setStatus =
    (status: 'active' | 'disabled'): RequestHandler =>
    async (req, res) => {
      res.json(view(unwrap(await admin.setStatus(userId(req), status, actorOf(req, res)))));
    };

  const setRoles: RequestHandler = async (req, res) => {
    const { roles } = parseInput(rolesBody, req.body, 'roles is a list of user, security, admin');
    res.json(view(unwrap(await admin.setRoles(userId(req), roles, actorOf(req, res)))));
  };

  const resetPassword: RequestHandler = async (req, res) => {
    const { password } = parseInput(passwordBody, req.body, 'password is a string');
    unwrap(await admin.resetPassword(userId(req), password, actorOf(req, res)));
    res.status(204).end();
  };

  const resetMfa: RequestHandler = async (req, res) => {
    res.json(view(unwrap(await admin.resetMfa(userId(req), actorOf(req, res)))));
  };

  const revokeSessions: RequestHandler = async (req, res) => {
    res.json({ revoked_sessions: unwrap(await admin.revokeSessions(userId(req), actorOf(req, res))) });
  };

  const router = Router();
  const onlyAdmins = requireAuth(services, ['admin']);
  router.post('/admin/users', onlyAdmins, ...jsonBody(), create);
  router.get('/admin/users', onlyAdmins, list);
  router.get('/admin/users/:id', onlyAdmins, show);
  router.post('/admin/users/:id/disable', onlyAdmins, setStatus('disabled'));
  router.post('/admin/users/:id/enable', onlyAdmins, setStatus('active'));
  router.put('/admin/users/:id/roles', onlyAdmins, ...jsonBody(), setRoles);
  router.post('/admin/users/:id/password', onlyAdmins, ...jsonBody(), resetPassword);
  router.post('/admin/users/:id/mfa/reset', onlyAdmins, resetMfa);
  router.post('/admin/users/:id/sessions/revoke', onlyAdmins, revokeSessions);
  return router;
}
