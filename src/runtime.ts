import path from 'node:path';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { startAlertEngine } from './alerts/engine.js';
import { loadAlertRules } from './alerts/rules.js';
import { createWebhookDelivery, loadWebhookSecret } from './alerts/webhook.js';
import { AUDIT_SESSION, createChainWriter } from './audit/chain-writer.js';
import fs from 'node:fs';
import { createCheckpointer, loadSigningKey, loadTrustedKeys, type Checkpointer, type SigningKey } from './audit/checkpoints.js';
import { backfillTree } from './audit/tree.js';
import { startPartitionMaintenance, type PartitionMonitor } from './audit/partitions.js';
import { createWitnessPusher } from './audit/witness-push.js';
import type { Config } from './config.js';
import { createEmbeddedDatabase, createPostgresDatabase, type Database, type PostgresOptions } from './db/database.js';
import { migrate } from './db/migrate.js';
import { createLockHistory } from './lockout/lock-history.js';
import { createLockoutService } from './lockout/lockout-service.js';
import { createMfaService } from './mfa/mfa-service.js';
import { createSecretBox, loadSecretBoxKey } from './mfa/secret-box.js';
import { startMaintenance } from './maintenance.js';
import { alertMetrics, createMetrics } from './metrics.js';
import type { Services } from './services.js';
import { loadKeyStore } from './tokens/keys.js';
import { createRefreshTokenStore } from './tokens/refresh-tokens.js';
import { createFirstAdmin, createFirstRunSetup } from './users/first-run.js';
import { createPasswordHasher } from './users/passwords.js';
import { createUserQueries } from './users/user-queries.js';

/** Everything a running gateway holds open, and how to close it in order. */
export interface Runtime extends Services {
  checkpointer: Checkpointer;
  signingKey: SigningKey;
  /** Flushes the audit writer, writes a last checkpoint, closes Redis and the database. */
  close(): Promise<void>;
}

/** Session settings of a pool beyond the configured timeouts (the audit writer's: {@link AUDIT_SESSION}). */
type SessionOptions = Pick<PostgresOptions, 'lockTimeoutMs' | 'idleInTransactionTimeoutMs' | 'requestDeadlines'>;

/** Opens PostgreSQL from `DATABASE_URL`, or embedded PGlite under `DATA_DIR/pgdata`. */
export function openDatabase(
  config: Config,
  applicationName = 'authtrail',
  poolMax = config.database.poolMax,
  session: SessionOptions = {},
): Promise<Database> {
  const { database } = config;
  if (database.url) {
    return Promise.resolve(
      createPostgresDatabase({
        url: database.url,
        poolMax,
        statementTimeoutMs: database.statementTimeoutMs,
        connectTimeoutMs: database.connectTimeoutMs,
        applicationName,
        ...session,
      }),
    );
  }
  return createEmbeddedDatabase(path.join(config.dataDir, 'pgdata'));
}

/** Redis for the lockout counters: commands fail at once while disconnected, so the in-process limiter takes over without waiting. */
async function openRedis(url: string, logger: Logger): Promise<Redis> {
  const redis = new Redis(url, {
    connectTimeout: 2000,
    commandTimeout: 1000,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
  });
  let up = false;
  redis.on('ready', () => {
    up = true;
    logger.info('redis connected');
  });
  redis.on('error', (err) => {
    if (!up) return;
    up = false;
    logger.warn({ err: { message: err.message } }, 'redis unreachable: lockout counters fall back to this instance');
  });
  // Start even when Redis is down (degraded, per instance), but give it a moment to connect.
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 3000);
    redis.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return redis;
}

/** The checkpoint key's public half (when the file is there) and every retired or external key configured. */
export function trustedKeyFiles(config: Config): string[] {
  return [...(fs.existsSync(config.audit.signingKeyFile) ? [config.audit.signingKeyFile] : []), ...config.audit.trustedKeyFiles];
}

/** Builds the services routes use, from open connections. */
export function createServices(
  config: Config,
  logger: Logger,
  parts: { db: Database; writer: Services['writer']; redis: Redis | undefined; witnesses?: Services['witnesses']; partitions?: PartitionMonitor },
): Services {
  const { db, writer, redis, witnesses } = parts;
  const lockout = createLockoutService({
    config: config.lockout,
    keyPrefix: config.redis.keyPrefix,
    redis,
    lockHistory: createLockHistory(db),
    onDegraded: (err) => logger.warn({ err: { message: err.message } }, 'lockout store degraded: using this instance\'s counters'),
  });
  return {
    config,
    logger,
    db,
    writer,
    redis,
    lockout,
    metrics: createMetrics({ writer, lockout, witnesses, db, partitions: parts.partitions }),
    witnesses,
    passwords: createPasswordHasher(config.passwords.bcryptCost),
    users: createUserQueries(db),
    keys: loadKeyStore(config),
    refreshTokens: createRefreshTokenStore(db, {
      idleTtlSeconds: config.tokens.refreshIdleTtlSeconds,
      absoluteTtlSeconds: config.tokens.refreshAbsoluteTtlSeconds,
      reuseGraceSeconds: config.tokens.refreshReuseGraceSeconds,
    }),
    trustedKeys: loadTrustedKeys(trustedKeyFiles(config)),
    mfa: createMfaService(db, createSecretBox(loadSecretBoxKey(config.mfa.encryptionKeyFile, { generate: config.mfa.generateKey })), {
      issuer: config.mfa.issuer,
      tokenTtlSeconds: config.mfa.tokenTtlSeconds,
    }),
  };
}

