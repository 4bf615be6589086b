import type { ChainWriter } from '../audit/chain-writer.js';
import type { AuditEvent } from '../audit/record.js';
import { recordOrUndo } from '../audit/record-or-undo.js';
import { passwordPolicyProblem, type PasswordHasher } from './passwords.js';
import type { Role, UserQueries, UserRow } from './user-queries.js';
import { normalizeUsername, usernameProblem } from './usernames.js';

export type CreateUserResult =
  | { ok: true; user: UserRow }
  | { ok: false; problem: 'username_taken' | 'users_exist' | 'invalid_username' | 'weak_password'; detail: string };

export interface CreateUserDeps {
  users: UserQueries;
  passwords: PasswordHasher;
  writer: ChainWriter;
  minPasswordLength: number;
}

/**
 * Creates a user and records `user.created`; when the record cannot be written the user is
 * removed again and the error propagates (no unrecorded accounts). With `onlyFirst`, the user is
 * created only while there is no user at all (`users_exist` otherwise), atomically across processes.
 */
export async function createUser(
  deps: CreateUserDeps,
  input: { username: string; password: string; roles: readonly Role[] },
  audit: Omit<AuditEvent, 'eventType' | 'outcome' | 'username' | 'userId'>,
  options: { onlyFirst?: boolean } = {},
): Promise<CreateUserResult> {
  const usernameIssue = usernameProblem(input.username);
  if (usernameIssue) return { ok: false, problem: 'invalid_username', detail: `the username is ${usernameIssue.replace('_', ' ')}` };
  const passwordIssue = passwordPolicyProblem(input.password, input.username, deps.minPasswordLength);
  if (passwordIssue) {
    const detail = {
      too_short: `the password must be at least ${deps.minPasswordLength} characters`,
      too_long: 'the password is too long',
      same_as_username: 'the password must not be the username',
    }[passwordIssue];
    return { ok: false, problem: 'weak_password', detail };
  }
  const row = {
    username: input.username.trim(),
    normalized: normalizeUsername(input.username),
    passwordHash: await deps.passwords.hash(input.password),
    roles: [...new Set(input.roles)],
  };
  const user = options.onlyFirst ? await deps.users.insertFirst(row) : await deps.users.insert(row);
  if (!user && options.onlyFirst) return { ok: false, problem: 'users_exist', detail: 'a user already exists' };
  if (!user) return { ok: false, problem: 'username_taken', detail: 'the username is taken' };
  await recordOrUndo(
    () =>
      deps.writer.recordEvent({
        ...audit,
        eventType: 'user.created',
        outcome: 'success',
        username: user.username,
        userId: user.id,
        details: { ...audit.details, roles: user.roles },
      }),
    () => deps.users.deleteUnrecorded(user.id),
  );
  return { ok: true, user };
}
