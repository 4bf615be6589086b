import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { isValidKeyName } from './audit/note.js';

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
/** Empty counts as unset, so a variable copied blank from `.env.example` changes nothing. */
const optionalBool = z.preprocess((v) => (typeof v === 'string' && v.trim() === '' ? undefined : v), bool.optional());
const postgresUrl = optionalText.refine((v) => v === undefined || /^postgres(ql)?:\/\//.test(v), {
  message: 'must be a postgres:// or postgresql:// URL',
});
const redisUrl = optionalText.refine((v) => v === undefined || /^rediss?:\/\//.test(v), {
  message: 'must be a redis:// or rediss:// URL',
});

/** Where `npm run build` puts the console: dist/console of this package (config.ts is in src/ or dist/, one level down). */
const DEFAULT_CONSOLE_DIR = fileURLToPath(new URL('../dist/console/', import.meta.url));

/** Every variable the gateway reads, with its default; `.env.example` documents the same list. */
const envSchema = z.object({
  NODE_ENV: optionalText,
  AUTHTRAIL_EMBEDDED: optionalBool,
  PORT: int(0, 65535).default(3000),
  HOST: z.string().min(1).default('0.0.0.0'),
  CONSOLE_DIR: optionalText,
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DATA_DIR: z.string().min(1).default('./data'),
  DATABASE_URL: postgresUrl,
  DATABASE_POOL_MAX: int(1, 1000).default(10),
  DATABASE_STATEMENT_TIMEOUT_MS: int(100, 600_000).default(5000),
  DATABASE_CONNECT_TIMEOUT_MS: int(100, 600_000).default(3000),
  MIGRATE_ON_START: bool.default(true),
  REDIS_URL: redisUrl,
  REDIS_KEY_PREFIX: z.string().regex(/^[\w:.-]{1,64}$/, { message: 'must be 1 to 64 letters, digits, or _ : . -' }).default('authtrail'),
  AUDIT_BATCH_MAX: int(1, 10_000).default(256),
  AUDIT_WRITE_TIMEOUT_MS: int(100, 600_000).default(5000),
  AUDIT_CHECKPOINT_EVERY_RECORDS: int(1, 10_000_000).default(1000),
  AUDIT_CHECKPOINT_EVERY_SECONDS: int(1, 86_400).default(10),
  AUDIT_CHECKPOINT_FILE: optionalText,
  AUDIT_SIGNING_KEY_FILE: optionalText,
  AUDIT_TRUSTED_KEY_FILES: optionalText,
  AUDIT_LOG_ORIGIN: optionalText.refine((v) => v === undefined || (v.length <= 256 && isValidKeyName(v) && !/\p{Cc}/u.test(v)), {
    message: 'must be a name without spaces, + or control characters, at most 256 characters (e.g. auth.example.com/audit-log)',
  }),
  AUDIT_LOG_PUBLIC: bool.default(false),
  AUDIT_ARCHIVE_DIR: optionalText,
  AUDIT_HOT_DAYS: int(1, 36_500).default(90),
  AUDIT_RETENTION_DAYS: int(1, 36_500).default(400),
  AUDIT_WITNESSES: optionalText,
  AUDIT_WITNESS_QUORUM: z.preprocess((v) => (typeof v === 'string' && v.trim() === '' ? undefined : v), int(1, 100).optional()),
  AUDIT_WITNESS_TIMEOUT_MS: int(100, 600_000).default(5000),
  AUDIT_WITNESS_RETRIES: int(0, 10).default(2),
  AUDIT_ALERT_RULES_FILE: optionalText,
  AUDIT_ALERT_POLL_INTERVAL_MS: int(10, 60_000).default(250),
  AUDIT_ALERT_WEBHOOK_URL: optionalText.refine((v) => v === undefined || /^https?:\/\/[^\s]+$/.test(v), { message: 'must be an http:// or https:// URL' }),
  AUDIT_ALERT_WEBHOOK_SECRET_FILE: optionalText,
  AUDIT_ALERT_WEBHOOK_TIMEOUT_MS: int(100, 600_000).default(5000),
  AUDIT_ALERT_WEBHOOK_RETRIES: int(0, 20).default(5),
  SHUTDOWN_TIMEOUT_MS: int(100, 600_000).default(10_000),
  REQUEST_DEADLINE_MS: int(100, 600_000).default(5000),
  HTTP_HEADERS_TIMEOUT_MS: int(100, 600_000).default(10_000),
  HTTP_REQUEST_TIMEOUT_MS: int(100, 600_000).default(15_000),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: int(100, 600_000).default(5000),
  HTTP_MAX_CONNECTIONS: int(1, 1_000_000).default(10_000),
  HTTP_MAX_CONNECTIONS_PER_IP: int(1, 1_000_000).default(100),
  TRUST_PROXY: z
    .string()
    .default('false')
    .refine((v) => /^(true|false|\d{1,2}|[\w.:/,\s-]+)$/.test(v), { message: 'must be false, true, a hop count, or a comma-separated list of addresses, CIDR blocks or loopback/linklocal/uniquelocal' }),
  BCRYPT_COST: int(4, 15).default(12),
  PASSWORD_MIN_LENGTH: int(1, 128).default(12),
  LOCKOUT_MAX_FAILURES: int(1, 1000).default(5),
  LOCKOUT_WINDOW_SECONDS: int(1, 86_400 * 7).default(900),
  LOCKOUT_DURATION_SECONDS: int(1, 86_400 * 7).default(900),
  LOCKOUT_MAX_DURATION_SECONDS: int(1, 86_400 * 30).default(86_400),
  LOCKOUT_ESCALATION_WINDOW_SECONDS: int(1, 86_400 * 30).default(86_400),
  IP_MAX_FAILURES: int(1, 1_000_000).default(100),
  IP_WINDOW_SECONDS: int(1, 86_400 * 7).default(86_400),
  IP_BLOCK_SECONDS: int(1, 86_400 * 7).default(3600),
  JWT_ISSUER: z.string().min(1).default('authtrail'),
  JWT_AUDIENCE: z.string().min(1).default('authtrail-api'),
  JWT_ALGORITHM: z.enum(['ES256', 'RS256']).default('ES256'),
  JWT_KEY_FILES: optionalText,
  JWT_ACTIVE_KEY_FILE: optionalText,
  ACCESS_TOKEN_TTL_SECONDS: int(30, 86_400).default(600),
  REFRESH_TOKEN_IDLE_TTL_SECONDS: int(60, 86_400 * 365).default(86_400 * 7),
  REFRESH_TOKEN_ABSOLUTE_TTL_SECONDS: int(60, 86_400 * 365).default(86_400 * 30),
  REFRESH_REUSE_GRACE_SECONDS: int(0, 300).default(0),
  REFRESH_COOKIE_ORIGINS: optionalText,
  CORS_ORIGINS: optionalText,
  ADMIN_REQUIRE_MFA: bool.default(true),
  MFA_ENCRYPTION_KEY_FILE: optionalText,
  MFA_ISSUER: z.string().min(1).max(64).default('authtrail'),
  MFA_TOKEN_TTL_SECONDS: int(30, 1800).default(300),
  BOOTSTRAP_ADMIN_USERNAME: optionalText,
  BOOTSTRAP_ADMIN_PASSWORD: z.string().optional(),
});

