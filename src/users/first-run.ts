import crypto from 'node:crypto';
import type { AuditEvent } from '../audit/record.js';
import type { Services } from '../services.js';
import { createUser, type CreateUserResult } from './create-user.js';

/** Roles of the first administrator, whether made by `POST /setup` or by BOOTSTRAP_ADMIN_*. */
export const FIRST_ADMIN_ROLES = ['admin', 'security'] as const;

/**
 * The one-time setup of a gateway that has no user yet (docs/api.md, `POST /setup`): a random
 * 32-byte token, held in this process only, valid until a first user exists or the process stops.
 */
export interface FirstRunSetup {
  /** For the setup link only (`/console/setup#<token>`): a fragment never reaches a request log. */
  readonly token: string;
  /** Whether the setup may still create the first user. */
  pending(): boolean;
  /** Whether `candidate` is the token, compared in constant time; false once the setup is done. */
  matches(candidate: string): boolean;
  /** A first user exists (made here or elsewhere): the token is never valid again. */
  finish(): void;
}

const digest = (text: string): Buffer => crypto.createHash('sha256').update(text, 'utf8').digest();

export function createFirstRunSetup(): FirstRunSetup {
  const token = crypto.randomBytes(32).toString('base64url');
  const expected = digest(token);
  let done = false;
  return {
    token,
    pending: () => !done,
    // Hashing first gives equal lengths, so the comparison takes the same time whatever was sent.
    matches: (candidate) => crypto.timingSafeEqual(digest(candidate), expected) && !done,
    finish: () => {
      done = true;
    },
  };
}

/** The link printed at start: `http://localhost:3000/console/setup#<token>`. */
export function setupLink(origin: string, setup: FirstRunSetup): string {
  return `${origin}/console/setup#${setup.token}`;
}

/** The origin a browser on this machine uses for a server listening on `host`:`port`. */
export function localOrigin(host: string, port: number): string {
  const loopbackOrAny = ['0.0.0.0', '::', '127.0.0.1', '::1', 'localhost'].includes(host);
  const name = loopbackOrAny ? 'localhost' : host.includes(':') ? `[${host}]` : host;
  return `http://${name}:${port}`;
}

/**
 * Creates the first administrator (roles admin and security), recorded as `user.created` with
 * reason `bootstrap`, only while no user exists: of parallel calls on any number of processes,
 * exactly one succeeds and the others get `users_exist`.
 */
export function createFirstAdmin(
  services: Pick<Services, 'users' | 'passwords' | 'writer' | 'config'>,
  input: { username: string; password: string },
  audit: Omit<AuditEvent, 'eventType' | 'outcome' | 'username' | 'userId' | 'reason'>,
): Promise<CreateUserResult> {
  return createUser(
    { users: services.users, passwords: services.passwords, writer: services.writer, minPasswordLength: services.config.passwords.minLength },
    { ...input, roles: FIRST_ADMIN_ROLES },
    { ...audit, reason: 'bootstrap' },
    { onlyFirst: true },
  );
}
