import type { KeyObject } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { ChainWriter } from './audit/chain-writer.js';
import type { WitnessPusher } from './audit/witness-push.js';
import type { Config } from './config.js';
import type { Database } from './db/database.js';
import type { LockoutService } from './lockout/lockout-service.js';
import type { MfaService } from './mfa/mfa-service.js';
import type { KeyStore } from './tokens/keys.js';
import type { RefreshTokenStore } from './tokens/refresh-tokens.js';
import type { FirstRunSetup } from './users/first-run.js';
import type { PasswordHasher } from './users/passwords.js';
import type { UserQueries } from './users/user-queries.js';

/** Everything routes work with; built once by runtime.ts (or a test) and passed to createApp. */
export interface Services {
  config: Config;
  logger: Logger;
  db: Database;
  writer: ChainWriter;
  /** Absent in embedded mode. */
  redis?: Redis | undefined;
  lockout: LockoutService;
  passwords: PasswordHasher;
  users: UserQueries;
  keys: KeyStore;
  refreshTokens: RefreshTokenStore;
  mfa: MfaService;
  /** Public keys trusted to have signed audit checkpoints, by key id. */
  trustedKeys: ReadonlyMap<string, KeyObject>;
  metrics: Registry;
  /** Pushes checkpoints to the configured witnesses and reports their cosignatures (absent: none configured). */
  witnesses?: WitnessPusher | undefined;
  /** Present while the gateway started with no user: the one-time setup of the first admin (`POST /setup`). */
  setup?: FirstRunSetup | undefined;
}
