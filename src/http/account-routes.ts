import { Router, type Request, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import type { RecordOptions } from '../audit/chain-writer.js';
import type { AuditEvent, MfaMethod } from '../audit/record.js';
import type { AuditEventType, AuditReason } from '../audit/vocabulary.js';
import type { Attempt, AttemptEvent } from '../lockout/attempts.js';
import type { Services } from '../services.js';
import { passwordPolicyProblem, PASSWORD_MAX_BYTES } from '../users/passwords.js';
import { ROLES, type UserRow } from '../users/user-queries.js';
import { normalizeUsername } from '../users/usernames.js';
import { releaseUnjudgedAttempt, startAttempt } from './attempt-guard.js';
import { recordForRequest } from './audit-request.js';
import { failureEventTypeOf } from './refusal-audit.js';
import { HttpError, invalidRequest, parseInput } from './errors.js';
import { jsonBody, optionalJsonBody } from './json-body.js';
import { authOf, requireAuth } from './require-auth.js';

/** A login at most this old counts as re-authentication; older sessions must present the current password. */
export const REAUTH_MAX_AGE_SECONDS = 300;

const CURRENT_PASSWORD = z.string().max(4096).optional();
const OTP = z.string().max(64);
const enrollBody = z.object({ current_password: CURRENT_PASSWORD });
const otpBody = z.object({ otp: OTP, current_password: CURRENT_PASSWORD });
const passwordChangeBody = z.object({ current_password: z.string().max(4096), new_password: z.string().max(4096) });

/** The user behind the token (requireAuth has already checked it is active and the session live). */
async function currentUser(services: Services, res: Response): Promise<UserRow> {
  const user = await services.users.findById(authOf(res).sub);
  if (!user || user.status !== 'active') throw new HttpError('unauthorized', { detail: 'The account is not active' });
  return user;
}

/** What a self-service request must prove, and how its refusals are recorded. */
interface Proof {
  /** The current password, when presented. */
  password: string | undefined;
  /** Whether a recent login is not enough (changing the password always needs the current one). */
  passwordRequired: boolean;
  /** The code check of this action, if it has one: undefined when right, else the failure. */
  checkCode?: () => Promise<{ reason: AuditReason; eventType?: AuditEventType } | undefined>;
  mfaMethod: MfaMethod;
}

/**
 * Self-service for a logged-in user (any role): TOTP enrollment, confirmation, disabling,
 * recovery codes, and changing the password. A stolen access token alone changes nothing here:
 * every action re-authenticates (the current password, or a login within
 * {@link REAUTH_MAX_AGE_SECONDS}), and every password or code checked here is one attempt of the
 * account's lockout (a success gives its slot back, never resets the count).
 */
export function accountRoutes(services: Services): Router {
  const { mfa, lockout, writer } = services;

  const record = (
    req: Request,
    res: Response,
    user: UserRow,
    event: Omit<AuditEvent, 'username' | 'userId' | 'actorId' | 'ip' | 'userAgent' | 'deviceId' | 'requestId'>,
    options?: RecordOptions,
  ) => recordForRequest(writer, req, res, { ...event, username: user.username, userId: user.id, actorId: user.id, sessionId: authOf(res).sid }, options);

  /**
   * Re-authenticates the caller and checks the action's code, as one lockout attempt. Throws the
   * refusal (recorded) when a proof is missing or wrong; returns the attempt's details otherwise.
   */
  async function prove(req: Request, res: Response, user: UserRow, proof: Proof): Promise<Record<string, unknown> | null> {
    // The route's failure event type, the same the central refusal record uses.
    const failureEventType = failureEventTypeOf(req);
    const authTime = authOf(res).auth_time;
    const recent = authTime !== undefined && Date.now() / 1000 - authTime <= REAUTH_MAX_AGE_SECONDS;
    if (proof.password === undefined && (proof.passwordRequired || !recent)) {
      await record(req, res, user, { eventType: failureEventType, outcome: 'failure', reason: 'reauthentication_required', mfaMethod: proof.mfaMethod });
      throw new HttpError('reauthentication_required', {
        detail: `send current_password (or log in again: a login within ${REAUTH_MAX_AGE_SECONDS} s is enough)`,
      });
    }
    if (proof.password === undefined && !proof.checkCode) return null;
    if (proof.password !== undefined && Buffer.byteLength(proof.password) > PASSWORD_MAX_BYTES) {
      await record(req, res, user, { eventType: failureEventType, outcome: 'failure', reason: 'invalid_request', mfaMethod: proof.mfaMethod });
      throw invalidRequest('the current password is too long', { fields: ['current_password'] });
    }
    const attempt: Attempt = await startAttempt(lockout, req, res, {
      account: normalizeUsername(user.username),
      kind: 'reauthentication',
      failureEventType,
      record: ({ outlivesRequest, ...event }: AttemptEvent) =>
        record(req, res, user, { ...event, mfaMethod: proof.mfaMethod }, outlivesRequest ? { signal: null } : undefined),
    });
    if (proof.password !== undefined && !(await services.passwords.verify(proof.password, user.password_hash)).ok) {
      await attempt.fail('wrong_password');
      throw new HttpError('invalid_credentials', { detail: 'The current password is not right' });
    }
    const wrongCode = await proof.checkCode?.();
    if (wrongCode) {
      await attempt.fail(wrongCode.reason, wrongCode.eventType ? { eventType: wrongCode.eventType } : {});
      throw new HttpError('invalid_mfa', { detail: wrongCode.reason === 'no_enrollment' ? 'No enrollment is pending' : 'The code is not valid' });
    }
    await attempt.succeed();
    return attempt.details();
  }

  /** A current code of the user's authenticator: wrong codes and replays are failures. */
  const currentCode = (userId: string, otp: string) => async (): Promise<{ reason: AuditReason; eventType?: AuditEventType } | undefined> => {
    const result = await mfa.verifyTotp(userId, otp);
    if (result === 'ok') return undefined;
    if (result === 'replayed') return { reason: 'otp_replayed', eventType: 'mfa.replayed' };
    return { reason: result === 'not_enabled' ? 'mfa_not_enabled' : 'invalid_otp' };
  };

  const startEnrollment: RequestHandler = async (req, res) => {
    const user = await currentUser(services, res);
    const body = parseInput(enrollBody, req.body ?? {}, 'current_password, if sent, is a string');
    const details = await prove(req, res, user, { password: body.current_password, passwordRequired: false, mfaMethod: 'totp' });
    const started = await mfa.startEnrollment(user);
    if (started === 'already_enabled') {
      await record(req, res, user, { eventType: failureEventTypeOf(req), outcome: 'failure', reason: 'mfa_already_enabled', mfaMethod: 'totp' });
      throw new HttpError('mfa_already_enabled', { detail: 'MFA is already enabled; disable it first' });
    }
    await record(req, res, user, { eventType: 'mfa.enrollment_started', outcome: 'success', mfaMethod: 'totp', details });
    res.set('Cache-Control', 'no-store').json({ secret: started.secret, otpauth_uri: started.otpauthUri });
  };

  const confirmEnrollment: RequestHandler = async (req, res) => {
    const user = await currentUser(services, res);
    const body = parseInput(otpBody, req.body, 'send otp, a code from the authenticator (and current_password unless you logged in within 5 minutes)');
    let codes: string[] = [];
    const details = await prove(req, res, user, {
      password: body.current_password,
      passwordRequired: false,
      mfaMethod: 'totp',
      checkCode: async () => {
        const result = await mfa.confirmEnrollment(user.id, body.otp);
        if (!result.ok) return { reason: result.reason };
        codes = result.recoveryCodes;
        return undefined;
      },
    });
    await record(req, res, user, { eventType: 'mfa.enabled', outcome: 'success', mfaMethod: 'totp', details: { ...details, recovery_codes: codes.length } });
    res.set('Cache-Control', 'no-store').json({ recovery_codes: codes });
  };

  /** The proof that changing an enabled factor asks for: its current code, and the password unless the login is recent. */
  function proveWithCurrentCode(req: Request, res: Response, user: UserRow): Promise<Record<string, unknown> | null> {
    const body = parseInput(otpBody, req.body, 'send otp, the current code of the authenticator (and current_password unless you logged in within 5 minutes)');
    return prove(req, res, user, {
      password: body.current_password,
      passwordRequired: false,
      mfaMethod: 'totp',
      checkCode: currentCode(user.id, body.otp),
    });
  }

  const disable: RequestHandler = async (req, res) => {
    const user = await currentUser(services, res);
    const details = await proveWithCurrentCode(req, res, user);
    await mfa.disable(user.id);
    // Sessions that were authenticated with the factor just removed must not keep `amr: otp`.
    const revoked = await services.refreshTokens.revokeAllForUser(user.id, 'mfa_disabled');
    await record(req, res, user, { eventType: 'mfa.disabled', outcome: 'success', mfaMethod: 'totp', details: { ...details, revoked_sessions: revoked } });
    res.status(204).end();
  };

  const regenerateRecoveryCodes: RequestHandler = async (req, res) => {
    const user = await currentUser(services, res);
    const details = await proveWithCurrentCode(req, res, user);
    const codes = await mfa.regenerateRecoveryCodes(user.id);
    await record(req, res, user, { eventType: 'mfa.recovery_codes_regenerated', outcome: 'success', mfaMethod: 'totp', details: { ...details, recovery_codes: codes.length } });
    res.set('Cache-Control', 'no-store').json({ recovery_codes: codes });
  };

  const changePassword: RequestHandler = async (req, res) => {
    const user = await currentUser(services, res);
    const body = parseInput(passwordChangeBody, req.body, 'send current_password and new_password as strings');
    const details = await prove(req, res, user, { password: body.current_password, passwordRequired: true, mfaMethod: 'none' });
    const problem = passwordPolicyProblem(body.new_password, user.username, services.config.passwords.minLength);
    if (problem) {
      await record(req, res, user, { eventType: failureEventTypeOf(req), outcome: 'failure', reason: 'password_policy', details: { problem } });
      throw invalidRequest(`the new password is ${problem.replaceAll('_', ' ')} (at least ${services.config.passwords.minLength} characters, not the username)`);
    }
    await services.users.updatePasswordHash(user.id, await services.passwords.hash(body.new_password));
    const revoked = await services.refreshTokens.revokeAllForUser(user.id, 'password_changed');
    await record(req, res, user, { eventType: 'user.password_changed', outcome: 'success', details: { ...details, revoked_sessions: revoked } });
    res.status(204).end();
  };

  const auth = requireAuth(services, ROLES, { adminRoute: false });
  const router = Router();
  router.post('/mfa/totp/enroll', auth, optionalJsonBody(), startEnrollment);
  router.post('/mfa/totp/confirm', auth, ...jsonBody(), confirmEnrollment);
  router.post('/mfa/totp/disable', auth, ...jsonBody(), disable);
  router.post('/mfa/recovery-codes', auth, ...jsonBody(), regenerateRecoveryCodes);
  router.post('/me/password', auth, ...jsonBody(), changePassword);
  router.use(['/mfa', '/me'], releaseUnjudgedAttempt);
  return router;
}
