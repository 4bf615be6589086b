import type { Queryable } from '../db/database.js';
import { sqlTimestamp } from '../audit/clock.js';
import { USER_CHANGE_EVENT_TYPES } from '../audit/vocabulary.js';
import type {
  Actor,
  Alert,
  EventCount,
  Listing,
  LockoutCleared,
  LockoutStarted,
  LogRead,
  LoginAttempts,
  ReportData,
  UserChange,
} from './model.js';

/**
 * The activity part of the compliance report: what the audit log says happened in [from, to).
 * Read straight from `audit_log` with parameterized SQL; each list picks its columns and the
 * `details` members it shows (never `details` whole). Counts come from one GROUP BY, so every
 * list's `count` is exact even when its rows are cut at `maxRows`. Records archived out of the
 * database are not in them: `records.complete` says when the period reaches into the archive.
 */

/** Sign-in attempts: a password or second factor checked at login. */
export const LOGIN_EVENT_TYPES = ['login.succeeded', 'login.failed', 'login.mfa_required', 'mfa.replayed'] as const;


/** Reads of the log itself (the security API, exports, earlier reports). */
export const LOG_READ_EVENT_TYPES = ['audit.queried', 'audit.exported'] as const;

/** Raised by the gateway's alerting; counted by event type alone, whatever its details. */
export const ALERT_EVENT_TYPE = 'alert.raised';

/** The period's bounds as PostgreSQL reads them, in the chain's UTC format; throws a TypeError when `from` is not before `to`. */
export async function normalizePeriod(db: Pick<Queryable, 'query'>, from: string, to: string): Promise<{ from: string; to: string }> {
  const { rows } = await db.query<{ from: string; to: string; ordered: boolean }>(
    `SELECT ${sqlTimestamp('$1::timestamptz')} AS "from", ${sqlTimestamp('$2::timestamptz')} AS "to", $1::timestamptz < $2::timestamptz AS ordered`,
    [from, to],
  );
  const row = rows[0]!;
  if (!row.ordered) throw new TypeError('--from must be before --to');
  return { from: row.from, to: row.to };
}

const WINDOW = 'occurred_at >= $1::timestamptz AND occurred_at < $2::timestamptz';

/** Text of a `details` member as SQL (`->>` works on the `json` column). */
const detail = (name: string): string => `details->>'${name}'`;

/** A JSON array of strings stored in details, or null for anything else. */
function stringArray(text: string | null): string[] | null {
  if (text === null) return null;
  try {
    const value = JSON.parse(text) as unknown;
    return Array.isArray(value) && value.every((v) => typeof v === 'string') ? value : null;
  } catch {
    return null;
  }
}

type Rows<T> = Promise<{ rows: T[] }>;

export type Activity = Omit<ReportData, 'format' | 'log_origin' | 'generated_at' | 'integrity' | 'recorded_as'>;

/**
 * Reads the period's activity. `maxRows` bounds each list; counts are exact. Actor ids are
 * named by the username the log itself last recorded for that user id (so this needs no access
 * to the users table: an auditor's read-only login is enough).
 */
