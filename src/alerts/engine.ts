import crypto from 'node:crypto';
import os from 'node:os';
import type { Logger } from 'pino';
import type { ChainWriter } from '../audit/chain-writer.js';
import { FollowGapError, LeaseLostError, follow, lead, readHeadSeq, readRecordsAfter, saveCursor, type Lease, type StoredRecord } from '../audit/follow.js';
import type { Queryable } from '../db/database.js';
import { AlertEvaluator, MAX_ALERT_SEQS, type Trigger } from './evaluate.js';
import { longestSuppressSeconds, longestWindowSeconds, type AlertRules, type RuleName, type Severity } from './rules.js';
import type { WebhookDelivery } from './webhook.js';

/**
 * The alert engine (docs/alerts.md): runs inside every gateway, but works in one per cluster — the
 * holder of the `alerts` lease (src/audit/follow.ts). The leader follows the log with the cursor
 * `alerts`, evaluates the rules as records arrive and writes each alert as an `alert.raised`
 * record through the gateway's chain writer, then hands it to the webhook. The cursor moves past a
 * page only once its alerts are committed, so a crash repeats work rather than losing alerts, and
 * a new leader learns from the `alert.raised` records already in the log not to repeat them.
 */

/** The cursor and lease this engine uses. */
export const ALERT_CURSOR = 'alerts';
export const ALERT_LEASE = 'alerts';

/**
 * For each successful login of a page (`seq`, `user_id`, `device_id`): whether the user had a
 * successful login before it, and one with this device id (or, for a login without one, one
 * without). One statement per page; for each login each EXISTS is an index scan of migration 006
 * (`device_id` or `user_id`, both `…, seq DESC`) that stops at its first row — never a scan of the
 * log (test/integration/alerts.test.ts checks the plan). Earlier logins of the same page count:
 * they are committed, and `seq <` orders them.
 */
export const NEW_DEVICE_SQL = `
  SELECT q.seq,
         CASE WHEN q.device_id IS NULL
              THEN EXISTS (SELECT 1 FROM audit_log a
                            WHERE a.user_id = q.user_id AND a.device_id IS NULL AND a.event_type = 'login.succeeded' AND a.seq < q.seq)
              ELSE EXISTS (SELECT 1 FROM audit_log a
                            WHERE a.device_id = q.device_id AND a.user_id = q.user_id AND a.event_type = 'login.succeeded' AND a.seq < q.seq)
         END AS seen,
         EXISTS (SELECT 1 FROM audit_log a WHERE a.user_id = q.user_id AND a.event_type = 'login.succeeded' AND a.seq < q.seq) AS earlier
    FROM unnest($1::bigint[], $2::uuid[], $3::text[]) AS q(seq, user_id, device_id)`;

export interface AlertEngineOptions {
  db: Pick<Queryable, 'query'>;
  writer: ChainWriter;
  rules: AlertRules;
  logger: Logger;
  /** Wait between polls once caught up. */
  pollIntervalMs: number;
  /** How long the lease lasts without renewal: a stopped leader is replaced after at most this. Default 10 s. */
  leaseTtlMs?: number;
  /** Most records read at once. Default 500. */
  pageSize?: number;
  webhook?: WebhookDelivery | undefined;
  /** This process in the lease row. Default: host, pid and a random suffix. */
  holder?: string;
}

export interface AlertEngineStats {
  leading: boolean;
  /** The last record this engine has judged (0 before it led). */
  processedSeq: number;
  raised: number;
}

export interface AlertEngine {
  /** Called after each alert is committed. */
  onRaised(listener: (rule: RuleName, severity: Severity) => void): void;
  stats(): AlertEngineStats;
  /** Records in the log this engine has yet to judge while it leads; 0 on a standby. */
  lag(): Promise<number>;
  /** Stops following, releases the lease, and gives the webhook a moment to finish. */
  close(): Promise<void>;
}

/** The engine stopped (shutdown or lost lease) in the middle of a page: the page is not done. */
class EngineStopped extends Error {
  constructor() {
    super('the alert engine stopped before the page was done');
    this.name = 'EngineStopped';
  }
}

const WARM_PAGE = 1000;

