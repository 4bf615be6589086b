import { Router, type Request, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import type { MfaMethod } from '../audit/record.js';
import type { AuditReason } from '../audit/vocabulary.js';
import type { AttemptEvent } from '../lockout/attempts.js';
import type { Services } from '../services.js';
import type { Amr } from '../tokens/access-tokens.js';
import { startSession } from '../tokens/sessions.js';
import { PASSWORD_MAX_BYTES } from '../users/passwords.js';
import type { UserRow } from '../users/user-queries.js';
import { normalizeUsername, usernameProblem } from '../users/usernames.js';
import { attemptOf, releaseUnjudgedAttempt, startAttempt } from './attempt-guard.js';
import { recordForRequest } from './audit-request.js';
import { failureEventTypeOf } from './refusal-audit.js';
import { clientInfo } from './client-info.js';
import { HttpError, fieldsOf, invalidRequest } from './errors.js';
import { jsonBody } from './json-body.js';
import { sendTokens } from './token-response.js';

const CODE = z.string().max(64);
const loginBody = z.object({ username: z.string(), password: z.string(), otp: CODE.optional() });
const mfaBody = z.union([
  z.object({ mfa_token: z.string().max(128), otp: CODE, recovery_code: z.undefined().optional() }),
  z.object({ mfa_token: z.string().max(128), recovery_code: CODE, otp: z.undefined().optional() }),
]);

/** What the steps of one login learn, in `res.locals.login`; the lockout attempt itself is `attemptOf(res)`. */
interface LoginState {
  /** As attempted (recorded), and normalized (the lockout key). */
  username: string;
  account: string;
  password: string | undefined;
  /** A second factor presented in this request, if any. */
  code: { method: Exclude<MfaMethod, 'none'>; value: string } | undefined;
  user: UserRow | undefined;
  mfaMethod: MfaMethod;
}

const stateOf = (res: Response): LoginState => res.locals.login as LoginState;

/** The attempt a step after `takeAttemptSlot` works with. */
function attemptIn(res: Response) {
  const attempt = attemptOf(res);
  if (!attempt) throw new Error('login step used before takeAttemptSlot');
  return attempt;
}

/** The one 401 for unknown user, wrong password and disabled user: identical bodies. */
const invalidCredentials = (): HttpError => new HttpError('invalid_credentials');
const invalidMfa = (): HttpError => new HttpError('invalid_mfa');

/**
 * `POST /login` and `POST /login/mfa` (docs/api.md; README, "Login and lockout" and "MFA"). Order of work: validate input →
 * per-IP limiter → take the account's attempt slot atomically → bcrypt (a dummy compare for
 * unknown users) or the second factor → record → answer. Every outcome, refusals of malformed
 * requests included, is one audit record written before the answer; no record, no tokens.
 * Wrong passwords and wrong codes count toward the same lockout.
 */
export function loginRoutes(services: Services): Router {
  const { lockout, passwords, users, writer, mfa } = services;

  /** One record of this login attempt, with what the steps have learned so far. */
  const recordLogin = (req: Request, res: Response, { outlivesRequest, ...event }: AttemptEvent) => {
    const state = res.locals.login as Partial<LoginState> | undefined;
    return recordForRequest(
      writer,
      req,
      res,
      { ...event, username: state?.username ?? null, userId: state?.user?.id ?? null, mfaMethod: state?.mfaMethod ?? 'none' },
      outlivesRequest ? { signal: null } : undefined,
    );
  };

  /** A refusal before any attempt began (malformed input): one `login.failed` record (the route's failure event type). */
  const recordRefusal = (req: Request, res: Response, reason: AuditReason, details: Record<string, unknown> | null = null) =>
    recordLogin(req, res, { eventType: failureEventTypeOf(req), outcome: 'failure', reason, details });

  const validateLogin: RequestHandler = async (req, res, next) => {
    const parsed = loginBody.safeParse(req.body);
    const raw = req.body as { username?: unknown } | undefined;
    if (raw && typeof raw.username === 'string') res.locals.login = { username: raw.username };
    if (!parsed.success) {
      const fields = fieldsOf(parsed.error);
      await recordRefusal(req, res, 'invalid_request', { fields });
      throw invalidRequest(`username and password must be strings (${fields.join(', ')})`);
    }
    const { username, password, otp } = parsed.data;
    const problem = usernameProblem(username);
    if (problem) {
      await recordRefusal(req, res, 'invalid_request', { username_problem: problem });
      throw invalidRequest(`the username is ${problem.replace('_', ' ')}`);
    }
    if (password.length === 0 || Buffer.byteLength(password, 'utf8') > PASSWORD_MAX_BYTES) {
      await recordRefusal(req, res, 'invalid_request', { password_problem: password.length === 0 ? 'empty' : 'too_long' });
      throw invalidRequest(`the password must be 1 to ${PASSWORD_MAX_BYTES} bytes`);
    }
    res.locals.login = {
      username,
      account: normalizeUsername(username),
      password,
      code: otp === undefined ? undefined : { method: 'totp', value: otp },
      user: undefined,
      mfaMethod: 'none',
    } satisfies LoginState;
    next();
  };

  /** The `mfa_token` is spent here, whatever follows: a wrong code means logging in again. */
  const validateMfa: RequestHandler = async (req, res, next) => {
    const parsed = mfaBody.safeParse(req.body);
    if (!parsed.success) {
      await recordRefusal(req, res, 'invalid_request');
      throw invalidRequest('send mfa_token with exactly one of otp or recovery_code, as strings');
    }
    const { mfa_token: token } = parsed.data;
    const code = parsed.data.otp !== undefined ? { method: 'totp' as const, value: parsed.data.otp } : { method: 'recovery_code' as const, value: parsed.data.recovery_code };
    const challenge = await mfa.consumeChallenge(token);
    if (!challenge) {
      // A spent or expired token still names its user: the refusal is found by the user's name.
      const owner = await mfa.challengeOwner(token);
      await recordForRequest(writer, req, res, {
        eventType: failureEventTypeOf(req),
        outcome: 'failure',
        reason: 'invalid_mfa_token',
        username: owner?.username ?? null,
        userId: owner?.userId ?? null,
        mfaMethod: code.method,
      });
      throw invalidMfa();
    }
    const user = await users.findById(challenge.userId);
    res.locals.login = {
      username: challenge.username,
      account: normalizeUsername(challenge.username),
      password: undefined,
      code,
      user,
      mfaMethod: code.method,
    } satisfies LoginState;
    next();
  };

  /** The address's point and the account's slot, before any secret is checked (or a recorded 429). */
  const takeAttemptSlot: RequestHandler = async (req, res, next) => {
    await startAttempt(lockout, req, res, {
      account: stateOf(res).account,
      kind: 'login',
      failureEventType: failureEventTypeOf(req),
      record: (event) => recordLogin(req, res, event),
    });
    next();
  };

  const checkPassword: RequestHandler = async (_req, res, next) => {
    const state = stateOf(res);
    const password = state.password!;
    const user = await users.findByNormalizedUsername(state.account);
    state.user = user;
    let reason: AuditReason | undefined;
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
      await attemptIn(res).fail(reason);
      throw invalidCredentials();
    }
    next();
  };

  /**
   * For a user with MFA: a code in this request is checked now (one step); without one, the
   * password's slot is given back, and a single-use `mfa_token` continues at `POST /login/mfa`.
   */
  const requireSecondFactor: RequestHandler = async (req, res, next) => {
    const state = stateOf(res);
    const user = state.user!;
    if (!user.mfa_enabled || state.code) {
      next();
      return;
    }
    const attempt = attemptIn(res);
    await attempt.release();
    const token = await mfa.createChallenge({ userId: user.id, username: state.username, requestId: clientInfo(req).requestId });
    await recordLogin(req, res, { eventType: 'login.mfa_required', outcome: 'failure', reason: 'mfa_required', details: attempt.details() });
    throw new HttpError('mfa_required', { extensions: { mfa_token: token } });
  };

  const checkSecondFactor: RequestHandler = async (_req, res, next) => {
    const state = stateOf(res);
    const attempt = attemptIn(res);
    const user = state.user;
    if (!user || user.status !== 'active' || !user.mfa_enabled) {
      // Disabled, deleted or MFA reset while the token was outstanding.
      if (state.password === undefined) {
        await attempt.fail('mfa_not_available');
        throw invalidMfa();
      }
      next();
      return;
    }
    if (!state.code) {
      next();
      return;
    }
    state.mfaMethod = state.code.method;
    if (state.code.method === 'recovery_code') {
      if (!(await mfa.useRecoveryCode(user.id, state.code.value))) {
        await attempt.fail('invalid_recovery_code');
        throw invalidMfa();
      }
    } else {
      const check = await mfa.verifyTotp(user.id, state.code.value);
      if (check === 'replayed') {
        await attempt.fail('otp_replayed', { eventType: 'mfa.replayed' });
        throw invalidMfa();
      }
      if (check !== 'ok') {
        await attempt.fail('invalid_otp');
        throw invalidMfa();
      }
    }
    next();
  };

  const issueSession: RequestHandler = async (req, res) => {
    const state = stateOf(res);
    const attempt = attemptIn(res);
    const user = state.user!;
    await attempt.succeed();
    const amr: Amr[] = state.mfaMethod === 'none' ? ['pwd'] : ['pwd', 'otp'];
    const tokens = await startSession(services, user, amr, (sessionId) =>
      recordForRequest(writer, req, res, {
        eventType: 'login.succeeded',
        outcome: 'success',
        username: state.username,
        userId: user.id,
        mfaMethod: state.mfaMethod,
        sessionId,
        details: attempt.details({ amr }),
      }),
    );
    sendTokens(req, res, services.config, tokens);
  };

  const router = Router();
  router.post('/login', ...jsonBody(), validateLogin, takeAttemptSlot, checkPassword, requireSecondFactor, checkSecondFactor, issueSession);
  router.post('/login/mfa', ...jsonBody(), validateMfa, takeAttemptSlot, checkSecondFactor, issueSession);
  // Refusals no step recorded (413, 415, malformed JSON, 503) are recorded by recordAuthRefusals.
  router.use(['/login', '/login/mfa'], releaseUnjudgedAttempt);
  return router;
}
