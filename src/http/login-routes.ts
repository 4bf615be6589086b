import { Router, type ErrorRequestHandler, type Request, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import { AuditUnavailableError } from '../audit/chain-writer.js';
import { DatabaseUnavailableError } from '../db/database.js';
import { recordOrUndo } from '../audit/record-or-undo.js';
import type { MfaMethod } from '../audit/record.js';
import type { Services } from '../services.js';
import type { Amr } from '../tokens/access-tokens.js';
import { PASSWORD_MAX_BYTES } from '../users/passwords.js';
import type { UserRow } from '../users/user-queries.js';
import { normalizeUsername, usernameProblem } from '../users/usernames.js';
import { recordForRequest, wasAudited } from './audit-request.js';
import { clientInfo } from './client-info.js';
import { toHttpError } from './error-handler.js';
import { HttpError, fieldsOf, invalidRequest } from './errors.js';
import { jsonBody } from './json-body.js';
import { respondWithTokens } from './token-response.js';

const CODE = z.string().max(64);
const loginBody = z.object({ username: z.string(), password: z.string(), otp: CODE.optional() });
const mfaBody = z.union([
  z.object({ mfa_token: z.string().max(128), otp: CODE, recovery_code: z.undefined().optional() }),
  z.object({ mfa_token: z.string().max(128), recovery_code: CODE, otp: z.undefined().optional() }),
]);

/** What the steps of one attempt learn, in `res.locals.login`. */
interface Attempt {
  /** As attempted (recorded), and normalized (the lockout key). */
  username: string;
  account: string;
  password: string | undefined;
  /** A second factor presented in this request, if any. */
  code: { method: Exclude<MfaMethod, 'none'>; value: string } | undefined;
  slot: number;
  /** The slot's verdict is in: a failure counted, a success reset, or the slot given back. */
  judged: boolean;
  degraded: boolean;
  user: UserRow | undefined;
  mfaMethod: MfaMethod;
}

const attemptOf = (res: Response): Attempt => res.locals.login as Attempt;

/** The one 401 for unknown user, wrong password and disabled user: identical bodies. */
const invalidCredentials = (): HttpError => new HttpError(401, 'invalid_credentials', 'Invalid username or password');
const invalidMfa = (): HttpError => new HttpError(401, 'invalid_mfa', 'The second factor is not valid');

const degradedDetails = (degraded: boolean): Record<string, unknown> | null => (degraded ? { lockout_store: 'degraded' } : null);

/**
 * `POST /login` and `POST /login/mfa` (SPEC §3, §4, §7). Order of work: validate input →
 * per-IP limiter → take the account's attempt slot atomically → bcrypt (a dummy compare for
 * unknown users) or the second factor → record → answer. Every outcome, refusals of malformed
 * requests included, is one audit record written before the answer; no record, no tokens.
 * Wrong passwords and wrong codes count toward the same lockout.
 */
export function loginRoutes(services: Services): Router {
  const { lockout, passwords, users, writer, mfa } = services;

  const recordFailure = (req: Request, res: Response, reason: string, extra: Record<string, unknown> = {}, eventType = 'login.failed') => {
    const attempt = res.locals.login as Partial<Attempt> | undefined;
    return recordForRequest(writer, req, res, {
      eventType,
      outcome: 'failure',
      reason,
      username: attempt?.username ?? null,
      userId: attempt?.user?.id ?? null,
      mfaMethod: attempt?.mfaMethod ?? 'none',
      details: { ...degradedDetails(attempt?.degraded ?? false), ...extra },
    });
  };

  /** A wrong password or code: counts toward the lockout, is recorded, and may start the lock. */
  async function failAttempt(req: Request, res: Response, reason: string, eventType = 'login.failed'): Promise<void> {
    const attempt = attemptOf(res);
    const outcome = await lockout.recordFailure(attempt.account, attempt.slot, clientInfo(req).ip);
    attempt.judged = true;
    attempt.degraded ||= outcome.degraded;
    await recordFailure(req, res, reason, { attempt: attempt.slot }, eventType);
    if (outcome.lockStarted) {
      await recordForRequest(writer, req, res, {
        eventType: 'lockout.started',
        outcome: 'success',
        reason: 'too_many_failures',
        username: attempt.username,
        userId: attempt.user?.id ?? null,
        details: { ...outcome.lockStarted, ...degradedDetails(attempt.degraded) },
      });
    }
  }

  const validateLogin: RequestHandler = async (req, res, next) => {
    const parsed = loginBody.safeParse(req.body);
    const raw = req.body as { username?: unknown } | undefined;
    if (raw && typeof raw.username === 'string') res.locals.login = { username: raw.username };
    if (!parsed.success) {
      const fields = fieldsOf(parsed.error);
      await recordFailure(req, res, 'invalid_request', { fields });
      throw invalidRequest(`username and password must be strings (${fields.join(', ')})`);
    }
    const { username, password, otp } = parsed.data;
    const problem = usernameProblem(username);
    if (problem) {
      await recordFailure(req, res, 'invalid_request', { username_problem: problem });
      throw invalidRequest(`the username is ${problem.replace('_', ' ')}`);
    }
    if (password.length === 0 || Buffer.byteLength(password, 'utf8') > PASSWORD_MAX_BYTES) {
      await recordFailure(req, res, 'invalid_request', { password_problem: password.length === 0 ? 'empty' : 'too_long' });
      throw invalidRequest(`the password must be 1 to ${PASSWORD_MAX_BYTES} bytes`);
    }
    res.locals.login = {
      username,
      account: normalizeUsername(username),
      password,
      code: otp === undefined ? undefined : { method: 'totp', value: otp },
      slot: 0,
      judged: false,
      degraded: false,
      user: undefined,
      mfaMethod: 'none',
    } satisfies Attempt;
    next();
  };

  /** The `mfa_token` is spent here, whatever follows: a wrong code means logging in again. */
  const validateMfa: RequestHandler = async (req, res, next) => {
    const parsed = mfaBody.safeParse(req.body);
    if (!parsed.success) {
      await recordFailure(req, res, 'invalid_request');
      throw invalidRequest('send mfa_token with exactly one of otp or recovery_code, as strings');
    }
    const { mfa_token: token } = parsed.data;
    const code = parsed.data.otp !== undefined ? { method: 'totp' as const, value: parsed.data.otp } : { method: 'recovery_code' as const, value: parsed.data.recovery_code };
    const challenge = await mfa.consumeChallenge(token);
    if (!challenge) {
      res.locals.login = { mfaMethod: code.method };
      await recordFailure(req, res, 'invalid_mfa_token');
      throw invalidMfa();
    }
    const user = await users.findById(challenge.userId);
    res.locals.login = {
      username: challenge.username,
      account: normalizeUsername(challenge.username),
      password: undefined,
      code,
      slot: 0,
      judged: false,
      degraded: false,
      user,
      mfaMethod: code.method,
    } satisfies Attempt;
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
    const password = attempt.password!;
    const user = await users.findByNormalizedUsername(attempt.account);
    attempt.user = user;
    let reason: string | undefined;
    if (!user) {
      await passwords.verifyDummy(password);
      reason = 'unknown_user';
    } else {
      const check = await passwords.verify(password, user.password_hash);
      if (!check.ok) reason = 'wrong_password';
      else if (user.status !== 'active') reason = 'user_disabled';
      else if (check.needsRehash) await users.updatePasswordHash(user.id, await passwords.hash(password));
    }
    if (reason) {
      await failAttempt(req, res, reason);
      throw invalidCredentials();
    }
    next();
  };

  /**
   * For a user with MFA: a code in this request is checked now (one step); without one, the
   * password's slot is given back, and a single-use `mfa_token` continues at `POST /login/mfa`.
   */
  const requireSecondFactor: RequestHandler = async (req, res, next) => {
    const attempt = attemptOf(res);
    const user = attempt.user!;
    if (!user.mfa_enabled || attempt.code) {
      next();
      return;
    }
    await lockout.releaseSlot(attempt.account);
    attempt.judged = true;
    const token = await mfa.createChallenge({ userId: user.id, username: attempt.username, requestId: clientInfo(req).requestId });
    await recordForRequest(writer, req, res, {
      eventType: 'login.mfa_required',
      outcome: 'failure',
      reason: 'mfa_required',
      username: attempt.username,
      userId: user.id,
      mfaMethod: 'none',
      details: degradedDetails(attempt.degraded),
    });
    throw new HttpError(401, 'mfa_required', 'A second factor is required', { extensions: { mfa_token: token } });
  };

  const checkSecondFactor: RequestHandler = async (req, res, next) => {
    const attempt = attemptOf(res);
    const user = attempt.user;
    if (!user || user.status !== 'active' || !user.mfa_enabled) {
      // Disabled, deleted or MFA reset while the token was outstanding.
      if (attempt.password === undefined) {
        await failAttempt(req, res, 'mfa_not_available');
        throw invalidMfa();
      }
      next();
      return;
    }
    if (!attempt.code) {
      next();
      return;
    }
    attempt.mfaMethod = attempt.code.method;
    if (attempt.code.method === 'recovery_code') {
      if (!(await mfa.useRecoveryCode(user.id, attempt.code.value))) {
        await failAttempt(req, res, 'invalid_recovery_code');
        throw invalidMfa();
      }
    } else {
      const check = await mfa.verifyTotp(user.id, attempt.code.value);
      if (check === 'replayed') {
        await failAttempt(req, res, 'otp_replayed', 'mfa.replayed');
        throw invalidMfa();
      }
      if (check !== 'ok') {
        await failAttempt(req, res, 'invalid_otp');
        throw invalidMfa();
      }
    }
    next();
  };

  const issueSession: RequestHandler = async (req, res) => {
    const attempt = attemptOf(res);
    const user = attempt.user!;
    attempt.degraded ||= (await lockout.recordSuccess(attempt.account)).degraded;
    attempt.judged = true;
    const amr: Amr[] = attempt.mfaMethod === 'none' ? ['pwd'] : ['pwd', 'otp'];
    const { familyId, issued } = await services.refreshTokens.startFamily(user.id, amr);
    await recordOrUndo(
      () =>
        recordForRequest(writer, req, res, {
          eventType: 'login.succeeded',
          outcome: 'success',
          username: attempt.username,
          userId: user.id,
          mfaMethod: attempt.mfaMethod,
          sessionId: familyId,
          details: { amr, ...degradedDetails(attempt.degraded) },
        }),
      // Never disclosed, but revoked anyway: a session without its record must not exist.
      () => services.refreshTokens.revokeFamily(familyId, 'audit_unavailable'),
    );
    respondWithTokens(req, res, services, { userId: user.id, familyId, amr, roles: user.roles }, issued);
  };

  /**
   * A slot taken by an attempt that then failed for want of the database got no verdict: give it
   * back, so an outage locks no one. Wrong passwords and codes were counted before any error.
   */
  async function releaseUnjudgedSlot(err: unknown, res: Response): Promise<void> {
    const attempt = res.locals.login as Partial<Attempt> | undefined;
    if (err instanceof DatabaseUnavailableError && attempt?.account && attempt.slot && !attempt.judged) {
      await lockout.releaseSlot(attempt.account).catch(() => {});
    }
  }

  /** Malformed requests (413, 415, unparsable JSON) reach here before any step: record them too. */
  const recordRejectedRequest: ErrorRequestHandler = (err, req, res, next) => {
    const settle = async (): Promise<void> => {
      await releaseUnjudgedSlot(err, res);
      if (!wasAudited(res) && !(err instanceof AuditUnavailableError)) await recordFailure(req, res, toHttpError(err).code);
    };
    settle().then(
      () => next(err),
      (auditErr: unknown) => next(auditErr),
    );
  };

  const router = Router();
  router.post('/login', ...jsonBody(), validateLogin, throttleByIp, takeAttemptSlot, checkPassword, requireSecondFactor, checkSecondFactor, issueSession);
  router.post('/login/mfa', ...jsonBody(), validateMfa, throttleByIp, takeAttemptSlot, checkSecondFactor, issueSession);
  router.use(['/login', '/login/mfa'], recordRejectedRequest);
  return router;
}
