import type { Redis } from 'ioredis';
import ipaddr from 'ipaddr.js';
import {
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
  type RateLimiterAbstract,
  type IRateLimiterStoreOptions,
} from 'rate-limiter-flexible';
import type { Config } from '../config.js';
import { createMemoryLockoutIndex, createRedisLockoutIndex, type LockoutIndex, type LockoutInfo } from './lockout-index.js';

export type { LockoutInfo } from './lockout-index.js';

/** The attempt may go on to the password check; it holds attempt slot `slot` (1..max) of this cycle. */
export interface SlotGranted {
  allowed: true;
  slot: number;
  degraded: boolean;
}

/** The attempt is refused before any password work. */
export interface Refused {
  allowed: false;
  reason: 'account_locked' | 'too_many_attempts';
  retryAfterSeconds: number;
  degraded: boolean;
}

export interface FailureOutcome {
  /** Set when this failure was the last allowed one and the account is now locked. */
  lockStarted: LockoutInfo | undefined;
  degraded: boolean;
}

/**
 * Five-failure account lockout (SPEC §4) and the per-IP spray limiter. Counters live in Redis
 * (shared by every instance) or, in embedded mode, in process. When Redis fails, an in-process
 * limiter takes over per instance and results say `degraded`, so guessing is never unlimited.
 */
export interface LockoutService {
  checkIp(ip: string | null): Promise<{ allowed: true; degraded: boolean } | Refused>;
  /** Takes an attempt slot atomically, before the password is checked. */
  takeAttemptSlot(account: string): Promise<SlotGranted | Refused>;
  recordFailure(account: string, slot: number, ip: string | null): Promise<FailureOutcome>;
  recordSuccess(account: string): Promise<{ degraded: boolean }>;
  /** Gives back a slot whose attempt ended without a password verdict (database down), so outages lock nobody. */
  releaseSlot(account: string): Promise<void>;
  list(): Promise<LockoutInfo[]>;
  get(account: string): Promise<LockoutInfo | undefined>;
  /** Unlocks: clears the failure count and the lock; true when there was something to clear. */
  clear(account: string): Promise<boolean>;
  /** Whether the last store operation fell back to the in-process limiter. */
  readonly degraded: boolean;
}

/** IPv6 clients are grouped by /64 (one customer's network); IPv4 per address. */
export function ipLimitKey(ip: string): string {
  const addr = ipaddr.process(ip);
  if (addr.kind() === 'ipv4') return addr.toString();
  const parts = (addr as ipaddr.IPv6).parts.slice(0, 4).map((p) => p.toString(16));
  return `${parts.join(':')}::/64`;
}

type Consumed = { ok: true; res: RateLimiterRes } | { ok: false; res: RateLimiterRes };

/** `consume` that resolves for "no points left" and rejects only for store errors. */
async function consume(limiter: RateLimiterAbstract, key: string): Promise<Consumed> {
  try {
    return { ok: true, res: await limiter.consume(key) };
  } catch (err) {
    if (err instanceof RateLimiterRes) return { ok: false, res: err };
    throw err;
  }
}

const seconds = (ms: number): number => Math.max(1, Math.ceil(ms / 1000));

export interface LockoutServiceOptions {
  config: Config['lockout'];
  /** Prefix of every Redis key. */
  keyPrefix: string;
  /** Absent: the in-process store only (embedded mode). */
  redis?: Redis | undefined;
  onDegraded?: (err: Error) => void;
}

