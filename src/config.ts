import path from 'node:path';
import { z } from 'zod';

/** Thrown when the environment does not describe a runnable gateway; the message names every bad variable. */
export class ConfigError extends Error {
  readonly code = 'ERR_CONFIG_INVALID';
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const bool = z
  .enum(['true', 'false', '1', '0'], { message: 'must be true or false' })
  .transform((v) => v === 'true' || v === '1');
const optionalText = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));
const postgresUrl = optionalText.refine((v) => v === undefined || /^postgres(ql)?:\/\//.test(v), {
  message: 'must be a postgres:// or postgresql:// URL',
});
const redisUrl = optionalText.refine((v) => v === undefined || /^rediss?:\/\//.test(v), {
  message: 'must be a redis:// or rediss:// URL',
});

/** Every variable the gateway reads, with its default; `.env.example` documents the same list. */
const envSchema = z.object({
  PORT: int(0, 65535).default(3000),
  HOST: z.string().min(1).default('0.0.0.0'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DATA_DIR: z.string().min(1).default('./data'),
  DATABASE_URL: postgresUrl,
  DATABASE_POOL_MAX: int(1, 1000).default(10),
  DATABASE_STATEMENT_TIMEOUT_MS: int(100, 600_000).default(5000),
  DATABASE_CONNECT_TIMEOUT_MS: int(100, 600_000).default(3000),
  MIGRATE_ON_START: bool.default(true),
  REDIS_URL: redisUrl,
  AUDIT_BATCH_MAX: int(1, 10_000).default(256),
  AUDIT_WRITE_TIMEOUT_MS: int(100, 600_000).default(5000),
  AUDIT_CHECKPOINT_EVERY_RECORDS: int(1, 10_000_000).default(1000),
  AUDIT_CHECKPOINT_EVERY_SECONDS: int(1, 86_400).default(10),
  AUDIT_CHECKPOINT_FILE: optionalText,
  AUDIT_SIGNING_KEY_FILE: optionalText,
  AUDIT_TRUSTED_KEY_FILES: optionalText,
  SHUTDOWN_TIMEOUT_MS: int(100, 600_000).default(10_000),
});

export type GatewayMode = 'embedded' | 'production';

/** The validated, frozen configuration every part of the gateway receives. */
export interface Config {
  readonly mode: GatewayMode;
  readonly port: number;
  readonly host: string;
  readonly logLevel: string;
  readonly dataDir: string;
  readonly shutdownTimeoutMs: number;
  readonly database: {
    /** Absent in embedded mode: PGlite under `dataDir`. */
    readonly url: string | undefined;
    readonly poolMax: number;
    readonly statementTimeoutMs: number;
    readonly connectTimeoutMs: number;
    readonly migrateOnStart: boolean;
  };
  readonly redis: {
    /** Absent: the in-process lockout store. */
    readonly url: string | undefined;
  };
  readonly audit: {
    readonly batchMax: number;
    readonly writeTimeoutMs: number;
    readonly checkpointEveryRecords: number;
    readonly checkpointEverySeconds: number;
    readonly checkpointFile: string;
    readonly signingKeyFile: string;
    /** Only in embedded mode may the signing key be generated on first start. */
    readonly generateSigningKey: boolean;
    readonly trustedKeyFiles: readonly string[];
  };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Reads and validates the environment once; throws {@link ConfigError} naming each bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(problems);
  }
  const e = parsed.data;
  const mode: GatewayMode = e.DATABASE_URL ? 'production' : 'embedded';
  const dataDir = path.resolve(e.DATA_DIR);

  const problems: string[] = [];
  if (mode === 'production' && !e.AUDIT_SIGNING_KEY_FILE) {
    problems.push('AUDIT_SIGNING_KEY_FILE: required when DATABASE_URL is set (no generated secrets outside embedded mode)');
  }
  if (problems.length > 0) throw new ConfigError(problems);

  return deepFreeze({
    mode,
    port: e.PORT,
    host: e.HOST,
    logLevel: e.LOG_LEVEL,
    dataDir,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    database: {
      url: e.DATABASE_URL,
      poolMax: e.DATABASE_POOL_MAX,
      statementTimeoutMs: e.DATABASE_STATEMENT_TIMEOUT_MS,
      connectTimeoutMs: e.DATABASE_CONNECT_TIMEOUT_MS,
      migrateOnStart: e.MIGRATE_ON_START,
    },
    redis: { url: e.REDIS_URL },
    audit: {
      batchMax: e.AUDIT_BATCH_MAX,
      writeTimeoutMs: e.AUDIT_WRITE_TIMEOUT_MS,
      checkpointEveryRecords: e.AUDIT_CHECKPOINT_EVERY_RECORDS,
      checkpointEverySeconds: e.AUDIT_CHECKPOINT_EVERY_SECONDS,
      checkpointFile: path.resolve(e.AUDIT_CHECKPOINT_FILE ?? path.join(dataDir, 'audit-checkpoints.jsonl')),
      signingKeyFile: path.resolve(e.AUDIT_SIGNING_KEY_FILE ?? path.join(dataDir, 'keys', 'audit-ed25519.pem')),
      generateSigningKey: mode === 'embedded' && !e.AUDIT_SIGNING_KEY_FILE,
      trustedKeyFiles: (e.AUDIT_TRUSTED_KEY_FILES ?? '')
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean)
        .map((p) => path.resolve(p)),
    },
  });
}
