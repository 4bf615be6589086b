import type { Queryable } from '../db/database.js';
import { normalizeUsername } from '../users/usernames.js';
import type { ChainRecord } from './canonical.js';
import { sqlTimestamp } from './clock.js';

/** Filters of `GET /admin/login-events` (docs/api.md), already validated. */
export interface EventFilter {
  /** As typed; matched on `account`, normalized by {@link normalizeUsername} like login and lockout. */
  username?: string | undefined;
  userId?: string | undefined;
  /** A host address (`ip = …`) or a CIDR block (`ip <<= …`), normalized. */
  ip?: { kind: 'address' | 'block'; value: string } | undefined;
  eventType?: string | undefined;
  outcome?: 'success' | 'failure' | undefined;
  deviceId?: string | undefined;
  /** Inclusive lower and exclusive upper bound on `occurred_at`, RFC 3339. */
  from?: string | undefined;
  to?: string | undefined;
}

/** One audit record as the security team reads it: the hashed fields, `details` parsed. */
export type EventView = Omit<ChainRecord, 'details'> & { details: unknown };

export const EVENT_COLUMNS: ReadonlyArray<keyof EventView> = [
  'seq', 'event_id', 'occurred_at', 'event_type', 'outcome', 'reason', 'username', 'user_id', 'ip',
  'user_agent', 'device_id', 'mfa_method', 'session_id', 'request_id', 'actor_id', 'details',
];

const SELECT = `SELECT seq, event_id::text AS event_id, ${sqlTimestamp('occurred_at')} AS occurred_at, event_type, outcome, reason,
       username, user_id::text AS user_id, host(ip) AS ip, user_agent, device_id, mfa_method, session_id::text AS session_id,
       request_id, actor_id::text AS actor_id, details::text AS details
  FROM audit_log`;

function where(filter: EventFilter, params: unknown[]): string {
  const conditions: string[] = [];
  const add = (sql: (p: string) => string, value: unknown): void => {
    params.push(value);
    conditions.push(sql(`$${params.length}`));
  };
  // Normalized here in JavaScript, never in SQL: PostgreSQL's btrim and lower differ from the gateway's (migration 007).
  if (filter.username !== undefined) add((p) => `account = ${p}`, normalizeUsername(filter.username));
  if (filter.userId !== undefined) add((p) => `user_id = ${p}::uuid`, filter.userId);
  if (filter.ip?.kind === 'address') add((p) => `ip = ${p}::inet`, filter.ip.value);
  if (filter.ip?.kind === 'block') add((p) => `ip <<= ${p}::inet`, filter.ip.value);
  if (filter.eventType !== undefined) add((p) => `event_type = ${p}`, filter.eventType);
  if (filter.outcome !== undefined) add((p) => `outcome = ${p}`, filter.outcome);
  if (filter.deviceId !== undefined) add((p) => `device_id = ${p}`, filter.deviceId);
  if (filter.from !== undefined) add((p) => `occurred_at >= ${p}::timestamptz`, filter.from);
  if (filter.to !== undefined) add((p) => `occurred_at < ${p}::timestamptz`, filter.to);
  return conditions.length > 0 ? conditions.join(' AND ') : 'true';
}

const toView = (row: Omit<EventView, 'details'> & { details: string | null }): EventView => ({
  ...row,
  details: row.details === null ? null : (JSON.parse(row.details) as unknown),
});

/** Newest first; `beforeSeq` continues after the last record of a previous page (keyset). */
export async function findEvents(db: Pick<Queryable, 'query'>, filter: EventFilter, page: { beforeSeq?: number | undefined; limit: number }): Promise<EventView[]> {
  const params: unknown[] = [];
  let condition = where(filter, params);
  if (page.beforeSeq !== undefined) {
    params.push(page.beforeSeq);
    condition += ` AND seq < $${params.length}`;
  }
  params.push(page.limit);
  const { rows } = await db.query<Omit<EventView, 'details'> & { details: string | null }>(
    `${SELECT} WHERE ${condition} ORDER BY seq DESC LIMIT $${params.length}`,
    params,
  );
  return rows.map(toView);
}

/** One page of {@link findEvents} and, when more records match, the seq the next page continues before. */
export async function findEventPage(
  db: Pick<Queryable, 'query'>,
  filter: EventFilter,
  page: { beforeSeq?: number | undefined; limit: number },
): Promise<{ items: EventView[]; nextBeforeSeq: number | undefined }> {
  const rows = await findEvents(db, filter, { beforeSeq: page.beforeSeq, limit: page.limit + 1 });
  const items = rows.slice(0, page.limit);
  return { items, nextBeforeSeq: rows.length > page.limit ? items[items.length - 1]!.seq : undefined };
}

