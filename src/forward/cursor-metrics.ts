import { Gauge, type Registry } from 'prom-client';
import { readCursors, readHeadSeq } from '../audit/follow.js';
import type { Queryable } from '../db/database.js';

/**
 * Per-sink cursor and lag gauges read from `audit_cursors` (`forward:<sink>`) and the log's head,
 * for the forwarder's own /metrics and the gateway's: any process that reaches the database shows
 * where each sink has got to, whichever forwarder is active. Two small queries, run at most once
 * per `cacheMs` however often Prometheus scrapes.
 */
export function registerForwardCursorGauges(registry: Registry, db: Pick<Queryable, 'query'>, cacheMs: number, knownSinks: readonly string[] = []): void {
  let cached: { at: number; value: Promise<{ head: number; cursors: Map<string, number> }> } | undefined;
  const read = () => {
    const now = Date.now();
    if (!cached || now - cached.at >= cacheMs) {
      const value = Promise.all([readHeadSeq(db), readCursors(db, 'forward:')]).then(([head, cursors]) => {
        // A configured sink that has delivered nothing yet has no row: its cursor is 0.
        for (const sink of knownSinks) if (!cursors.has(`forward:${sink}`)) cursors.set(`forward:${sink}`, 0);
        return { head, cursors };
      });
      cached = { at: now, value };
      // A failed read is not kept: the next scrape tries again.
      value.catch(() => {
        if (cached?.value === value) cached = undefined;
      });
    }
    return cached.value;
  };
  new Gauge({
    name: 'authtrail_forward_cursor_seq',
    help: 'seq of the last record the sink has delivered (its cursor in audit_cursors).',
    labelNames: ['sink'] as const,
    registers: [registry],
    async collect() {
      const state = await read().catch(() => undefined);
      for (const [name, seq] of state?.cursors ?? []) this.set({ sink: name.slice('forward:'.length) }, seq);
    },
  });
  new Gauge({
    name: 'authtrail_forward_lag_records',
    help: 'Records committed to the audit log and not yet delivered to the sink (head seq minus cursor).',
    labelNames: ['sink'] as const,
    registers: [registry],
    async collect() {
      const state = await read().catch(() => undefined);
      for (const [name, seq] of state?.cursors ?? []) this.set({ sink: name.slice('forward:'.length) }, Math.max(0, state!.head - seq));
    },
  });
}