/** Every environment variable the gateway reads. */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(envSchema.shape);

export type GatewayMode = 'embedded' | 'production';

/** The validated, frozen configuration every part of the gateway receives. */
export interface Config {
  readonly mode: GatewayMode;
  readonly port: number;
  readonly host: string;
  readonly logLevel: string;
  readonly dataDir: string;
  /** The built console served at /console (`npm run build` writes it to dist/console). */
  readonly consoleDir: string;
  readonly shutdownTimeoutMs: number;
  /** Every request is answered within this time: 503 when its work is not done (src/http/deadline.ts). */
  readonly requestDeadlineMs: number;
  /** Limits of the HTTP server against slow and numerous connections (src/http/server.ts). */
  readonly http: {
    /** Longest time from a request's first byte to the end of its headers. */
    readonly headersTimeoutMs: number;
    /** Longest time from a request's first byte to the end of its body. */
    readonly requestTimeoutMs: number;
    /** Longest idle time of a kept-alive connection between requests. */
    readonly keepAliveTimeoutMs: number;
    readonly maxConnections: number;
    /** Open connections per client address (IPv6 by /64), as the socket sees it. */
    readonly maxConnectionsPerIp: number;
  };
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
    /** Prefix of every key the gateway writes, so several deployments can share one Redis. */
    readonly keyPrefix: string;
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
    /** The log's name: first line of every checkpoint note and the name of its signature (C2SP tlog-checkpoint). */
    readonly logOrigin: string;
    /** Serve /audit-log/checkpoint, /key and /tile/* to anyone, unauthenticated (they hold hashes only). */
    readonly logPublic: boolean;
    /** `npm run audit:archive` (docs/archives.md): where segments go, the hot window and the retention period, in days. */
    readonly archive: { readonly dir: string; readonly hotDays: number; readonly retentionDays: number };
  };
  /** C2SP tlog-witnesses the gateway sends each new checkpoint to for cosigning (src/audit/witness-push.ts). */
  readonly witnesses: {
    readonly list: readonly WitnessEndpoint[];
    /** Cosignatures a checkpoint needs to count as witnessed (reported, never required for logins). */
    readonly quorum: number;
    /** Longest one add-checkpoint request may take. */
    readonly timeoutMs: number;
    /** Further attempts after a failed request (timeout, 5xx, network), with a growing pause. */
    readonly retries: number;
  };
  /** The alert engine (src/alerts/engine.ts, docs/alerts.md). */
  readonly alerts: {
    /** JSON rules file, validated at start-up; absent: the documented defaults. */
    readonly rulesFile: string | undefined;
    readonly pollIntervalMs: number;
    readonly webhookUrl: string | undefined;
    /** Secret for the webhook's HMAC-SHA256 signature header; absent: unsigned. */
    readonly webhookSecretFile: string | undefined;
    readonly webhookTimeoutMs: number;
    readonly webhookRetries: number;
  };
  /** Express `trust proxy`: which hops may set X-Forwarded-For. */
  readonly trustProxy: boolean | number | string;
  readonly passwords: {
    readonly bcryptCost: number;
    readonly minLength: number;
  };
  readonly lockout: {
    readonly maxFailures: number;
    readonly windowSeconds: number;
    readonly durationSeconds: number;
    readonly maxDurationSeconds: number;
    readonly escalationWindowSeconds: number;
    readonly ipMaxFailures: number;
    readonly ipWindowSeconds: number;
    readonly ipBlockSeconds: number;
  };
  readonly tokens: {
    readonly issuer: string;
    readonly audience: string;
    /** Algorithm of a key generated in embedded mode; loaded keys carry their own. */
    readonly algorithm: 'ES256' | 'RS256';
    readonly keyFiles: readonly string[];
    readonly activeKeyFile: string | undefined;
    /** Only in embedded mode may a signing key be generated under `dataDir/keys`. */
    readonly generateKey: boolean;
    readonly accessTtlSeconds: number;
    readonly refreshIdleTtlSeconds: number;
    readonly refreshAbsoluteTtlSeconds: number;
    readonly refreshReuseGraceSeconds: number;
    /** Origins allowed to receive and send the refresh token as a `__Host-` cookie. */
    readonly refreshCookieOrigins: readonly string[];
  };
  readonly adminRequireMfa: boolean;
  /** Browser origins allowed to call the API (CORS); none by default. */
  readonly corsOrigins: readonly string[];
  readonly mfa: {
    /** 32-byte AES-256-GCM key (base64 in the file) sealing TOTP secrets at rest. */
    readonly encryptionKeyFile: string;
    /** Only in embedded mode may the key be generated under `dataDir/keys`. */
    readonly generateKey: boolean;
    /** Issuer shown by authenticator apps. */
    readonly issuer: string;
    /** Lifetime of the `mfa_token` of a two-step login. */
    readonly tokenTtlSeconds: number;
  };
  readonly bootstrapAdmin: { readonly username: string; readonly password: string } | undefined;
}

