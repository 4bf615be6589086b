/**
 * The monthly partitions of `audit_log` (migration 013, docs/archives.md). The gateway has the
 * partitions of the current month and of the next months made at start and every hour, so an
 * insert never depends on a partition made at the last moment; a record that still finds no
 * partition lands in the DEFAULT partition, which is reported as an alarm (log and metric) because
 * partitions after it can then no longer be archived. The archiver lists partitions from here.
 */
import type { Logger } from 'pino';
import type { Queryable } from '../db/database.js';

/** Months after the current one whose partitions exist ahead of time. */
export const PARTITION_MONTHS_AHEAD = 3;

/** One partition of audit_log and the time range it holds (`from` undefined: since the beginning). */
export interface AuditPartition {
  name: string;
  isDefault: boolean;
  /** Inclusive lower bound, ms since the epoch; undefined for MINVALUE (the legacy partition). */
  fromMs: number | undefined;
  /** Exclusive upper bound, ms since the epoch; undefined for the DEFAULT partition. */
  toMs: number | undefined;
}

const RANGE = /^FOR VALUES FROM \((MINVALUE|'[^']*')\) TO \((MAXVALUE|'[^']*')\)$/;

/** Every partition of audit_log with its bounds, oldest range first, the DEFAULT partition last. */
export async function listAuditPartitions(db: Pick<Queryable, 'query'>): Promise<AuditPartition[]> {
  const { rows } = await db.query<{ name: string; bound: string }>(
    `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'audit_log'::regclass`,
  );
  const partitions: AuditPartition[] = [];
  for (const { name, bound } of rows) {
    if (bound === 'DEFAULT') {
      partitions.push({ name, isDefault: true, fromMs: undefined, toMs: undefined });
      continue;
    }
    const match = RANGE.exec(bound);
    if (!match) throw new Error(`partition ${name} has an unexpected bound: ${bound}`);
    const literal = (text: string) => (text.startsWith("'") ? text.slice(1, -1) : null);
    // The bound's text is in this session's time zone and date style: let PostgreSQL read it back.
    const { rows: ms } = await db.query<{ from_ms: number | null; to_ms: number | null }>(
      `SELECT (extract(epoch FROM $1::timestamptz) * 1000)::float8 AS from_ms, (extract(epoch FROM $2::timestamptz) * 1000)::float8 AS to_ms`,
      [literal(match[1]!), literal(match[2]!)],
    );
    partitions.push({ name, isDefault: false, fromMs: ms[0]?.from_ms ?? undefined, toMs: ms[0]?.to_ms ?? undefined });
  }
  return partitions.sort((a, b) => (a.isDefault ? 1 : 0) - (b.isDefault ? 1 : 0) || (a.fromMs ?? -Infinity) - (b.fromMs ?? -Infinity));
}

/** What one run of {@link ensureAuditPartitions} did and found. */
export interface PartitionCheck {
  created: string[];
  /** Rows in the DEFAULT partition (counted up to 10,000): more than 0 is an alarm. */
  defaultRows: number;
}

/**
 * Has the partitions of the current UTC month and the `monthsAhead` next ones made (the database
 * function of migration 013, which the runtime role may call), and counts the rows of the DEFAULT
 * partition.
 */
export async function ensureAuditPartitions(db: Pick<Queryable, 'query'>, monthsAhead = PARTITION_MONTHS_AHEAD): Promise<PartitionCheck> {
  const { rows } = await db.query<{ name: string }>('SELECT name FROM audit_log_ensure_partitions($1) AS name', [monthsAhead]);
  const stray = await db.query<{ n: number }>('SELECT audit_log_default_rows()::int AS n');
  return { created: rows.map((r) => r.name), defaultRows: stray.rows[0]?.n ?? 0 };
}

/** The latest state, for the metric `authtrail_audit_default_partition_rows`. */
export interface PartitionMonitor {
  /** Rows in the DEFAULT partition at the last check; undefined before the first one succeeded. */
  defaultRows(): number | undefined;
  /** Runs one check now (also what start-up awaits). */
  check(): Promise<PartitionCheck | undefined>;
  stop(): void;
}

/**
 * Checks at once and then every `intervalMs`: creates what is missing (logged at info), and logs at
 * error level while the DEFAULT partition holds rows. A failed check is logged and retried at the
 * next tick; it never stops the gateway, since the DEFAULT partition still takes every record.
 */
export function startPartitionMaintenance(db: Pick<Queryable, 'query'>, logger: Logger, intervalMs = 3_600_000): PartitionMonitor {
  let last: number | undefined;
  const check = async (): Promise<PartitionCheck | undefined> => {
    try {
      const result = await ensureAuditPartitions(db);
      last = result.defaultRows;
      if (result.created.length > 0) logger.info({ partitions: result.created }, 'audit log partitions created');
      if (result.defaultRows > 0) {
        logger.error(
          { rows: result.defaultRows },
          'audit records are in the DEFAULT partition of audit_log (no partition for their month): later months cannot be archived until an operator moves them (docs/archives.md)',
        );
      }
      return result;
    } catch (err) {
      logger.error({ err: { message: (err as Error).message, code: (err as { code?: string }).code } }, 'audit log partition check failed');
      return undefined;
    }
  };
  const timer = setInterval(() => void check(), intervalMs);
  timer.unref();
  return { defaultRows: () => last, check, stop: () => clearInterval(timer) };
}
