import type { Redis } from 'ioredis';

/** What taking a slot found: a slot (1..max), the account locked, or every slot held by attempts in flight. */
export type Taken = { kind: 'slot'; slot: number } | { kind: 'locked'; msLeft: number } | { kind: 'full' };

/**
 * The per-account slot counter of one lock cycle. Taking a slot checks the lock and counts in
 * one atomic step, and a refusal takes nothing, so no interleaving of parallel attempts, lock
 * starts and give-backs (across processes) can let a sixth secret be checked or wear a lock down.
 */
export interface AttemptCounter {
  take(account: string): Promise<Taken>;
  /** One slot back, never below zero (a counter that expired or was reset stays gone). */
  giveBack(account: string): Promise<void>;
  /** The cycle is over (a successful login, a lock start, an unlock). */
  reset(account: string): Promise<void>;
}

export interface CounterSettings {
  max: number;
  windowMs: number;
}

/**
 * KEYS[1] the counter, KEYS[2] the lock entry (the lockout index's per-account key).
 * ARGV[1] max slots, ARGV[2] window in ms. Returns {kind, value}: 1 slot, 2 locked (ms left), 3 full.
 */
const TAKE = `
local left = redis.call('PTTL', KEYS[2])
if left > 0 then return {2, left} end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return {3, 0}
end
return {1, n}`;

const GIVE_BACK = `
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 1 then return redis.call('DECR', KEYS[1]) end
if n == 1 then redis.call('DEL', KEYS[1]) end
return 0`;

/** Redis: one Lua script per operation, so each is atomic across every gateway instance. */
export function createRedisAttemptCounter(redis: Redis, keys: { counter: (account: string) => string; lock: (account: string) => string }, settings: CounterSettings): AttemptCounter {
  return {
    async take(account) {
      const [kind, value] = (await redis.eval(TAKE, 2, keys.counter(account), keys.lock(account), settings.max, settings.windowMs)) as [number, number];
      if (kind === 1) return { kind: 'slot', slot: value };
      if (kind === 2) return { kind: 'locked', msLeft: value };
      return { kind: 'full' };
    },
    async giveBack(account) {
      await redis.eval(GIVE_BACK, 1, keys.counter(account));
    },
    async reset(account) {
      await redis.del(keys.counter(account));
    },
  };
}

/** In process (embedded mode, and the fallback while Redis fails): the same steps, atomic by running synchronously. */
export function createMemoryAttemptCounter(isLocked: (account: string) => number, settings: CounterSettings): AttemptCounter {
  const counters = new Map<string, { n: number; expiresAt: number }>();
  const live = (account: string): { n: number; expiresAt: number } | undefined => {
    const entry = counters.get(account);
    if (entry && entry.expiresAt <= Date.now()) counters.delete(account);
    return counters.get(account);
  };
  return {
    take(account) {
      const msLeft = isLocked(account);
      if (msLeft > 0) return Promise.resolve({ kind: 'locked', msLeft });
      const entry = live(account) ?? { n: 0, expiresAt: Date.now() + settings.windowMs };
      if (entry.n >= settings.max) return Promise.resolve({ kind: 'full' });
      entry.n += 1;
      counters.set(account, entry);
      return Promise.resolve({ kind: 'slot', slot: entry.n });
    },
    giveBack(account) {
      const entry = live(account);
      if (entry && entry.n > 1) entry.n -= 1;
      else counters.delete(account);
      return Promise.resolve();
    },
    reset(account) {
      counters.delete(account);
      return Promise.resolve();
    },
  };
}