/** One entry of AUDIT_WITNESSES: where the witness listens and its note verifier key. */
export interface WitnessEndpoint {
  /** Submission prefix: `add-checkpoint` is POSTed to `<url>/add-checkpoint`. */
  readonly url: string;
  /** `<name>+<hex key id>+<base64 type ‖ key>` (C2SP signed-note), type 0x04 for Ed25519 cosignatures. */
  readonly verifierKey: string;
  /** The key name, which names the witness in storage, logs and metrics. */
  readonly name: string;
}

const VERIFIER_KEY = /^([^+\s]+)\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$/;

/** `<url>|<vkey>` entries, comma-separated; problems name the entry's position, never its text. */
function parseWitnesses(value: string | undefined, problems: string[]): WitnessEndpoint[] {
  const endpoints: WitnessEndpoint[] = [];
  list(value).forEach((entry, i) => {
    const [url, verifierKey, ...rest] = entry.split('|').map((p) => p.trim());
    const name = VERIFIER_KEY.exec(verifierKey ?? '')?.[1];
    if (rest.length > 0 || !url || !/^https?:\/\/[^\s]+$/.test(url) || !verifierKey || !name) {
      problems.push(`AUDIT_WITNESSES: entry ${i + 1} must be <http(s) URL>|<note verifier key name+hex+base64>`);
      return;
    }
    if (endpoints.some((w) => w.name === name)) problems.push(`AUDIT_WITNESSES: entry ${i + 1} repeats the witness name ${JSON.stringify(name)}`);
    endpoints.push({ url: url.replace(/\/+$/, ''), verifierKey, name });
  });
  return endpoints;
}