/** Every matching record, newest first, a page at a time: exports never hold the result in memory. */
export async function* streamEvents(db: Pick<Queryable, 'query'>, filter: EventFilter, pageSize = 1000): AsyncGenerator<EventView[]> {
  let beforeSeq: number | undefined;
  for (;;) {
    const page = await findEvents(db, filter, { beforeSeq, limit: pageSize });
    if (page.length > 0) yield page;
    if (page.length < pageSize) return;
    beforeSeq = page[page.length - 1]!.seq;
  }
}

export interface Summary {
  from: string;
  to: string;
  bucket: 'hour' | 'day';
  /** Login attempts per bucket and outcome. */
  buckets: Array<{ start: string; success: number; failure: number }>;
  /** Addresses with the most failed logins. */
  top_failing_ips: Array<{ ip: string; failures: number }>;
  /** Accounts (normalized usernames) attacked from the most distinct addresses. */
  most_targeted_usernames: Array<{ username: string; distinct_ips: number; failures: number }>;
  /** Addresses that tried the most distinct accounts: password spraying. */
  spraying_ips: Array<{ ip: string; distinct_usernames: number; failures: number }>;
  /** Every record of the range (not only logins), counted by event type and outcome. */
  by_event_type: Array<{ event_type: string; outcome: 'success' | 'failure'; count: number }>;
}

const LOGIN_EVENTS = `event_type IN ('login.succeeded', 'login.failed')`;

/** Dashboard figures for login attempts in [from, to). */
export async function summarizeLogins(db: Pick<Queryable, 'query'>, range: { from: string; to: string; bucket: 'hour' | 'day'; top: number }): Promise<Summary> {
  const window = `occurred_at >= $1::timestamptz AND occurred_at < $2::timestamptz AND ${LOGIN_EVENTS}`;
  const base = [range.from, range.to];
  const [buckets, ips, targeted, spraying, types] = await Promise.all([
    db.query<{ start: string; success: number; failure: number }>(
      `SELECT ${sqlTimestamp(`date_trunc('${range.bucket}', occurred_at, 'UTC')`)} AS start,
              count(*) FILTER (WHERE outcome = 'success')::int AS success, count(*) FILTER (WHERE outcome = 'failure')::int AS failure
         FROM audit_log WHERE ${window} GROUP BY 1 ORDER BY 1`,
      base,
    ),
    db.query<{ ip: string; failures: number }>(
      `SELECT host(ip) AS ip, count(*)::int AS failures FROM audit_log WHERE ${window} AND outcome = 'failure' AND ip IS NOT NULL
        GROUP BY ip ORDER BY failures DESC, ip LIMIT $3`,
      [...base, range.top],
    ),
    db.query<{ username: string; distinct_ips: number; failures: number }>(
      `SELECT account AS username, count(DISTINCT ip)::int AS distinct_ips, count(*)::int AS failures
         FROM audit_log WHERE ${window} AND outcome = 'failure' AND account IS NOT NULL
        GROUP BY account ORDER BY distinct_ips DESC, failures DESC, account LIMIT $3`,
      [...base, range.top],
    ),
    db.query<{ ip: string; distinct_usernames: number; failures: number }>(
      `SELECT host(ip) AS ip, count(DISTINCT account)::int AS distinct_usernames, count(*)::int AS failures
         FROM audit_log WHERE ${window} AND outcome = 'failure' AND ip IS NOT NULL AND account IS NOT NULL
        GROUP BY ip ORDER BY distinct_usernames DESC, failures DESC, ip LIMIT $3`,
      [...base, range.top],
    ),
    db.query<{ event_type: string; outcome: 'success' | 'failure'; count: number }>(
      `SELECT event_type, outcome, count(*)::int AS count FROM audit_log
        WHERE occurred_at >= $1::timestamptz AND occurred_at < $2::timestamptz GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2`,
      base,
    ),
  ]);
  return {
    from: range.from,
    to: range.to,
    bucket: range.bucket,
    buckets: buckets.rows,
    top_failing_ips: ips.rows,
    most_targeted_usernames: targeted.rows,
    spraying_ips: spraying.rows,
    by_event_type: types.rows,
  };
}
