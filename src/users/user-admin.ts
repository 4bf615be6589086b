import type { AuditEvent } from '../audit/record.js';
import type { Services } from '../services.js';
import { createUser, type CreateUserResult } from './create-user.js';
import { passwordPolicyProblem } from './passwords.js';
import type { Role, UserRow } from './user-queries.js';

/** Who acts and from where: merged into every record (HTTP: the admin's token and request; CLI: no actor, `details.via`). */
export type ActorContext = Pick<AuditEvent, 'actorId' | 'ip' | 'userAgent' | 'deviceId' | 'requestId'> & { via?: 'cli' };

export type AdminResult<T> = { ok: true; value: T } | { ok: false; problem: 'not_found' | 'invalid'; detail: string };

const notFound = { ok: false, problem: 'not_found', detail: 'no such user' } as const;

/**
 * User management shared by the admin API and `npm run user`. Each action changes the user,
 * then records one audit event with the actor. Disabling a user, changing their roles, setting
 * their password or resetting their MFA revokes every session of that user: access tokens are
 * checked against live sessions, so they stop working at once too.
 */
export function createUserAdmin(services: Services) {
  const { users, writer, refreshTokens } = services;

  const record = (actor: ActorContext, user: UserRow, event: Pick<AuditEvent, 'eventType'> & Partial<AuditEvent>) =>
    writer.recordEvent({
      outcome: 'success',
      ...event,
      username: user.username,
      userId: user.id,
      actorId: actor.actorId ?? null,
      ip: actor.ip ?? null,
      userAgent: actor.userAgent ?? null,
      deviceId: actor.deviceId ?? null,
      requestId: actor.requestId ?? null,
      details: { ...(actor.via ? { via: actor.via } : {}), ...event.details },
    });

  return {
    create(input: { username: string; password: string; roles: readonly Role[] }, actor: ActorContext): Promise<CreateUserResult> {
      return createUser(
        { users, passwords: services.passwords, writer, minPasswordLength: services.config.passwords.minLength },
        input,
        { ...actor, details: actor.via ? { via: actor.via } : null },
      );
    },

    async setStatus(id: string, status: 'active' | 'disabled', actor: ActorContext): Promise<AdminResult<UserRow>> {
      const user = await users.setStatus(id, status);
      if (!user) return notFound;
      const revoked = status === 'disabled' ? await refreshTokens.revokeAllForUser(id, 'user_disabled') : 0;
      await record(actor, user, { eventType: status === 'disabled' ? 'user.disabled' : 'user.enabled', details: status === 'disabled' ? { revoked_sessions: revoked } : null });
      return { ok: true, value: user };
    },

    async setRoles(id: string, roles: readonly Role[], actor: ActorContext): Promise<AdminResult<UserRow>> {
      const before = await users.findById(id);
      if (!before) return notFound;
      const user = (await users.setRoles(id, [...new Set(roles)]))!;
      const revoked = await refreshTokens.revokeAllForUser(id, 'roles_changed');
      await record(actor, user, { eventType: 'user.roles_changed', details: { from: before.roles, to: user.roles, revoked_sessions: revoked } });
      return { ok: true, value: user };
    },

    async resetPassword(id: string, password: string, actor: ActorContext): Promise<AdminResult<UserRow>> {
      const user = await users.findById(id);
      if (!user) return notFound;
      const problem = passwordPolicyProblem(password, user.username, services.config.passwords.minLength);
      if (problem) return { ok: false, problem: 'invalid', detail: `the password is ${problem.replaceAll('_', ' ')} (at least ${services.config.passwords.minLength} characters, not the username)` };
      await users.updatePasswordHash(id, await services.passwords.hash(password));
      const revoked = await refreshTokens.revokeAllForUser(id, 'password_reset');
      await record(actor, user, { eventType: 'user.password_reset', details: { revoked_sessions: revoked } });
      return { ok: true, value: user };
    },

    async resetMfa(id: string, actor: ActorContext): Promise<AdminResult<UserRow>> {
      const user = await users.findById(id);
      if (!user) return notFound;
      const wasEnabled = await services.mfa.disable(id);
      const revoked = await refreshTokens.revokeAllForUser(id, 'mfa_reset');
      await record(actor, user, { eventType: 'user.mfa_reset', mfaMethod: 'totp', details: { was_enabled: wasEnabled, revoked_sessions: revoked } });
      return { ok: true, value: { ...user, mfa_enabled: false } };
    },

    async revokeSessions(id: string, actor: ActorContext): Promise<AdminResult<number>> {
      const user = await users.findById(id);
      if (!user) return notFound;
      const revoked = await refreshTokens.revokeAllForUser(id, 'revoked_by_admin');
      await record(actor, user, { eventType: 'user.sessions_revoked', details: { revoked_sessions: revoked } });
      return { ok: true, value: revoked };
    },
  };
}

export type UserAdmin = ReturnType<typeof createUserAdmin>;
