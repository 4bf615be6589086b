import { Router, type Request, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import type { AuditEvent } from '../audit/record.js';
import type { Services } from '../services.js';
import { passwordPolicyProblem, PASSWORD_MAX_BYTES } from '../users/passwords.js';
import { ROLES, type UserRow } from '../users/user-queries.js';
import { normalizeUsername } from '../users/usernames.js';
import { recordForRequest } from './audit-request.js';
import { clientInfo } from './client-info.js';
import { HttpError, invalidRequest, parseInput } from './errors.js';
import { jsonBody } from './json-body.js';
import { authOf, requireAuth } from './require-auth.js';

const otpBody = z.object({ otp: z.string().max(64) });
const passwordChangeBody = z.object({ current_password: z.string().max(4096), new_password: z.string().max(4096) });

/** The user behind the token, still active; 401 otherwise (tokens outlive a disable until `exp`). */
async function currentUser(services: Services, res: Response): Promise<UserRow> {
  const user = await services.users.findById(authOf(res).sub);
  if (!user || user.status !== 'active') throw new HttpError(401, 'unauthorized', 'The account is not active');
  return user;
}

/**
 * Self-service for a logged-in user (any role): TOTP enrollment, confirmation, disabling,
 * recovery codes, and changing the password. Codes and current passwords checked here count
 * toward the account lockout, so a stolen access token cannot be used to guess them.
 */
export function accountRoutes(services: Services): Router {
  const { mfa, lockout, writer } = services;

  const record = (req: Request, res: Response, user: UserRow, event: Omit<AuditEvent, 'username' | 'userId' | 'actorId' | 'ip' | 'userAgent' | 'deviceId' | 'requestId'>) =>
    recordForRequest(writer, req, res, { ...event, username: user.username, userId: user.id, actorId: user.id, sessionId: authOf(res).sid });

  /** Runs `check` holding an attempt slot; a failed check counts as a failure (and may lock). */
  async function guarded(req: Request, res: Response, user: UserRow, check: () => Promise<boolean>): Promise<boolean> {
    const account = normalizeUsername(user.username);
    const slot = await lockout.takeAttemptSlot(account);
    if (!slot.allowed) {
      throw new HttpError(429, 'account_locked', 'The account is locked', { headers: { 'Retry-After': String(slot.retryAfterSeconds) } });
    }
    if (await check()) {
      await lockout.recordSuccess(account);
      return true;
    }
    const outcome = await lockout.recordFailure(account, slot.slot, clientInfo(req).ip);
    if (outcome.lockStarted) {
      await record(req, res, user, { eventType: 'lockout.started', outcome: 'success', reason: 'too_many_failures', details: { ...outcome.lockStarted } });
    }
    return false;
  }

  /** A current TOTP code of the user: replays and wrong codes are refused and recorded. */
  async function requireCurrentCode(req: Request, res: Response, user: UserRow, action: string): Promise<void> {
    const { otp } = parseInput(otpBody, req.body, 'send otp, the current code of the authenticator');
    let result = 'invalid';
    const ok = await guarded(req, res, user, async () => {
      result = await mfa.verifyTotp(user.id, otp);
      return result === 'ok';
    });
    if (!ok) {
      await record(req, res, user, {
        eventType: result === 'replayed' ? 'mfa.replayed' : `${action}_failed`,
        outcome: 'failure',
        reason: result === 'replayed' ? 'otp_replayed' : result === 'not_enabled' ? 'mfa_not_enabled' : 'invalid_otp',
        mfaMethod: 'totp',
      });
      throw new HttpError(400, 'invalid_mfa', 'The code is not valid');
    }
  }

  const startEnrollment: RequestHandler = async (req, res) => {
    const user = await currentUser(services, res);
    const started = await mfa.startEnrollment(user);
    if (started === 'already_enabled') throw new HttpError(409, 'mfa_already_enabled', 'MFA is already enabled; disable it first');
    await record(req, res, user, { eventType: 'mfa.enrollment_started', outcome: 'success', mfaMethod: 'totp' });
    res.set('Cache-Control', 'no-store').json({ secret: started.secret, otpauth_uri: started.otpauthUri });
  };

  const confirmEnrollment: RequestHandler = async (req, res) => {
    const user = await currentUser(services, res);
    const { otp } = parseInput(otpBody, req.body, 'send otp, a code from the authenticator');
    let reason = '';
    let codes: string[] = [];
    const ok = await guarded(req, res, user, async () => {
      const result = await mfa.confirmEnrollment(user.id, otp);
      if (result.ok) codes = result.recoveryCodes;
      else reason = result.reason;
      return result.ok;
    });
    if (!ok) {
      await record(req, res, user, { eventType: 'mfa.enrollment_failed', outcome: 'failure', reason, mfaMethod: 'totp' });
      throw new HttpError(400, 'invalid_mfa', reason === 'no_enrollment' ? 'No enrollment is pending' : 'The code is not valid');
    }
    await record(req, res, user, { eventType: 'mfa.enabled', outcome: 'success', mfaMethod: 'totp', details: { recovery_codes: codes.length } });
    res.set('Cache-Control', 'no-store').json({ recovery_codes: codes });
  };

  const disable: RequestHandler = async (req, res) => {
    const user = await currentUser(services, res);
    await requireCurrentCode(req, res, user, 'mfa.disable');
    await mfa.disable(user.id);
    await record(req, res, user, { eventType: 'mfa.disabled', outcome: 'success', mfaMethod: 'totp' });
    res.status(204).end();
  };

  const regenerateRecoveryCodes: RequestHandler = async (req, res) => {
    const user = await currentUser(services, res);
    await requireCurrentCode(req, res, user, 'mfa.recovery_codes');
    const codes = await mfa.regenerateRecoveryCodes(user.id);
    await record(req, res, user, { eventType: 'mfa.recovery_codes_regenerated', outcome: 'success', mfaMethod: 'totp', details: { recovery_codes: codes.length } });
    res.set('Cache-Control', 'no-store').json({ recovery_codes: codes });
  };

  const changePassword: RequestHandler = async (req, res) => {
    const user = await currentUser(services, res);
    const body = parseInput(passwordChangeBody, req.body, 'send current_password and new_password as strings');
    if (Buffer.byteLength(body.current_password) > PASSWORD_MAX_BYTES) throw invalidRequest('the current password is too long');
    const ok = await guarded(req, res, user, async () => (await services.passwords.verify(body.current_password, user.password_hash)).ok);
    if (!ok) {
      await record(req, res, user, { eventType: 'user.password_change_failed', outcome: 'failure', reason: 'wrong_password' });
      throw new HttpError(400, 'invalid_credentials', 'The current password is not right');
    }
    const problem = passwordPolicyProblem(body.new_password, user.username, services.config.passwords.minLength);
    if (problem) throw invalidRequest(`the new password is ${problem.replaceAll('_', ' ')} (at least ${services.config.passwords.minLength} characters, not the username)`);
    await services.users.updatePasswordHash(user.id, await services.passwords.hash(body.new_password));
    const revoked = await services.refreshTokens.revokeAllForUser(user.id, 'password_changed');
    await record(req, res, user, { eventType: 'user.password_changed', outcome: 'success', details: { revoked_sessions: revoked } });
    res.status(204).end();
  };

  const auth = requireAuth(services, ROLES, { adminRoute: false });
  const router = Router();
  router.post('/mfa/totp/enroll', auth, startEnrollment);
  router.post('/mfa/totp/confirm', auth, ...jsonBody(), confirmEnrollment);
  router.post('/mfa/totp/disable', auth, ...jsonBody(), disable);
  router.post('/mfa/recovery-codes', auth, ...jsonBody(), regenerateRecoveryCodes);
  router.post('/me/password', auth, ...jsonBody(), changePassword);
  return router;
}
