import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Express } from 'express';
import { Redis } from 'ioredis';
import { createApp } from '../../src/app.js';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { createServices } from '../../src/runtime.js';
import type { Services } from '../../src/services.js';
import { createUser } from '../../src/users/create-user.js';
import type { Role } from '../../src/users/user-queries.js';
import { generateTokenKeyFile } from '../../src/tokens/keys.js';
import { createTestDatabase, type TestDatabase } from './postgres.js';

export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Key files and settings that several gateway processes of one test share. */
export interface SharedSetup {
  dir: string;
  env: Record<string, string>;
}

/** A database, key files and the environment a production-mode gateway needs. */
export function sharedSetup(t: TestDatabase, env: Record<string, string> = {}): SharedSetup {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-gw-'));
  const jwtKey = path.join(dir, 'jwt-es256.pem');
  generateTokenKeyFile(jwtKey, 'ES256');
  const mfaKey = path.join(dir, 'mfa.key');
  fs.writeFileSync(mfaKey, crypto.randomBytes(32).toString('base64'));
  const auditKey = path.join(dir, 'audit.pem');
  fs.writeFileSync(auditKey, crypto.generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }));
  return {
    dir,
    env: {
      DATABASE_URL: t.url,
      REDIS_URL,
      AUDIT_SIGNING_KEY_FILE: auditKey,
      AUDIT_CHECKPOINT_FILE: path.join(dir, 'checkpoints.jsonl'),
      JWT_KEY_FILES: jwtKey,
      MFA_ENCRYPTION_KEY_FILE: mfaKey,
      BCRYPT_COST: '4',
      ADMIN_REQUIRE_MFA: 'false',
      LOG_LEVEL: 'silent',
      // Counters of this test only, even for the shared 127.0.0.1 and across runs.
      REDIS_KEY_PREFIX: `authtrail-test-${crypto.randomBytes(6).toString('hex')}`,
      ...env,
    },
  };
}

export interface TestGateway {
  app: Express;
  services: Services;
  t: TestDatabase;
  setup: SharedSetup;
  /** Creates a user directly (recorded as user.created). */
  addUser(username: string, password: string, roles?: Role[]): Promise<string>;
  close(): Promise<void>;
}

/** A unique username per test, so tests sharing one Redis never share a lockout counter. */
export const uniqueName = (prefix: string): string => `${prefix}-${crypto.randomBytes(4).toString('hex')}@example.com`;

/** The real app in this process over real PostgreSQL and Redis (or `redis: false`: the in-process store). */
export async function createTestGateway(options: { env?: Record<string, string>; redis?: boolean; t?: TestDatabase } = {}): Promise<TestGateway> {
  const t = options.t ?? (await createTestDatabase());
  const setup = sharedSetup(t, options.env);
  const env = { ...setup.env };
  if (options.redis === false) delete (env as Partial<typeof env>).REDIS_URL;
  const config = loadConfig(env);
  const redis = config.redis.url ? new Redis(config.redis.url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 1000 }) : undefined;
  if (redis) {
    redis.on('error', () => {});
    await new Promise((resolve) => redis.once('ready', resolve));
  }
  const writer = createChainWriter(t.db, { batchMax: config.audit.batchMax, writeTimeoutMs: config.audit.writeTimeoutMs });
  const services = createServices(config, createLogger('silent'), { db: t.db, writer, redis });
  return {
    app: createApp(services),
    services,
    t,
    setup,
    async addUser(username, password, roles = ['user']) {
      const result = await createUser(
        { users: services.users, passwords: services.passwords, writer, minPasswordLength: config.passwords.minLength },
        { username, password, roles },
        {},
      );
      if (!result.ok) throw new Error(result.detail);
      return result.user.id;
    },
    async close() {
      await writer.close();
      redis?.disconnect();
      if (!options.t) await t.drop();
      fs.rmSync(setup.dir, { recursive: true, force: true });
    },
  };
}

export interface AuditRow {
  seq: number;
  event_type: string;
  outcome: string;
  reason: string | null;
  username: string | null;
  user_id: string | null;
  ip: string | null;
  session_id: string | null;
  actor_id: string | null;
  details: Record<string, unknown> | null;
}

/** Audit records, oldest first, optionally only those naming `username`. */
export async function auditRows(t: TestDatabase, where: { username?: string; eventType?: string } = {}): Promise<AuditRow[]> {
  const { rows } = await t.db.query<AuditRow & { details: string | null }>(
    `SELECT seq, event_type, outcome, reason, username, user_id::text AS user_id, host(ip) AS ip, session_id::text AS session_id,
            actor_id::text AS actor_id, details::text AS details
       FROM audit_log WHERE ($1::text IS NULL OR username = $1) AND ($2::text IS NULL OR event_type = $2) ORDER BY seq`,
    [where.username ?? null, where.eventType ?? null],
  );
  return rows.map((r) => ({ ...r, details: r.details === null ? null : (JSON.parse(r.details) as Record<string, unknown>) }));
}
