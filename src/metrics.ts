import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AlertEngine } from './alerts/engine.js';
import { RULE_NAMES } from './alerts/rules.js';
import type { WebhookDelivery } from './alerts/webhook.js';
import type { ChainWriter } from './audit/chain-writer.js';
import { WITNESS_REFUSAL_METRIC_REASONS, type WitnessPusher } from './audit/witness-push.js';
import type { LockoutService } from './lockout/lockout-service.js';
import type { Queryable } from './db/database.js';
import { registerForwardCursorGauges } from './forward/cursor-metrics.js';

/**
 * Prometheus metrics (`GET /metrics`): decisions by event type and outcome, current lockouts,
 * audit batch size and commit latency, the chain head, and whether Redis has failed over.
 * One registry per app, so several apps in one process (tests) do not collide.
 */
export function createMetrics(deps: {
  writer: ChainWriter;
  lockout: LockoutService;
  witnesses?: WitnessPusher | undefined;
  db?: Pick<Queryable, 'query'> | undefined;
  /** The audit log's partition check (src/audit/partitions.ts). */
  partitions?: { defaultRows(): number | undefined } | undefined;
}): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'authtrail_' });

  const events = new Counter({
    name: 'authtrail_audit_events_total',
    help: 'Audit records committed, by event type and outcome (every authentication decision is one).',
    labelNames: ['event_type', 'outcome'] as const,
    registers: [registry],
  });
  const batchSize = new Histogram({
    name: 'authtrail_audit_batch_size',
    help: 'Records per group-commit transaction.',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    registers: [registry],
  });
  const commitSeconds = new Histogram({
    name: 'authtrail_audit_commit_seconds',
    help: 'Time to append and commit one batch of audit records.',
    buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const head = new Gauge({ name: 'authtrail_audit_chain_head_seq', help: 'seq of the last record this instance committed.', registers: [registry] });

  deps.writer.onCommit((committedHead, batch) => {
    for (const r of batch.records) events.inc({ event_type: r.eventType, outcome: r.outcome });
    batchSize.observe(batch.count);
    commitSeconds.observe(batch.durationMs / 1000);
    head.set(committedHead.seq);
  });

  new Gauge({
    name: 'authtrail_lockouts_current',
    help: 'Accounts locked right now.',
    registers: [registry],
    async collect() {
      this.set((await deps.lockout.list().catch(() => [])).length);
    },
  });
  new Gauge({
    name: 'authtrail_redis_degraded',
    help: '1 while lockout counters run on this instance because Redis failed.',
    registers: [registry],
    collect() {
      this.set(deps.lockout.degraded ? 1 : 0);
    },
  });
  new Gauge({
    name: 'authtrail_audit_queue_length',
    help: 'Audit records waiting for their transaction.',
    registers: [registry],
    collect() {
      this.set(deps.writer.stats().queued);
    },
  });
  if (deps.witnesses) witnessMetrics(registry, deps.witnesses);
  // Where each SIEM sink of npm run audit:forward has got to (audit_cursors), read at most every 5 s.
  if (deps.db) registerForwardCursorGauges(registry, deps.db, 5000);
  const partitions = deps.partitions;
  if (partitions) {
    new Gauge({
      name: 'authtrail_audit_default_partition_rows',
      help: 'Audit records in the DEFAULT partition of audit_log (no partition for their month; up to 10,000 counted): above 0 is an alarm (docs/archives.md).',
      registers: [registry],
      collect() {
        const rows = partitions.defaultRows();
        if (rows !== undefined) this.set(rows);
      },
    });
  }
  return registry;
}

/** Per witness: the largest checkpoint size it cosigned (as stored), and its refusals by reason. */
function witnessMetrics(registry: Registry, witnesses: WitnessPusher): void {
  new Gauge({
    name: 'authtrail_witness_cosigned_size',
    help: 'Largest checkpoint size (tree size) whose cosignature by the witness is stored.',
    labelNames: ['witness'] as const,
    registers: [registry],
    async collect() {
      const report = await witnesses.report().catch(() => undefined);
      for (const w of report?.witnesses ?? []) this.set({ witness: w.name }, w.cosigned_size);
    },
  });
  const refusals = new Counter({
    name: 'authtrail_witness_refusals_total',
    help: 'Checkpoints a witness refused (rollback, fork, inconsistent, rejected), and cosignatures refused because they did not verify (invalid_cosignature).',
    labelNames: ['witness', 'reason'] as const,
    registers: [registry],
  });
  // Every series exists from the start at 0, so an alert on increase() fires on the first refusal.
  for (const witness of witnesses.names) {
    for (const reason of WITNESS_REFUSAL_METRIC_REASONS) refusals.inc({ witness, reason }, 0);
  }
  witnesses.onRefusal((witness, reason) => refusals.inc({ witness, reason }));
}

/**
 * The alert engine's metrics, registered once it runs (runtime.ts): alerts raised by rule, its lag behind the head of the log, whether this instance leads, webhook failures.
 */
export function alertMetrics(registry: Registry, engine: AlertEngine, webhook?: WebhookDelivery): void {
  const raised = new Counter({
    name: 'authtrail_alerts_raised_total',
    help: 'Alerts this instance raised (as alert.raised records), by rule.',
    labelNames: ['rule'] as const,
    registers: [registry],
  });
  engine.onRaised((rule) => raised.inc({ rule }));
  // Every series exists from the start at 0, so an alert on increase() fires on the first one.
  for (const rule of RULE_NAMES) raised.inc({ rule }, 0);
  new Gauge({
    name: 'authtrail_alert_engine_lag_records',
    help: 'Records committed to the log that the alert engine has not judged yet (0 on an instance that does not lead).',
    registers: [registry],
    async collect() {
      this.set(await engine.lag().catch(() => 0));
    },
  });
  new Gauge({
    name: 'authtrail_alert_engine_leading',
    help: '1 while this instance holds the alerts lease and evaluates the rules.',
    registers: [registry],
    collect() {
      this.set(engine.stats().leading ? 1 : 0);
    },
  });
  const failures = new Counter({
    name: 'authtrail_alert_webhook_failures_total',
    help: 'Failed alert webhook attempts (network, timeout, non-2xx status) and alerts dropped from a full queue.',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  for (const reason of ['network', 'timeout', 'status', 'dropped']) failures.inc({ reason }, 0);
  webhook?.onFailure((reason) => failures.inc({ reason }));
}