export async function collectActivity(db: Pick<Queryable, 'query'>, period: { from: string; to: string }, maxRows: number): Promise<Activity> {
  const base = [period.from, period.to];
  const listed = <T>(sql: string, types: readonly string[]): Rows<T> =>
    db.query<T>(`${sql} WHERE ${WINDOW} AND event_type = ANY($3::text[]) ORDER BY seq LIMIT $4`, [...base, types, maxRows]);

  // One after another: inside the snapshot's transaction they share one connection anyway.
  const totals = await db.query<{ count: number; first_seq: number | null; last_seq: number | null }>(
    `SELECT count(*)::int AS count, min(seq) AS first_seq, max(seq) AS last_seq FROM public.audit_log WHERE ${WINDOW}`,
    base,
  );
  const byType = await db.query<EventCount>(
    `SELECT event_type, count(*) FILTER (WHERE outcome = 'success')::int AS success, count(*) FILTER (WHERE outcome = 'failure')::int AS failure,
            count(*)::int AS total
       FROM public.audit_log WHERE ${WINDOW} GROUP BY event_type ORDER BY event_type`,
    base,
  );
  const mfa = await db.query<{ mfa_method: string | null; success: number; failure: number }>(
    `SELECT mfa_method, count(*) FILTER (WHERE outcome = 'success')::int AS success, count(*) FILTER (WHERE outcome = 'failure')::int AS failure
       FROM public.audit_log WHERE ${WINDOW} AND event_type = ANY($3::text[]) GROUP BY mfa_method ORDER BY mfa_method NULLS FIRST`,
    [...base, LOGIN_EVENT_TYPES],
  );
  const reasons = await db.query<{ reason: string | null; count: number }>(
    `SELECT reason, count(*)::int AS count FROM public.audit_log WHERE ${WINDOW} AND event_type = ANY($3::text[]) AND outcome = 'failure'
      GROUP BY reason ORDER BY count DESC, reason NULLS FIRST`,
    [...base, LOGIN_EVENT_TYPES],
  );
  const started = await listed<LockoutStarted>(
    `SELECT seq, ${sqlTimestamp('occurred_at')} AS occurred_at, username, host(ip) AS ip, ${detail('failures')} AS failures,
            ${detail('lock_count')} AS lock_count, ${detail('locked_until')} AS locked_until FROM public.audit_log`,
    ['lockout.started'],
  );
  const cleared = await listed<Omit<LockoutCleared, 'actor'>>(
    `SELECT seq, ${sqlTimestamp('occurred_at')} AS occurred_at, username, actor_id::text AS actor_id, ${detail('was_locked')} AS was_locked,
            ${detail('via')} AS via FROM public.audit_log`,
    ['lockout.cleared'],
  );
  const changes = await listed<Omit<UserChange, 'actor' | 'roles' | 'roles_from' | 'roles_to'> & { roles: string | null; roles_from: string | null; roles_to: string | null }>(
    `SELECT seq, ${sqlTimestamp('occurred_at')} AS occurred_at, event_type, username, user_id::text AS user_id, reason,
            actor_id::text AS actor_id, ${detail('via')} AS via, (details->'roles')::text AS roles, (details->'from')::text AS roles_from,
            (details->'to')::text AS roles_to FROM public.audit_log`,
    USER_CHANGE_EVENT_TYPES,
  );
  const reads = await listed<Omit<LogRead, 'actor'>>(
    `SELECT seq, ${sqlTimestamp('occurred_at')} AS occurred_at, event_type, actor_id::text AS actor_id, host(ip) AS ip,
            ${detail('resource')} AS resource, (details->'filters')::text AS filters,
            coalesce(${detail('returned')}, ${detail('rows')}, ${detail('records')}) AS returned, ${detail('via')} AS via FROM public.audit_log`,
    LOG_READ_EVENT_TYPES,
  );
  const alerts = await listed<Alert>(
    `SELECT seq, ${sqlTimestamp('occurred_at')} AS occurred_at, outcome, reason, username, host(ip) AS ip FROM public.audit_log`,
    [ALERT_EVENT_TYPE],
  );
  const archived = await archivedPart(db, period);

  const actorIds = [...new Set([...cleared.rows, ...changes.rows, ...reads.rows].map((r) => r.actor_id).filter((id): id is string => id !== null))];
  const names = await actorNames(db, actorIds);
  const withActor = <T extends { actor_id: string | null }>(row: T): T & Actor => ({ ...row, actor: row.actor_id === null ? null : (names.get(row.actor_id) ?? null) });

  const counts = new Map(byType.rows.map((r) => [r.event_type, r.total]));
  const countOf = (types: readonly string[]): number => types.reduce((sum, type) => sum + (counts.get(type) ?? 0), 0);
  const listing = <T>(types: readonly string[], rows: T[]): Listing<T> => {
    const count = countOf(types);
    return { count, truncated: rows.length < count, rows };
  };

  const loginByType = byType.rows.filter((r) => (LOGIN_EVENT_TYPES as readonly string[]).includes(r.event_type));
  const login: LoginAttempts = {
    event_types: LOGIN_EVENT_TYPES,
    total: loginByType.reduce((s, r) => s + r.total, 0),
    success: loginByType.reduce((s, r) => s + r.success, 0),
    failure: loginByType.reduce((s, r) => s + r.failure, 0),
    by_mfa_method: mfa.rows,
    by_event_type: loginByType,
    failure_reasons: reasons.rows,
  };
  const total = totals.rows[0]!;

  return {
    period,
    records: {
      count: total.count,
      first_seq: total.first_seq,
      last_seq: total.last_seq,
      head_seq_at_end: archived.headSeqAtEnd,
      archived: archived.through,
      complete: archived.complete,
    },
    events: byType.rows,
    login_attempts: login,
    lockouts: {
      started: listing(['lockout.started'], started.rows),
      cleared: listing(['lockout.cleared'], cleared.rows.map(withActor)),
    },
    user_changes: listing(
      USER_CHANGE_EVENT_TYPES,
      changes.rows.map((r) => withActor({ ...r, roles: stringArray(r.roles), roles_from: stringArray(r.roles_from), roles_to: stringArray(r.roles_to) })),
    ),
    log_reads: listing(LOG_READ_EVENT_TYPES, reads.rows.map(withActor)),
    alerts: listing([ALERT_EVENT_TYPE], alerts.rows),
  };
}