/** Creates the bootstrap admin (README, "Tokens", the bootstrap bullet) when the users table is empty. */
export async function bootstrapAdmin(services: Services): Promise<void> {
  const admin = services.config.bootstrapAdmin;
  if (!admin || (await services.users.count()) > 0) return;
  const result = await createFirstAdmin(services, admin, { details: { bootstrap: true } });
  if (result.ok) services.logger.info({ username: result.user.username }, 'bootstrap admin created');
  else if (result.problem !== 'users_exist') throw new Error(`BOOTSTRAP_ADMIN_PASSWORD / _USERNAME: ${result.detail}`);
}

/** Opens the database (migrating it when configured), Redis, the audit writer, the checkpointer and the services. */
export async function openRuntime(config: Config, logger: Logger): Promise<Runtime> {
  // A bad alert rules file or webhook secret refuses start-up before anything is opened.
  const alertRules = loadAlertRules(config.alerts.rulesFile);
  const webhookSecret = config.alerts.webhookSecretFile === undefined ? undefined : loadWebhookSecret(config.alerts.webhookSecretFile);
  const db = await openDatabase(config);
  // The audit writer gets its own two connections, so requests holding the pool never starve it;
  // their sessions never let a stopped process hold the chain's lock (AUDIT_SESSION), and its
  // transactions serve many requests, so no one request's deadline bounds them.
  const auditDb = config.database.url
    ? await openDatabase(config, 'authtrail-audit', 2, { ...AUDIT_SESSION, requestDeadlines: false })
    : db;
  const closers: Array<() => Promise<unknown>> = [() => db.close()];
  if (auditDb !== db) closers.unshift(() => auditDb.close());
  try {
    if (config.database.migrateOnStart || config.mode === 'embedded') {
      const applied = await migrate(db);
      if (applied.length > 0) logger.info({ applied }, 'migrations applied');
    }
    const signingKey = loadSigningKey(config.audit.signingKeyFile, { generate: config.audit.generateSigningKey });
    // Records written before migration 008 (or by an older gateway) get their Merkle leaves now, in chunks.
    const backfilled = await backfillTree(auditDb, { onProgress: (size, head) => logger.info({ size, head }, 'building the audit Merkle tree') });
    if (backfilled > 0) logger.info({ records: backfilled }, 'audit Merkle tree built for existing records');
    // The audit log's monthly partitions, made months ahead now and every hour (docs/archives.md).
    const partitions = startPartitionMaintenance(db, logger);
    closers.unshift(() => Promise.resolve(partitions.stop()));
    await partitions.check();
    const writer = createChainWriter(auditDb, { batchMax: config.audit.batchMax, writeTimeoutMs: config.audit.writeTimeoutMs });
    // Each checkpoint this process signs goes to the witnesses in the background (never awaited by a login).
    const witnesses = createWitnessPusher({ db, writer, witnesses: config.witnesses, logger });
    const checkpointer = createCheckpointer({
      db: auditDb,
      writer,
      key: signingKey,
      file: config.audit.checkpointFile,
      everyRecords: config.audit.checkpointEveryRecords,
      everySeconds: config.audit.checkpointEverySeconds,
      logger,
      origin: config.audit.logOrigin,
      onCheckpoint: (cp) => witnesses.push(cp),
    });
    const redis = config.redis.url ? await openRedis(config.redis.url, logger) : undefined;
    if (redis) closers.unshift(() => redis.quit().catch(() => redis.disconnect()));

    const services = createServices(config, logger, { db, writer, redis, witnesses, partitions });
    await bootstrapAdmin(services);
    // No user yet: the first admin is made through the setup link main.ts prints (POST /setup).
    if ((await services.users.count()) === 0) services.setup = createFirstRunSetup();
    const stopMaintenance = startMaintenance(db, logger);
    // One alert engine per cluster (a lease); this instance may stand by. Never awaited by a request.
    const webhook = config.alerts.webhookUrl
      ? createWebhookDelivery({ url: config.alerts.webhookUrl, secret: webhookSecret, timeoutMs: config.alerts.webhookTimeoutMs, retries: config.alerts.webhookRetries, logger })
      : undefined;
    const alerts = startAlertEngine({ db, writer, rules: alertRules, logger, pollIntervalMs: config.alerts.pollIntervalMs, webhook });
    alertMetrics(services.metrics, alerts, webhook);

    return {
      ...services,
      checkpointer,
      signingKey,
      async close() {
        stopMaintenance();
        // Before the writer closes: the engine writes its alerts through it.
        await alerts.close();
        await writer.close();
        await checkpointer.close().catch((err: unknown) => logger.error({ err }, 'final audit checkpoint failed'));
        await witnesses.close();
        for (const close of closers) await close();
      },
    };
  } catch (err) {
    for (const close of closers) await close().catch(() => {});
    throw err;
  }
}
