import type { Queryable } from '../db/database.js';

/**
 * Alerts as the security API shows them, read from the log itself: an alert is its `alert.raised`
 * record, and it is resolved once an `alert.resolved` record names its id. Nothing else stores
 * alert state, so the list is exactly what the tamper-evident log says. Both record types are
 * found through the index on (event_type, seq DESC) of migration 006; resolutions are few (each
 * is a person's action), so they are read whole and joined by hash.
 */

export type AlertStatus = 'open' | 'resolved' | 'all';

export interface AlertResolution {
  seq: number;
  resolved_at: string;
  actor_id: string | null;
  note: string | null;
}

export interface AlertView {
  id: string;
  seq: number;
  raised_at: string;
  rule: string;
  severity: string;
  key: string;
  status: 'open' | 'resolved';
  /** The `alert.raised` record's details: counts, seqs, the rule's own members. */
  details: Record<string, unknown>;
  resolution: AlertResolution | null;
}

interface Row {
  seq: number;
  raised_at: string;
  details: string;
  resolved_seq: number | null;
  resolved_at: string | null;
  resolved_by: string | null;
  resolution: string | null;
}

const TIME = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

const SELECT_ALERTS = `
  WITH resolved AS (
    SELECT DISTINCT ON (details->>'alert_id') details->>'alert_id' AS alert_id, seq, occurred_at, actor_id, details
      FROM audit_log WHERE event_type = 'alert.resolved'
     ORDER BY details->>'alert_id', seq)
  SELECT r.seq, ${TIME('r.occurred_at')} AS raised_at, r.details::text AS details,
         s.seq AS resolved_seq, ${TIME('s.occurred_at')} AS resolved_at, s.actor_id::text AS resolved_by, s.details::text AS resolution
    FROM audit_log r LEFT JOIN resolved s ON s.alert_id = r.details->>'alert_id'
   WHERE r.event_type = 'alert.raised'`;

function viewOf(row: Row): AlertView {
  const details = JSON.parse(row.details) as Record<string, unknown>;
  const resolution = row.resolution === null ? null : (JSON.parse(row.resolution) as { note?: unknown });
  return {
    id: String(details.alert_id),
    seq: row.seq,
    raised_at: row.raised_at,
    rule: String(details.rule),
    severity: String(details.severity),
    key: String(details.key),
    status: row.resolved_seq === null ? 'open' : 'resolved',
    details,
    resolution:
      row.resolved_seq === null
        ? null
        : { seq: row.resolved_seq, resolved_at: row.resolved_at!, actor_id: row.resolved_by, note: typeof resolution?.note === 'string' ? resolution.note : null },
  };
}

/** A page of alerts, newest first, before `beforeSeq`; `nextBeforeSeq` when more follow. */
export async function findAlertPage(
  db: Pick<Queryable, 'query'>,
  filter: { rule?: string | undefined; status: AlertStatus },
  page: { beforeSeq?: number | undefined; limit: number },
): Promise<{ items: AlertView[]; nextBeforeSeq: number | undefined }> {
  const status = filter.status === 'open' ? ' AND s.seq IS NULL' : filter.status === 'resolved' ? ' AND s.seq IS NOT NULL' : '';
  const { rows } = await db.query<Row>(
    `${SELECT_ALERTS} AND ($1::text IS NULL OR r.reason = $1) AND ($2::bigint IS NULL OR r.seq < $2)${status}
     ORDER BY r.seq DESC LIMIT $3`,
    [filter.rule ?? null, page.beforeSeq ?? null, page.limit + 1],
  );
  const items = rows.slice(0, page.limit).map(viewOf);
  return { items, nextBeforeSeq: rows.length > page.limit ? items[items.length - 1]!.seq : undefined };
}

/** The alert with this id, or undefined. */
export async function findAlert(db: Pick<Queryable, 'query'>, id: string): Promise<AlertView | undefined> {
  const { rows } = await db.query<Row>(`${SELECT_ALERTS} AND r.details->>'alert_id' = $1 ORDER BY r.seq LIMIT 1`, [id]);
  return rows[0] ? viewOf(rows[0]) : undefined;
}