export function startAlertEngine(options: AlertEngineOptions): AlertEngine {
  const { db, writer, rules, logger } = options;
  const holder = options.holder ?? `${os.hostname()}:${process.pid}:${crypto.randomBytes(4).toString('hex')}`;
  const stop = new AbortController();
  const listeners: Array<(rule: RuleName, severity: Severity) => void> = [];
  const state: AlertEngineStats = { leading: false, processedSeq: 0, raised: 0 };

  /** The cursor; on the very first start, the head: history before the engine existed raises nothing. */
  async function startingPoint(lease: Lease): Promise<number> {
    const { rows } = await db.query<{ seq: number }>('SELECT seq FROM audit_cursors WHERE name = $1', [ALERT_CURSOR]);
    if (rows[0]) return rows[0].seq;
    const head = await readHeadSeq(db);
    await saveCursor(db, lease, ALERT_CURSOR, head);
    logger.info({ head_seq: head }, 'alert engine starts at the head of the log');
    return head;
  }

  /**
   * Re-reads the records of the longest window up to the cursor into fresh windows, raising
   * nothing, and learns which rules and keys recent alerts keep quiet.
   */
  async function warm(evaluator: AlertEvaluator, cursor: number, signal: AbortSignal): Promise<void> {
    if (cursor === 0) return;
    const { rows } = await db.query<{ at: string }>(`SELECT occurred_at::text AS at FROM audit_log WHERE seq = $1`, [cursor]);
    const at = rows[0]?.at;
    if (at === undefined) return;
    const windowSeconds = longestWindowSeconds(rules);
    const alerts = await db.query<{ details: string | null }>(
      `SELECT details::text AS details FROM audit_log
        WHERE event_type = 'alert.raised' AND occurred_at > $1::timestamptz - $2 * interval '1 second' ORDER BY seq`,
      [at, longestSuppressSeconds(rules)],
    );
    for (const r of alerts.rows) evaluator.learnFromAlert(r);
    if (windowSeconds === 0) return;
    const first = await db.query<{ seq: number | null }>(
      `SELECT min(seq) AS seq FROM audit_log WHERE occurred_at > $1::timestamptz - $2 * interval '1 second' AND seq <= $3`,
      [at, windowSeconds, cursor],
    );
    let after = (first.rows[0]?.seq ?? cursor + 1) - 1;
    let warmed = 0;
    while (after < cursor && !signal.aborted) {
      const records = await readRecordsAfter(db, after, Math.min(WARM_PAGE, cursor - after));
      if (records.length === 0) break;
      for (const r of records) evaluator.observe(r, { warm: true });
      warmed += records.length;
      after = records[records.length - 1]!.seq;
    }
    logger.info({ cursor, warmed }, 'alert engine windows warmed');
  }

  /** The seqs of the page's successful logins from a device their user never logged in from before. */
  async function newDevices(records: readonly StoredRecord[]): Promise<Set<number>> {
    const rule = rules.new_device;
    const asked = records.filter((r) => r.event_type === 'login.succeeded' && r.user_id !== null && (r.device_id !== null || !rule.ignoreMissingDevice));
    if (!rule.enabled || asked.length === 0) return new Set();
    const { rows } = await db.query<{ seq: number; seen: boolean; earlier: boolean }>(NEW_DEVICE_SQL, [
      asked.map((r) => r.seq),
      asked.map((r) => r.user_id),
      asked.map((r) => r.device_id),
    ]);
    return new Set(rows.filter((row) => !row.seen && (row.earlier || !rule.ignoreFirstLogin)).map((row) => row.seq));
  }

  function newDeviceTrigger(r: StoredRecord): Trigger {
    return {
      rule: 'new_device',
      key: r.account ?? r.user_id!,
      count: 1,
      records: 1,
      seqs: [r.seq],
      seqsTruncated: false,
      firstSeq: r.seq,
      lastSeq: r.seq,
      firstAt: r.occurred_at,
      lastAt: r.occurred_at,
      extra: { user_id: r.user_id, device_id: r.device_id },
    };
  }

  async function raise(trigger: Trigger): Promise<void> {
    const rule = rules[trigger.rule];
    const alertId = crypto.randomUUID();
    const details: Record<string, unknown> = {
      alert_id: alertId,
      rule: trigger.rule,
      severity: rule.severity,
      key: trigger.key,
      count: trigger.count,
      ...('threshold' in rule ? { threshold: rule.threshold, window_seconds: rule.windowSeconds } : {}),
      records: trigger.records,
      first_seq: trigger.firstSeq,
      last_seq: trigger.lastSeq,
      first_at: trigger.firstAt,
      last_at: trigger.lastAt,
      seqs: trigger.seqs.slice(0, MAX_ALERT_SEQS),
      seqs_truncated: trigger.seqsTruncated,
      ...trigger.extra,
    };
    const committed = await writer.recordEvent({ eventType: 'alert.raised', outcome: 'success', reason: trigger.rule, details }, { signal: null });
    state.raised += 1;
    logger.warn({ alert_id: alertId, rule: trigger.rule, severity: rule.severity, seq: committed.seq }, 'alert raised');
    for (const l of listeners) l(trigger.rule, rule.severity);
    options.webhook?.send(alertId, { event_type: 'alert.raised', seq: committed.seq, occurred_at: committed.occurredAt, details });
  }

  async function work(lease: Lease, signal: AbortSignal): Promise<void> {
    const cursor = await startingPoint(lease);
    const evaluator = new AlertEvaluator(rules);
    await warm(evaluator, cursor, signal);
    state.leading = true;
    state.processedSeq = cursor;
    logger.info({ cursor }, 'alert engine leading');
    try {
      await follow(
        db,
        { cursor: ALERT_CURSOR, lease, pageSize: options.pageSize ?? 500, idleMs: options.pollIntervalMs, signal },
        async (records) => {
          const fromNewDevice = await newDevices(records);
          const raising: Array<Promise<void>> = [];
          for (const r of records) {
            const triggers = evaluator.observe(r, { warm: false });
            if (fromNewDevice.has(r.seq)) {
              const trigger = newDeviceTrigger(r);
              if (!evaluator.isSuppressed('new_device', trigger.key, Date.parse(r.occurred_at))) triggers.push(trigger);
            }
            for (const trigger of triggers) {
              // Past the lease (or at shutdown) nothing more is raised: the page is judged again by whoever leads next.
              if (signal.aborted) throw new EngineStopped();
              // Queued now, in order, and committed together by the writer's group commit; the cursor
              // moves past the page only once all of them are committed (a failure repeats the page
              // under a fresh evaluator, so this suppression is never trusted without its record).
              const raised = raise(trigger);
              raised.catch(() => {}); // awaited below; handled here too in case the page stops first
              raising.push(raised);
              evaluator.noteRaised(trigger.rule, trigger.key, trigger.lastAt);
            }
          }
          await Promise.all(raising);
          state.processedSeq = records[records.length - 1]!.seq;
        },
      );
    } catch (err) {
      if (!(err instanceof FollowGapError)) throw err;
      // The engine was behind by more than the hot window (docs/archives.md): the records it had not
      // judged were archived, and alerts on them would come months late. It says so and goes on
      // from the first record still in the database; the next term starts there.
      await saveCursor(db, lease, ALERT_CURSOR, err.found - 1);
      logger.error({ missing_from: err.expected, next_in_database: err.found }, 'alert engine skipped records archived before it judged them');
    } finally {
      state.leading = false;
    }
  }

  const running = lead(
    db,
    {
      name: ALERT_LEASE,
      holder,
      ttlMs: options.leaseTtlMs ?? 10_000,
      signal: stop.signal,
      onLeading: (leading) => {
        if (!leading) state.leading = false;
      },
      onError: (err) => {
        if (err instanceof EngineStopped || err instanceof LeaseLostError) return;
        const e = err as { message?: string; code?: string };
        logger.warn({ err: { message: e.message, code: e.code } }, 'alert engine failed; it starts again from its cursor');
      },
    },
    work,
  );

  return {
    onRaised(listener) {
      listeners.push(listener);
    },
    stats: () => ({ ...state }),
    async lag() {
      if (!state.leading) return 0;
      return Math.max(0, (await readHeadSeq(db)) - state.processedSeq);
    },
    async close() {
      stop.abort();
      await running;
      await options.webhook?.close();
    },
  };
}