/**
 * What of the log is archived (docs/archives.md), and whether the period is wholly in the database.
 * `occurred_at` never decreases along seq, so every record of the period is in the database when
 * the period starts after the archive's last record. The log's last record before the period's end
 * is in the database, or else in the archive: the end of the segment holding it.
 */
async function archivedPart(
  db: Pick<Queryable, 'query'>,
  period: { from: string; to: string },
): Promise<{ through: { through_seq: number; through_occurred_at: string } | null; complete: boolean; headSeqAtEnd: number }> {
  const { rows } = await db.query<{ through_seq: number | null; through_occurred_at: string | null; overlaps: boolean | null; head: number | null }>(
    `SELECT a.last_seq AS through_seq, ${sqlTimestamp('a.last_occurred_at')} AS through_occurred_at, $1::timestamptz <= a.last_occurred_at AS overlaps,
            coalesce((SELECT max(seq) FROM public.audit_log WHERE occurred_at < $2::timestamptz),
                     (SELECT min(last_seq) FROM public.audit_archives WHERE last_occurred_at >= $2::timestamptz),
                     a.last_seq) AS head
       FROM (SELECT 1) AS one LEFT JOIN (SELECT last_seq, last_occurred_at FROM public.audit_archives ORDER BY last_seq DESC LIMIT 1) AS a ON true`,
    [period.from, period.to],
  );
  const row = rows[0]!;
  const through = row.through_seq === null ? null : { through_seq: row.through_seq, through_occurred_at: row.through_occurred_at! };
  return { through, complete: row.overlaps !== true, headSeqAtEnd: row.head ?? 0 };
}

/** The username the log last recorded for each user id (records naming that user), where it has one. */
async function actorNames(db: Pick<Queryable, 'query'>, ids: readonly string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const { rows } = await db.query<{ user_id: string; username: string }>(
    `SELECT DISTINCT ON (user_id) user_id::text AS user_id, username FROM public.audit_log
      WHERE user_id = ANY($1::uuid[]) AND username IS NOT NULL ORDER BY user_id, seq DESC`,
    [ids],
  );
  return new Map(rows.map((r) => [r.user_id, r.username]));
}
