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
import { createMemoryAttemptCounter, createRedisAttemptCounter, type AttemptCounter } from './attempt-counter.js';
import { createMemoryLockoutIndex, createRedisLockoutIndex, lockoutInfoKey, type LockoutIndex, type LockoutInfo } from './lockout-index.js';

export type { LockoutInfo } from './lockout-index.js';

/** The attempt may go on to the password check; it holds attempt slot `slot` (1..max) of this cycle. */
export interface SlotGranted {
  allowed: true;
  slot: number;
  degraded: boolean;
}

/** The client address's failure budget allowed this attempt; it holds point `consumed` (0 without an address). */
export interface IpGranted {
  allowed: true;
  consumed: number;
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
 * Five-failure account lockout (README, "Login and lockout") and the per-IP spray limiter. Counters live in Redis
 * (shared by every instance) or, in embedded mode, in process. When Redis fails, an in-process
 * limiter takes over per instance and results say `degraded`, so guessing is never unlimited.
 */
export interface LockoutService {
  /**
   * Takes one point of the client address's failure budget (IPv6 by /64) atomically, before any
   * password work, so parallel requests cannot pass the limit. Refused once the budget is spent.
   */
  takeIpPoint(ip: string | null): Promise<IpGranted | Refused>;
  /** Gives an address point back: the attempt did not end in a wrong secret. */
  returnIpPoint(ip: string | null): Promise<{ degraded: boolean }>;
  /** Takes an attempt slot atomically, before the password is checked. */
  takeAttemptSlot(account: string): Promise<SlotGranted | Refused>;
  /** A wrong secret: the slot stays taken; the last slot starts the lock, the address's last point its block. */
  recordFailure(account: string, slot: number, ip: { ip: string | null; consumed: number }): Promise<FailureOutcome>;
  /** A successful login: the account's failure count starts over. */
  resetFailures(account: string): Promise<{ degraded: boolean }>;
  /** Gives back a slot whose attempt ended without a wrong secret; never below zero. */
  releaseSlot(account: string): Promise<{ degraded: boolean }>;
  list(): Promise<LockoutInfo[]>;
  get(account: string): Promise<LockoutInfo | undefined>;
  /** Unlocks: clears the failure count and the lock; true when the account was locked. */
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

/**
 * Gives one point back, never below zero: a key that expired meanwhile is not recreated at −1
 * (which would let the next cycle evaluate more than its limit).
 */
async function giveBack(limiter: RateLimiterAbstract, key: string): Promise<void> {
  const current = await limiter.get(key);
  if (!current || current.consumedPoints <= 0) return;
  const after = await limiter.reward(key, 1);
  // The key expired between the read and the reward: drop the negative count it left.
  if (after.consumedPoints < 0) await limiter.delete(key);
}

const seconds = (ms: number): number => Math.max(1, Math.ceil(ms / 1000));

/** One `lockout.started` or `lockout.cleared` record, as the audit log keeps it. */
export interface LockEvent {
  eventType: 'lockout.started' | 'lockout.cleared';
  /** The normalized username. */
  account: string;
  occurredAt: string;
  /** Of `lockout.started`: the lock it recorded. */
  lock?: LockoutInfo | undefined;
}

/** A store's lock state could not be restored from the log (the database did not answer). */
class RestoreError extends Error {
  override readonly name = 'RestoreError';
}

export interface LockoutServiceOptions {
  config: Config['lockout'];
  /** Prefix of every Redis key. */
  keyPrefix: string;
  /** Absent: the in-process store only (embedded mode). */
  redis?: Redis | undefined;
  /**
   * Lock records of the last `sinceSeconds`, oldest first, from the audit log (the source of truth):
   * a store that lost its state (Redis restarted or flushed, a new process) gets its locks back.
   */
  lockHistory?: ((sinceSeconds: number) => Promise<LockEvent[]>) | undefined;
  onDegraded?: (err: Error) => void;
}

export function createLockoutService(options: LockoutServiceOptions): LockoutService {
  const { config, redis, keyPrefix } = options;
  const definitions = {
    locks: { keyPrefix: `${keyPrefix}:locks`, points: 1_000_000, duration: config.escalationWindowSeconds },
    ip: { keyPrefix: `${keyPrefix}:ip`, points: config.ipMaxFailures, duration: config.ipWindowSeconds },
    // Holds an address refused past its window's end (IP_BLOCK_SECONDS), apart from the count.
    ipBlocks: { keyPrefix: `${keyPrefix}:ip-block`, points: 1, duration: config.ipBlockSeconds },
  } satisfies Record<string, Partial<IRateLimiterStoreOptions>>;

  type Limiters = Record<keyof typeof definitions, RateLimiterAbstract>;
  interface Store {
    limiters: Limiters;
    /** The account slots of the current lock cycle (atomic with the lock check). */
    attempts: AttemptCounter;
    index: LockoutIndex;
    /** Whether the store still holds the locks restored into it. */
    hasState(): Promise<boolean>;
    markState(): Promise<void>;
    restoring?: Promise<void> | undefined;
  }
  let memoryRestored = false;
  const counterSettings = { max: config.maxFailures, windowMs: config.windowSeconds * 1000 };
  const memoryIndex = createMemoryLockoutIndex();
  const memory: Store = {
    attempts: createMemoryAttemptCounter((account) => memoryIndex.lockedMs(account), counterSettings),
    limiters: {
      locks: new RateLimiterMemory(definitions.locks),
      ip: new RateLimiterMemory(definitions.ip),
      ipBlocks: new RateLimiterMemory(definitions.ipBlocks),
    },
    index: memoryIndex,
    hasState: () => Promise.resolve(memoryRestored),
    markState: () => {
      memoryRestored = true;
      return Promise.resolve();
    },
  };
  const stateKey = `${keyPrefix}:lock-state`;
  // Every key expires; a marker that does renews itself from the log, which is idempotent.
  const stateSeconds = Math.max(config.escalationWindowSeconds, config.maxDurationSeconds);
  const shared: Store | undefined = redis
    ? {
        attempts: createRedisAttemptCounter(
          redis,
          { counter: (account) => `${keyPrefix}:attempts:${account}`, lock: (account) => lockoutInfoKey(keyPrefix, account) },
          counterSettings,
        ),
        limiters: {
          locks: new RateLimiterRedis({ storeClient: redis, rejectIfRedisNotReady: true, ...definitions.locks }),
          ip: new RateLimiterRedis({ storeClient: redis, rejectIfRedisNotReady: true, ...definitions.ip }),
          ipBlocks: new RateLimiterRedis({ storeClient: redis, rejectIfRedisNotReady: true, ...definitions.ipBlocks }),
        },
        index: createRedisLockoutIndex(redis, keyPrefix, config.maxDurationSeconds),
        hasState: async () => (await redis.exists(stateKey)) === 1,
        markState: async () => {
          await redis.set(stateKey, new Date().toISOString(), 'EX', stateSeconds);
        },
      }
    : undefined;
  let degraded = false;

  /** Lock length for the n-th lock within the escalation window: doubled each time, capped. */
  const lockSeconds = (lockCount: number): number =>
    Math.min(config.durationSeconds * 2 ** Math.min(Math.max(lockCount, 1) - 1, 30), config.maxDurationSeconds);

  /** Puts the log's current locks and escalation counts into a store that has none. */
  async function restore(store: Store): Promise<void> {
    const lookBack = Math.max(config.escalationWindowSeconds, config.maxDurationSeconds);
    let events: LockEvent[];
    try {
      events = await options.lockHistory!(lookBack);
    } catch (err) {
      throw new RestoreError('the lock history could not be read', { cause: err });
    }
    const now = Date.now();
    const byAccount = new Map<string, { starts: LockEvent[]; clearedAt: number }>();
    for (const event of events) {
      const entry = byAccount.get(event.account) ?? { starts: [], clearedAt: 0 };
      if (event.eventType === 'lockout.started') entry.starts.push(event);
      else entry.clearedAt = Date.parse(event.occurredAt);
      byAccount.set(event.account, entry);
    }
    for (const [account, { starts, clearedAt }] of byAccount) {
      const recent = starts.filter((e) => Date.parse(e.occurredAt) > now - config.escalationWindowSeconds * 1000);
      if (recent.length > 0) {
        const left = Date.parse(recent[0]!.occurredAt) + config.escalationWindowSeconds * 1000 - now;
        await store.limiters.locks.set(account, recent.length, seconds(left));
      }
      const last = starts.at(-1)?.lock;
      const until = last ? Date.parse(last.locked_until) : 0;
      if (last && until > now && Date.parse(last.locked_since) >= clearedAt) {
        await store.index.add(last);
      }
    }
  }

  /** Restores a store's locks once per loss of state; concurrent callers share one restore. */
  async function ensureState(store: Store): Promise<void> {
    if (!options.lockHistory || (await store.hasState())) return;
    store.restoring ??= restore(store)
      .then(() => store.markState())
      .finally(() => {
        store.restoring = undefined;
      });
    await store.restoring;
  }

  /** Runs against the shared store; on a store error, against this instance's memory instead. */
  async function resilient<T>(run: (limiters: Limiters, index: LockoutIndex, attempts: AttemptCounter) => Promise<T>, needsState = false): Promise<{ value: T; degraded: boolean }> {
    const runOn = async (store: Store): Promise<T> => {
      if (needsState) await ensureState(store);
      return run(store.limiters, store.index, store.attempts);
    };
    if (shared) {
      try {
        const value = await runOn(shared);
        degraded = false;
        return { value, degraded: false };
      } catch (err) {
        if (!(err instanceof Error) || err instanceof RestoreError) throw err instanceof RestoreError ? err.cause : err;
        degraded = true;
        options.onDegraded?.(err);
        try {
          return { value: await runOn(memory), degraded: true };
        } catch (memoryErr) {
          throw memoryErr instanceof RestoreError ? memoryErr.cause : memoryErr;
        }
      }
    }
    try {
      return { value: await runOn(memory), degraded: false };
    } catch (err) {
      throw err instanceof RestoreError ? err.cause : err;
    }
  }

  return {
    get degraded() {
      return degraded;
    },

    async takeIpPoint(ip) {
      if (ip === null) return { allowed: true, consumed: 0, degraded: false };
      const key = ipLimitKey(ip);
      const { value, degraded: d } = await resilient(async (l) => {
        const blocked = await l.ipBlocks.get(key);
        if (blocked && blocked.consumedPoints > 0 && blocked.msBeforeNext > 0) return { ok: false as const, res: blocked };
        const taken = await consume(l.ip, key);
        // A refused attempt costs the address nothing: its point goes straight back.
        if (!taken.ok) await giveBack(l.ip, key);
        return taken;
      });
      if (value.ok) return { allowed: true, consumed: value.res.consumedPoints, degraded: d };
      return { allowed: false, reason: 'too_many_attempts', retryAfterSeconds: seconds(value.res.msBeforeNext), degraded: d };
    },

    async returnIpPoint(ip) {
      if (ip === null) return { degraded: false };
      const key = ipLimitKey(ip);
      return { degraded: (await resilient((l) => giveBack(l.ip, key))).degraded };
    },

    async takeAttemptSlot(account) {
      const { value, degraded: d } = await resilient(async (l, _index, attempts) => {
        const taken = await attempts.take(account);
        if (taken.kind === 'slot') return { slot: taken.slot, retryAfterMs: 0 };
        if (taken.kind === 'locked') return { slot: 0, retryAfterMs: taken.msLeft };
        // Every slot is held by an attempt still being checked. If the last of them fails, the lock
        // lasts as long as the next lock of this account: that is the wait to announce.
        return { slot: 0, retryAfterMs: lockSeconds(((await l.locks.get(account))?.consumedPoints ?? 0) + 1) * 1000 };
      }, true);
      if (value.slot > 0) return { allowed: true, slot: value.slot, degraded: d };
      return { allowed: false, reason: 'account_locked', retryAfterSeconds: seconds(value.retryAfterMs), degraded: d };
    },

    async recordFailure(account, slot, address) {
      const { value, degraded: d } = await resilient(async (l, index, attempts) => {
        if (address.ip !== null && address.consumed >= config.ipMaxFailures) {
          // The address spent its budget: it stays refused until its window ends, and at least
          // IP_BLOCK_SECONDS, held by a key of its own, so the window's count is never rewritten.
          const key = ipLimitKey(address.ip);
          const current = await l.ip.get(key);
          if (!current || current.msBeforeNext < config.ipBlockSeconds * 1000) await l.ipBlocks.block(key, config.ipBlockSeconds);
        }
        // The failure that used the last slot starts the lock; the slots already make further attempts wait.
        if (slot < config.maxFailures) return undefined;
        const lockCount = (await consume(l.locks, account)).res.consumedPoints;
        const duration = lockSeconds(lockCount);
        const now = Date.now();
        const info: LockoutInfo = {
          username: account,
          failures: config.maxFailures,
          locked_since: new Date(now).toISOString(),
          locked_until: new Date(now + duration * 1000).toISOString(),
          lock_count: lockCount,
        };
        // The index entry is the lock (slots are refused while it exists); the next cycle starts fresh.
        await index.add(info);
        await attempts.reset(account);
        return info;
      });
      return { lockStarted: value, degraded: d };
    },

    async resetFailures(account) {
      const { degraded: d } = await resilient(async (_l, index, attempts) => {
        await attempts.reset(account);
        await index.remove(account);
      });
      return { degraded: d };
    },

    async releaseSlot(account) {
      return { degraded: (await resilient((_l, _index, attempts) => attempts.giveBack(account))).degraded };
    },

    async list() {
      return (await resilient((_l, index) => index.list(), true)).value;
    },

    async get(account) {
      return (await resilient((_l, index) => index.get(account), true)).value;
    },

    async clear(account) {
      const { value } = await resilient(async (_l, index, attempts) => {
        const lock = await index.get(account);
        await Promise.all([attempts.reset(account), index.remove(account)]);
        return lock !== undefined;
      }, true);
      return value;
    },
  };
}