function parseTrustProxy(value: string): boolean | number | string {
  if (value === 'true') return true;
  if (value === 'false') return false;
  if (/^\d+$/.test(value)) return Number(value);
  return value;
}

const list = (value: string | undefined): string[] =>
  (value ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);

/** Edits (insert, delete, replace) between two short names, to spot a misspelled variable. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * Embedded mode generates its own keys and serves one instance, so it runs only when nothing says
 * production: NODE_ENV=production, REDIS_URL (no reason to share counters with a single instance;
 * most likely DATABASE_URL is missing by mistake) or AUTHTRAIL_EMBEDDED=false. AUTHTRAIL_EMBEDDED=true
 * overrides the first two. Names only, never values: these may hold passwords.
 */
function missingDatabaseProblem(env: NodeJS.ProcessEnv, e: { NODE_ENV?: string; REDIS_URL?: string; AUTHTRAIL_EMBEDDED?: boolean }): string | undefined {
  if (e.AUTHTRAIL_EMBEDDED === true) return undefined;
  const reasons: string[] = [];
  if (e.AUTHTRAIL_EMBEDDED === false) reasons.push('AUTHTRAIL_EMBEDDED=false');
  if (e.NODE_ENV === 'production') reasons.push('NODE_ENV=production');
  if (e.REDIS_URL) reasons.push('REDIS_URL is set');
  if (reasons.length === 0) return undefined;
  const nearMisses = Object.keys(env).filter((name) => name !== 'DATABASE_URL' && env[name] && editDistance(name.toUpperCase(), 'DATABASE_URL') <= 2);
  const hint = nearMisses.length > 0 ? ` (${nearMisses.join(', ')} ${nearMisses.length === 1 ? 'is' : 'are'} set: misspelled?)` : '';
  const optIn = e.AUTHTRAIL_EMBEDDED === false ? '' : '; set AUTHTRAIL_EMBEDDED=true to run the embedded mode (generated keys, one instance) on purpose';
  return `DATABASE_URL: required when ${reasons.join(' and ')}${hint}${optIn}`;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * Reads and validates the environment once; throws {@link ConfigError} naming each bad variable.
 * Without DATABASE_URL the gateway runs embedded, unless something says production (see
 * {@link missingDatabaseProblem}): then it refuses to start rather than generate its own keys.
 * Tools that sign nothing (`migrate`, `audit:verify`) pass `requireSigningKeys: false`.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, options: { requireSigningKeys?: boolean } = {}): Config {
  const requireSigningKeys = options.requireSigningKeys ?? true;
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(problems);
  }
  const e = parsed.data;
  const mode: GatewayMode = e.DATABASE_URL ? 'production' : 'embedded';
  const dataDir = path.resolve(e.DATA_DIR);

  const problems: string[] = [];
  const missingDatabase = e.DATABASE_URL ? undefined : missingDatabaseProblem(env, e);
  if (missingDatabase) problems.push(missingDatabase);
  if (e.DATABASE_URL && e.AUTHTRAIL_EMBEDDED === true) {
    problems.push('AUTHTRAIL_EMBEDDED: true contradicts DATABASE_URL (the embedded mode uses its own database); unset one of them');
  }
  if (mode === 'production' && requireSigningKeys && !e.AUDIT_SIGNING_KEY_FILE) {
    problems.push('AUDIT_SIGNING_KEY_FILE: required when DATABASE_URL is set (no generated secrets outside embedded mode)');
  }
  if (mode === 'production' && requireSigningKeys && !e.JWT_KEY_FILES) {
    problems.push('JWT_KEY_FILES: required when DATABASE_URL is set (no generated secrets outside embedded mode)');
  }
  if (mode === 'production' && requireSigningKeys && !e.MFA_ENCRYPTION_KEY_FILE) {
    problems.push('MFA_ENCRYPTION_KEY_FILE: required when DATABASE_URL is set (no generated secrets outside embedded mode)');
  }
  if (e.JWT_ACTIVE_KEY_FILE && !list(e.JWT_KEY_FILES).includes(e.JWT_ACTIVE_KEY_FILE)) {
    problems.push('JWT_ACTIVE_KEY_FILE: must be one of the files in JWT_KEY_FILES');
  }
  if (e.REFRESH_TOKEN_IDLE_TTL_SECONDS > e.REFRESH_TOKEN_ABSOLUTE_TTL_SECONDS) {
    problems.push('REFRESH_TOKEN_IDLE_TTL_SECONDS: must not exceed REFRESH_TOKEN_ABSOLUTE_TTL_SECONDS');
  }
  if (e.HTTP_HEADERS_TIMEOUT_MS > e.HTTP_REQUEST_TIMEOUT_MS) {
    problems.push('HTTP_HEADERS_TIMEOUT_MS: must not exceed HTTP_REQUEST_TIMEOUT_MS');
  }
  if (e.LOCKOUT_DURATION_SECONDS > e.LOCKOUT_MAX_DURATION_SECONDS) {
    problems.push('LOCKOUT_DURATION_SECONDS: must not exceed LOCKOUT_MAX_DURATION_SECONDS');
  }
  if (Boolean(e.BOOTSTRAP_ADMIN_USERNAME) !== Boolean(e.BOOTSTRAP_ADMIN_PASSWORD)) {
    problems.push('BOOTSTRAP_ADMIN_PASSWORD: BOOTSTRAP_ADMIN_USERNAME and BOOTSTRAP_ADMIN_PASSWORD go together');
  }
  for (const name of ['REFRESH_COOKIE_ORIGINS', 'CORS_ORIGINS'] as const) {
    for (const origin of list(e[name])) {
      if (!/^https?:\/\/[^/\s]+$/.test(origin)) problems.push(`${name}: ${JSON.stringify(origin)} is not an origin like https://app.example.com`);
    }
  }
  if (e.AUDIT_RETENTION_DAYS < e.AUDIT_HOT_DAYS) problems.push('AUDIT_RETENTION_DAYS: must not be less than AUDIT_HOT_DAYS');
  const witnesses = parseWitnesses(e.AUDIT_WITNESSES, problems);
  if (e.AUDIT_WITNESS_QUORUM !== undefined && e.AUDIT_WITNESS_QUORUM > Math.max(1, witnesses.length)) {
    problems.push('AUDIT_WITNESS_QUORUM: must not exceed the number of AUDIT_WITNESSES');
  }
  if (e.AUDIT_ALERT_WEBHOOK_SECRET_FILE && !e.AUDIT_ALERT_WEBHOOK_URL) {
    problems.push('AUDIT_ALERT_WEBHOOK_SECRET_FILE: set only together with AUDIT_ALERT_WEBHOOK_URL');
  }
  if (problems.length > 0) throw new ConfigError(problems);

  return deepFreeze({
    mode,
    port: e.PORT,
    host: e.HOST,
    logLevel: e.LOG_LEVEL,
    dataDir,
    consoleDir: e.CONSOLE_DIR === undefined ? DEFAULT_CONSOLE_DIR : path.resolve(e.CONSOLE_DIR),
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    requestDeadlineMs: e.REQUEST_DEADLINE_MS,
    http: {
      headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT_MS,
      keepAliveTimeoutMs: e.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      maxConnections: e.HTTP_MAX_CONNECTIONS,
      maxConnectionsPerIp: e.HTTP_MAX_CONNECTIONS_PER_IP,
    },
    database: {
      url: e.DATABASE_URL,
      poolMax: e.DATABASE_POOL_MAX,
      statementTimeoutMs: e.DATABASE_STATEMENT_TIMEOUT_MS,
      connectTimeoutMs: e.DATABASE_CONNECT_TIMEOUT_MS,
      migrateOnStart: e.MIGRATE_ON_START,
    },
    redis: { url: e.REDIS_URL, keyPrefix: e.REDIS_KEY_PREFIX },
    audit: {
      batchMax: e.AUDIT_BATCH_MAX,
      writeTimeoutMs: e.AUDIT_WRITE_TIMEOUT_MS,
      checkpointEveryRecords: e.AUDIT_CHECKPOINT_EVERY_RECORDS,
      checkpointEverySeconds: e.AUDIT_CHECKPOINT_EVERY_SECONDS,
      checkpointFile: path.resolve(e.AUDIT_CHECKPOINT_FILE ?? path.join(dataDir, 'audit-checkpoints.jsonl')),
      signingKeyFile: path.resolve(e.AUDIT_SIGNING_KEY_FILE ?? path.join(dataDir, 'keys', 'audit-ed25519.pem')),
      generateSigningKey: mode === 'embedded' && !e.AUDIT_SIGNING_KEY_FILE,
      trustedKeyFiles: list(e.AUDIT_TRUSTED_KEY_FILES).map((p) => path.resolve(p)),
      logOrigin: e.AUDIT_LOG_ORIGIN ?? 'authtrail.local/audit-log',
      logPublic: e.AUDIT_LOG_PUBLIC,
      archive: {
        dir: path.resolve(e.AUDIT_ARCHIVE_DIR ?? path.join(dataDir, 'archive')),
        hotDays: e.AUDIT_HOT_DAYS,
        retentionDays: e.AUDIT_RETENTION_DAYS,
      },
    },
    witnesses: {
      list: witnesses,
      quorum: e.AUDIT_WITNESS_QUORUM ?? Math.max(1, witnesses.length),
      timeoutMs: e.AUDIT_WITNESS_TIMEOUT_MS,
      retries: e.AUDIT_WITNESS_RETRIES,
    },
    alerts: {
      rulesFile: e.AUDIT_ALERT_RULES_FILE === undefined ? undefined : path.resolve(e.AUDIT_ALERT_RULES_FILE),
      pollIntervalMs: e.AUDIT_ALERT_POLL_INTERVAL_MS,
      webhookUrl: e.AUDIT_ALERT_WEBHOOK_URL,
      webhookSecretFile: e.AUDIT_ALERT_WEBHOOK_SECRET_FILE === undefined ? undefined : path.resolve(e.AUDIT_ALERT_WEBHOOK_SECRET_FILE),
      webhookTimeoutMs: e.AUDIT_ALERT_WEBHOOK_TIMEOUT_MS,
      webhookRetries: e.AUDIT_ALERT_WEBHOOK_RETRIES,
    },
    trustProxy: parseTrustProxy(e.TRUST_PROXY.trim()),
    passwords: { bcryptCost: e.BCRYPT_COST, minLength: e.PASSWORD_MIN_LENGTH },
    lockout: {
      maxFailures: e.LOCKOUT_MAX_FAILURES,
      windowSeconds: e.LOCKOUT_WINDOW_SECONDS,
      durationSeconds: e.LOCKOUT_DURATION_SECONDS,
      maxDurationSeconds: e.LOCKOUT_MAX_DURATION_SECONDS,
      escalationWindowSeconds: e.LOCKOUT_ESCALATION_WINDOW_SECONDS,
      ipMaxFailures: e.IP_MAX_FAILURES,
      ipWindowSeconds: e.IP_WINDOW_SECONDS,
      ipBlockSeconds: e.IP_BLOCK_SECONDS,
    },
    tokens: {
      issuer: e.JWT_ISSUER,
      audience: e.JWT_AUDIENCE,
      algorithm: e.JWT_ALGORITHM,
      keyFiles: list(e.JWT_KEY_FILES).map((p) => path.resolve(p)),
      activeKeyFile: e.JWT_ACTIVE_KEY_FILE ? path.resolve(e.JWT_ACTIVE_KEY_FILE) : undefined,
      generateKey: mode === 'embedded' && !e.JWT_KEY_FILES,
      accessTtlSeconds: e.ACCESS_TOKEN_TTL_SECONDS,
      refreshIdleTtlSeconds: e.REFRESH_TOKEN_IDLE_TTL_SECONDS,
      refreshAbsoluteTtlSeconds: e.REFRESH_TOKEN_ABSOLUTE_TTL_SECONDS,
      refreshReuseGraceSeconds: e.REFRESH_REUSE_GRACE_SECONDS,
      refreshCookieOrigins: list(e.REFRESH_COOKIE_ORIGINS),
    },
    adminRequireMfa: e.ADMIN_REQUIRE_MFA,
    corsOrigins: list(e.CORS_ORIGINS),
    mfa: {
      encryptionKeyFile: path.resolve(e.MFA_ENCRYPTION_KEY_FILE ?? path.join(dataDir, 'keys', 'mfa-encryption.key')),
      generateKey: mode === 'embedded' && !e.MFA_ENCRYPTION_KEY_FILE,
      issuer: e.MFA_ISSUER,
      tokenTtlSeconds: e.MFA_TOKEN_TTL_SECONDS,
    },
    bootstrapAdmin:
      e.BOOTSTRAP_ADMIN_USERNAME && e.BOOTSTRAP_ADMIN_PASSWORD
        ? { username: e.BOOTSTRAP_ADMIN_USERNAME, password: e.BOOTSTRAP_ADMIN_PASSWORD }
        : undefined,
  });
}