export function createLockoutService(options: LockoutServiceOptions): LockoutService {
  const { config, redis, keyPrefix } = options;
  const definitions = {
    attempts: { keyPrefix: `${keyPrefix}:attempts`, points: config.maxFailures, duration: config.windowSeconds },
    locks: { keyPrefix: `${keyPrefix}:locks`, points: 1_000_000, duration: config.escalationWindowSeconds },
    ip: { keyPrefix: `${keyPrefix}:ip`, points: config.ipMaxFailures, duration: config.ipWindowSeconds },
  } satisfies Record<string, Partial<IRateLimiterStoreOptions>>;

  type Limiters = Record<keyof typeof definitions, RateLimiterAbstract>;
  const memory: Limiters = {
    attempts: new RateLimiterMemory(definitions.attempts),
    locks: new RateLimiterMemory(definitions.locks),
    ip: new RateLimiterMemory(definitions.ip),
  };
  const shared: Limiters | undefined = redis
    ? {
        attempts: new RateLimiterRedis({ storeClient: redis, rejectIfRedisNotReady: true, ...definitions.attempts }),
        locks: new RateLimiterRedis({ storeClient: redis, rejectIfRedisNotReady: true, ...definitions.locks }),
        ip: new RateLimiterRedis({ storeClient: redis, rejectIfRedisNotReady: true, ...definitions.ip }),
      }
    : undefined;
  const memoryIndex = createMemoryLockoutIndex();
  const sharedIndex = redis ? createRedisLockoutIndex(redis, keyPrefix, config.maxDurationSeconds) : undefined;
  let degraded = false;

  /** Runs against the shared store; on a store error, against this instance's memory instead. */
  async function resilient<T>(run: (limiters: Limiters, index: LockoutIndex) => Promise<T>): Promise<{ value: T; degraded: boolean }> {
    if (shared && sharedIndex) {
      try {
        const value = await run(shared, sharedIndex);
        degraded = false;
        return { value, degraded: false };
      } catch (err) {
        if (!(err instanceof Error)) throw err;
        degraded = true;
        options.onDegraded?.(err);
        return { value: await run(memory, memoryIndex), degraded: true };
      }
    }
    return { value: await run(memory, memoryIndex), degraded: false };
  }

  /** Lock length for the n-th lock within the escalation window: doubled each time, capped. */
  const lockSeconds = (lockCount: number): number =>
    Math.min(config.durationSeconds * 2 ** Math.min(lockCount - 1, 30), config.maxDurationSeconds);

  return {
    get degraded() {
      return degraded;
    },

    async checkIp(ip) {
      if (ip === null) return { allowed: true, degraded: false };
      const key = ipLimitKey(ip);
      const { value, degraded: d } = await resilient((l) => l.ip.get(key));
      if (value && value.consumedPoints >= config.ipMaxFailures) {
        return { allowed: false, reason: 'too_many_attempts', retryAfterSeconds: seconds(value.msBeforeNext), degraded: d };
      }
      return { allowed: true, degraded: d };
    },

    async takeAttemptSlot(account) {
      const { value, degraded: d } = await resilient((l) => consume(l.attempts, account));
      if (value.ok) return { allowed: true, slot: value.res.consumedPoints, degraded: d };
      return { allowed: false, reason: 'account_locked', retryAfterSeconds: seconds(value.res.msBeforeNext), degraded: d };
    },

    async recordFailure(account, slot, ip) {
      const { value, degraded: d } = await resilient(async (l, index) => {
        if (ip !== null) {
          const key = ipLimitKey(ip);
          const counted = await consume(l.ip, key);
          if (counted.res.consumedPoints === config.ipMaxFailures) await l.ip.block(key, config.ipBlockSeconds);
        }
        // The failure that used the last slot starts the lock; the slots already make further attempts wait.
        if (slot < config.maxFailures) return undefined;
        const lockCount = (await consume(l.locks, account)).res.consumedPoints;
        const duration = lockSeconds(lockCount);
        await l.attempts.block(account, duration);
        const now = Date.now();
        const info: LockoutInfo = {
          username: account,
          failures: config.maxFailures,
          locked_since: new Date(now).toISOString(),
          locked_until: new Date(now + duration * 1000).toISOString(),
          lock_count: lockCount,
        };
        await index.add(info);
        return info;
      });
      return { lockStarted: value, degraded: d };
    },

    async recordSuccess(account) {
      const { degraded: d } = await resilient(async (l, index) => {
        await l.attempts.delete(account);
        await index.remove(account);
      });
      return { degraded: d };
    },

    async releaseSlot(account) {
      await resilient((l) => l.attempts.reward(account, 1));
    },

    async list() {
      return (await resilient((_l, index) => index.list())).value;
    },

    async get(account) {
      return (await resilient((_l, index) => index.get(account))).value;
    },

    async clear(account) {
      const { value } = await resilient(async (l, index) => {
        const [had] = await Promise.all([l.attempts.get(account), index.get(account)]);
        await Promise.all([l.attempts.delete(account), index.remove(account)]);
        return had !== null;
      });
      return value;
    },
  };
}
