import path from 'node:path';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { createChainWriter, type ChainWriter } from './audit/chain-writer.js';
import { createCheckpointer, loadSigningKey, type Checkpointer, type SigningKey } from './audit/checkpoints.js';
import type { Config } from './config.js';
import { createEmbeddedDatabase, createPostgresDatabase, type Database } from './db/database.js';
import { migrate } from './db/migrate.js';

/** Everything a running gateway holds open, and how to close it in order. */
export interface Runtime {
  config: Config;
  logger: Logger;
  db: Database;
  redis: Redis | undefined;
  writer: ChainWriter;
  checkpointer: Checkpointer;
  signingKey: SigningKey;
  /** Flushes the audit writer, writes a last checkpoint, closes Redis and the database. */
  close(): Promise<void>;
}

/** Opens PostgreSQL from `DATABASE_URL`, or embedded PGlite under `DATA_DIR/pgdata`. */
export function openDatabase(config: Config, applicationName = 'authtrail'): Promise<Database> {
  const { database } = config;
  if (database.url) {
    return Promise.resolve(
      createPostgresDatabase({
        url: database.url,
        poolMax: database.poolMax,
        statementTimeoutMs: database.statementTimeoutMs,
        connectTimeoutMs: database.connectTimeoutMs,
        applicationName,
      }),
    );
  }
  return createEmbeddedDatabase(path.join(config.dataDir, 'pgdata'));
}

function openRedis(url: string, logger: Logger): Redis {
  const redis = new Redis(url, {
    connectTimeout: 2000,
    commandTimeout: 1000,
    maxRetriesPerRequest: 1,
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
    logger.warn({ err: { message: err.message } }, 'redis unreachable');
  });
  return redis;
}

/** Opens the database (migrating it when configured), Redis, the audit writer and the checkpointer. */
export async function openRuntime(config: Config, logger: Logger): Promise<Runtime> {
  const db = await openDatabase(config);
  try {
    if (config.database.migrateOnStart || config.mode === 'embedded') {
      const applied = await migrate(db);
      if (applied.length > 0) logger.info({ applied }, 'migrations applied');
    }
    const signingKey = loadSigningKey(config.audit.signingKeyFile, { generate: config.audit.generateSigningKey });
    const writer = createChainWriter(db, { batchMax: config.audit.batchMax, writeTimeoutMs: config.audit.writeTimeoutMs });
    const checkpointer = createCheckpointer({
      db,
      writer,
      key: signingKey,
      file: config.audit.checkpointFile,
      everyRecords: config.audit.checkpointEveryRecords,
      everySeconds: config.audit.checkpointEverySeconds,
      logger,
    });
    const redis = config.redis.url ? openRedis(config.redis.url, logger) : undefined;

    return {
      config,
      logger,
      db,
      redis,
      writer,
      checkpointer,
      signingKey,
      async close() {
        await writer.close();
        await checkpointer.close().catch((err: unknown) => logger.error({ err }, 'final audit checkpoint failed'));
        if (redis) await redis.quit().catch(() => redis.disconnect());
        await db.close();
      },
    };
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
}
