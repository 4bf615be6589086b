import { sqlTimestamp } from '../audit/clock.js';
import type { Queryable } from '../db/database.js';
import type { LockoutInfo } from './lockout-index.js';
import type { LockEvent } from './lockout-service.js';

/**
 * Reads the lock records of the last `sinceSeconds` from the audit log, oldest first: the source
 * of truth from which a lockout store that lost its state gets its locks back. The range starts
 * at the first record of the period, so the scan stays on the event-type index.
 */
export function createLockHistory(db: Pick<Queryable, 'query'>): (sinceSeconds: number) => Promise<LockEvent[]> {
  return async (sinceSeconds) => {
    const { rows } = await db.query<{ event_type: LockEvent['eventType']; account: string; occurred_at: string; details: string | null }>(
      `SELECT event_type, account, ${sqlTimestamp('occurred_at')} AS occurred_at, details::text AS details
         FROM audit_log
        WHERE event_type IN ('lockout.started', 'lockout.cleared') AND account IS NOT NULL
          AND seq >= coalesce((SELECT seq FROM audit_log WHERE occurred_at >= now() - make_interval(secs => $1)
                                ORDER BY occurred_at LIMIT 1), 9223372036854775807)
        ORDER BY seq`,
      [sinceSeconds],
    );
    return rows.map((row) => ({
      eventType: row.event_type,
      account: row.account,
      occurredAt: row.occurred_at,
      lock: row.event_type === 'lockout.started' && row.details ? lockOf(JSON.parse(row.details) as Partial<LockoutInfo>) : undefined,
    }));
  };
}

/** The lock a `lockout.started` record describes, when its details are complete. */
function lockOf(details: Partial<LockoutInfo>): LockoutInfo | undefined {
  const { username, failures, locked_since: since, locked_until: until, lock_count: count } = details;
  if (typeof username !== 'string' || typeof since !== 'string' || typeof until !== 'string' || typeof count !== 'number') return undefined;
  return { username, failures: typeof failures === 'number' ? failures : 0, locked_since: since, locked_until: until, lock_count: count };
}
