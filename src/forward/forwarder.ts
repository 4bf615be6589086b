import type { Logger } from 'pino';
import { LeaseLostError, lead, type Lease } from '../audit/follow.js';
import type { Queryable } from '../db/database.js';
import { formatView, viewOf, type FormatContext } from './formats/index.js';
import { createHttpSink } from './http.js';
import type { ForwarderMetrics } from './metrics.js';
import { runSinkLoop } from './sink-loop.js';
import type { SinkConfig } from './sinks-file.js';
import type { Sink } from './sink.js';
import { createSyslogSink } from './syslog.js';

/**
 * The forwarder (`npm run audit:forward`): one active process per cluster, holding the
 * `forwarder` lease through follow.ts's `lead()`; the others stand by and take over when its lease
 * runs out (it was killed, or stalled). While it leads, every sink runs its own loop
 * (src/forward/sink-loop.ts) from its own cursor, so a sink that is down delays no other. It
 * reads committed records only: a login never waits for it.
 */

export interface ForwarderOptions {
  db: Pick<Queryable, 'query'>;
  sinks: readonly SinkConfig[];
  /** This process in the lease row (host and pid). */
  holder: string;
  leaseTtlMs: number;
  idleMs: number;
  /** Sinks allowed to skip records archived before they were delivered. */
  acceptGap: ReadonlySet<string>;
  context: FormatContext;
  logger: Logger;
  metrics?: ForwarderMetrics | undefined;
  signal: AbortSignal;
  env?: NodeJS.ProcessEnv;
}

export const FORWARDER_LEASE = 'forwarder';

function createSink(config: SinkConfig, context: FormatContext, env: NodeJS.ProcessEnv | undefined): Sink {
  return config.type === 'http' ? createHttpSink(config, { hostname: context.hostname, env }) : createSyslogSink(config, { hostname: context.hostname });
}

/** A failure's message for the log: never a header, a body or a row. */
const describe = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Leads or stands by until `signal` aborts; resolves once every sink has stopped and the lease is released. */
export async function runForwarder(o: ForwarderOptions): Promise<void> {
  const log = o.logger;
  const work = async (lease: Lease, term: AbortSignal): Promise<void> => {
    log.info({ epoch: lease.epoch, sinks: o.sinks.map((s) => s.name) }, 'forwarder leading');
    const stop = new AbortController();
    const onTerm = () => stop.abort();
    term.addEventListener('abort', onTerm, { once: true });
    const sinks = o.sinks.map((config) => ({ config, sink: createSink(config, o.context, o.env) }));
    try {
      const results = await Promise.allSettled(
        sinks.map(async ({ config, sink }) => {
          const blockedAt = { seq: 0 };
          try {
            await runSinkLoop({
              db: o.db,
              lease,
              sink,
              pageSize: config.batch_size,
              idleMs: o.idleMs,
              retry: config.retry,
              signal: stop.signal,
              acceptGap: o.acceptGap.has(config.name),
              format: (records) => records.map((r) => formatView(config.format, viewOf(r), o.context)),
              events: {
                delivered(count, lastSeq) {
                  o.metrics?.delivered(config.name, count);
                  log.debug({ sink: config.name, count, seq: lastSeq }, 'delivered');
                },
                failed(err, attempt, retryInMs) {
                  o.metrics?.failed(config.name);
                  const status = (err as { status?: number }).status;
                  const refused = (err as { refused?: boolean }).refused === true;
                  // A refusal (4xx) will not pass by itself: error level, so an operator looks at it. Never the body.
                  log[refused ? 'error' : 'warn']({ sink: config.name, attempt, retry_in_ms: retryInMs, ...(status ? { status } : {}), err: describe(err) }, refused ? 'sink refused the batch; retrying' : 'delivery failed; retrying');
                },
                gap(err, accepted) {
                  o.metrics?.blocked(config.name, !accepted);
                  if (accepted) log.warn({ sink: config.name, skipped_from: err.expected, skipped_to: err.found - 1 }, 'records archived before delivery skipped (--accept-gap)');
                  else if (blockedAt.seq !== err.expected) log.error({ sink: config.name, missing_from: err.expected, next_in_database: err.found }, 'sink stopped: records were archived before they were delivered');
                  blockedAt.seq = err.expected;
                },
              },
            });
          } catch (err) {
            stop.abort(); // the lease is gone: every sink stops
            throw err;
          }
        }),
      );
      const lost = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (lost) throw lost.reason;
    } finally {
      term.removeEventListener('abort', onTerm);
      await Promise.all(sinks.map(({ sink }) => sink.close().catch(() => {})));
    }
  };
  await lead(
    o.db,
    {
      name: FORWARDER_LEASE,
      holder: o.holder,
      ttlMs: o.leaseTtlMs,
      signal: o.signal,
      onLeading(leading) {
        o.metrics?.leading(leading);
        if (!leading) log.info('forwarder not leading');
      },
      onError(err) {
        if (err instanceof LeaseLostError) log.warn({ err: describe(err) }, 'forwarder lease lost');
        else log.warn({ err: describe(err) }, 'forwarder lease query failed');
      },
    },
    work,
  );
}
