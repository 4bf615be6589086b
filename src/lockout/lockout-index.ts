import type { Redis } from 'ioredis';

/** A current lockout, as the security team sees it. */
export interface LockoutInfo {
  /** The normalized username (also for names that do not exist). */
  username: string;
  failures: number;
  locked_since: string;
  locked_until: string;
  /** Locks of this account within the escalation window, this one included. */
  lock_count: number;
}

/** Current lockouts, listable without scanning the keyspace. Every entry expires with its lock. */
export interface LockoutIndex {
  add(info: LockoutInfo): Promise<void>;
  remove(account: string): Promise<void>;
  list(): Promise<LockoutInfo[]>;
  get(account: string): Promise<LockoutInfo | undefined>;
}


/**
 * Redis: a sorted set of accounts scored by `locked_until` (ms), and one JSON string per lock
 * expiring with it. The set's own TTL is refreshed to the longest lock on every add.
 */
/** The Redis key of one account's current lock; it exists exactly while the lock lasts. */
export const lockoutInfoKey = (keyPrefix: string, account: string): string => `${keyPrefix}:lockout:${account}`;

export function createRedisLockoutIndex(redis: Redis, keyPrefix: string, maxDurationSeconds: number): LockoutIndex {
  const INDEX_KEY = `${keyPrefix}:lockouts`;
  const infoKey = (account: string): string => lockoutInfoKey(keyPrefix, account);
  return {
    async add(info) {
      const until = Date.parse(info.locked_until);
      const ttlMs = Math.max(1, until - Date.now());
      await redis
        .multi()
        .set(infoKey(info.username), JSON.stringify(info), 'PX', ttlMs)
        .zadd(INDEX_KEY, until, info.username)
        .expire(INDEX_KEY, maxDurationSeconds)
        .exec();
    },
    async remove(account) {
      await redis.multi().del(infoKey(account)).zrem(INDEX_KEY, account).exec();
    },
    async list() {
      const now = Date.now();
      await redis.zremrangebyscore(INDEX_KEY, '-inf', now);
      const accounts = await redis.zrangebyscore(INDEX_KEY, now, '+inf');
      if (accounts.length === 0) return [];
      const values = await redis.mget(accounts.map(infoKey));
      return values.flatMap((v) => (v ? [JSON.parse(v) as LockoutInfo] : []));
    },
    async get(account) {
      const value = await redis.get(infoKey(account));
      return value ? (JSON.parse(value) as LockoutInfo) : undefined;
    },
  };
}

/** The in-process index can also answer synchronously, for the in-process attempt counter. */
export interface MemoryLockoutIndex extends LockoutIndex {
  /** Milliseconds the account stays locked; 0 when it is not. */
  lockedMs(account: string): number;
}

/** The same operations in process, for embedded mode and as the fallback when Redis fails. */
export function createMemoryLockoutIndex(): MemoryLockoutIndex {
  const entries = new Map<string, LockoutInfo>();
  const live = (info: LockoutInfo | undefined): LockoutInfo | undefined =>
    info && Date.parse(info.locked_until) > Date.now() ? info : undefined;
  return {
    lockedMs(account) {
      const info = live(entries.get(account));
      return info ? Date.parse(info.locked_until) - Date.now() : 0;
    },
    add(info) {
      entries.set(info.username, info);
      return Promise.resolve();
    },
    remove(account) {
      entries.delete(account);
      return Promise.resolve();
    },
    list() {
      for (const [account, info] of entries) if (!live(info)) entries.delete(account);
      return Promise.resolve([...entries.values()]);
    },
    get(account) {
      return Promise.resolve(live(entries.get(account)));
    },
  };
}
