import { Router, type ErrorRequestHandler, type Request, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import { AuditUnavailableError } from '../audit/chain-writer.js';
import type { Services } from '../services.js';
import { issueAccessToken } from '../tokens/access-tokens.js';
import { PASSWORD_MAX_BYTES } from '../users/passwords.js';
import type { UserRow } from '../users/user-queries.js';
import { normalizeUsername, usernameProblem } from '../users/usernames.js';
import { recordForRequest, wasAudited } from './audit-request.js';
import { clientInfo } from './client-info.js';
import { toHttpError } from './error-handler.js';
import { HttpError, invalidRequest } from './errors.js';
import { jsonBody } from './json-body.js';
import { sendTokens } from './token-response.js';

const loginBody = z.object({
  username: z.string(),
  password: z.string(),
  otp: z.string().optional(),
});

/** What the steps of one login attempt learn, in `res.locals.login`. */
interface Attempt {
  username: string;
  account: string;
  password: string;
  slot: number;
  degraded: boolean;
  user: UserRow | undefined;
}

const attemptOf = (res: Response): Attempt => res.locals.login as Attempt;

/** The one 401 for unknown user, wrong password and disabled user: identical bodies. */
const invalidCredentials = (): HttpError => new HttpError(401, 'invalid_credentials', 'Invalid username or password');

const degradedDetails = (degraded: boolean): Record<string, unknown> | null => (degraded ? { lockout_store: 'degraded' } : null);

/**
 * `POST /login` (SPEC §3, §4). Order of work: validate input → per-IP limiter → take the
 * account's attempt slot atomically → bcrypt (a dummy compare for unknown users) → record →
 * answer. Every outcome, refusals of malformed requests included, is one audit record written
 * before the answer; no record, no tokens.
 */
export function loginRoutes(services: Services): Router {
  const { config, lockout, passwords, users, writer } = services;
  const recordFailure = (req: Request, res: Response, reason: string, extra: Record<string, unknown> = {}) => {
    const attempt = res.locals.login as Partial<Attempt> | undefined;
    return recordForRequest(writer, req, res, {
      eventType: 'login.failed',
      outcome: 'failure',
      reason,
      username: attempt?.username ?? null,
      userId: attempt?.user?.id ?? null,
      mfaMethod: 'none',
      details: { ...degradedDetails(attempt?.degraded ?? false), ...extra },
    });
  };

  const validateInput: RequestHandler = async (req, res, next) => {
    const parsed = loginBody.safeParse(req.body);
    const raw = req.body as { username?: unknown } | undefined;
    if (raw && typeof raw.username === 'string') res.locals.login = { username: raw.username };
    if (!parsed.success) {
      const fields = [...new Set(parsed.error.issues.map((i) => i.path.join('.') || 'body'))];
      await recordFailure(req, res, 'invalid_request', { fields });
      throw invalidRequest(`username and password must be strings (${fields.join(', ')})`);
    }
    const { username, password } = parsed.data;
    const problem = usernameProblem(username);
    if (problem) {
      await recordFailure(req, res, 'invalid_request', { username_problem: problem });
      throw invalidRequest(`the username is ${problem.replace('_', ' ')}`);
    }
    if (password.length === 0 || Buffer.byteLength(password, 'utf8') > PASSWORD_MAX_BYTES) {
      await recordFailure(req, res, 'invalid_request', { password_problem: password.length === 0 ? 'empty' : 'too_long' });
      throw invalidRequest(`the password must be 1 to ${PASSWORD_MAX_BYTES} bytes`);
    }
    res.locals.login = { username, account: normalizeUsername(username), password, slot: 0, degraded: false, user: undefined } satisfies Attempt;
    next();
  };

  const throttleByIp: RequestHandler = async (req, res, next) => {
    const attempt = attemptOf(res);
    const check = await lockout.checkIp(clientInfo(req).ip);
    attempt.degraded ||= check.degraded;
    if (!check.allowed) {
      await recordFailure(req, res, 'too_many_attempts');
      throw new HttpError(429, 'too_many_attempts', 'Too many attempts', { headers: { 'Retry-After': String(check.retryAfterSeconds) } });
    }
    next();
  };

  const takeAttemptSlot: RequestHandler = async (req, res, next) => {
    const attempt = attemptOf(res);
    const slot = await lockout.takeAttemptSlot(attempt.account);
    attempt.degraded ||= slot.degraded;
    if (!slot.allowed) {
      await recordFailure(req, res, 'account_locked');
      throw new HttpError(429, 'account_locked', 'The account is locked', { headers: { 'Retry-After': String(slot.retryAfterSeconds) } });
    }
    attempt.slot = slot.slot;
    next();
  };

  const checkPassword: RequestHandler = async (req, res, next) => {
    const attempt = attemptOf(res);
    const user = await users.findByNormalizedUsername(attempt.account).catch(async (err: unknown) => {
      await lockout.releaseSlot(attempt.account).catch(() => {});
      throw err;
    });
    attempt.user = user;
    let reason: string | undefined;
    if (!user) {
      await passwords.verifyDummy(attempt.password);
      reason = 'unknown_user';
    } else {
      const check = await passwords.verify(attempt.password, user.password_hash);
      if (!check.ok) reason = 'wrong_password';
      else if (user.status !== 'active') reason = 'user_disabled';
      else if (check.needsRehash) await users.updatePasswordHash(user.id, await passwords.hash(attempt.password));
    }
    if (reason) {
      const outcome = await lockout.recordFailure(attempt.account, attempt.slot, clientInfo(req).ip);
      attempt.degraded ||= outcome.degraded;
      await recordFailure(req, res, reason, { attempt: attempt.slot });
      if (outcome.lockStarted) {
        await recordForRequest(writer, req, res, {
          eventType: 'lockout.started',
          outcome: 'success',
          reason: 'too_many_failures',
          username: attempt.username,
          userId: user?.id ?? null,
          details: { ...outcome.lockStarted, ...degradedDetails(attempt.degraded) },
        });
      }
      throw invalidCredentials();
    }
    attempt.degraded ||= (await lockout.recordSuccess(attempt.account)).degraded;
    next();
  };

  const issueSession: RequestHandler = async (req, res) => {
    const attempt = attemptOf(res);
    const user = attempt.user!;
    const amr = ['pwd' as const];
    const { familyId, issued } = await services.refreshTokens.startFamily(user.id, amr);
    try {
      await recordForRequest(writer, req, res, {
        eventType: 'login.succeeded',
        outcome: 'success',
        username: attempt.username,
        userId: user.id,
        mfaMethod: 'none',
        sessionId: familyId,
        details: { amr, ...degradedDetails(attempt.degraded) },
      });
    } catch (err) {
      // Never disclosed, but revoked anyway: a session without its record must not exist.
      await services.refreshTokens.revokeFamily(familyId, 'audit_unavailable').catch(() => {});
      throw err;
    }
    const access = issueAccessToken(services.keys, { ...config.tokens, ttlSeconds: config.tokens.accessTtlSeconds }, {
      sub: user.id,
      sid: familyId,
      amr,
      roles: user.roles,
    });
    sendTokens(req, res, config, {
      accessToken: access.token,
      expiresIn: access.expiresIn,
      refreshToken: issued.token,
      refreshExpiresIn: issued.expiresIn,
    });
  };

  /** Malformed requests (413, 415, unparsable JSON) reach here before any step: record them too. */
  const recordRejectedRequest: ErrorRequestHandler = (err, req, res, next) => {
    if (wasAudited(res) || err instanceof AuditUnavailableError) {
      next(err);
      return;
    }
    recordFailure(req, res, toHttpError(err).code).then(
      () => next(err),
      (auditErr: unknown) => next(auditErr),
    );
  };

  const router = Router();
  router.post('/login', ...jsonBody(), validateInput, throttleByIp, takeAttemptSlot, checkPassword, issueSession);
  router.use('/login', recordRejectedRequest);
  return router;
}
