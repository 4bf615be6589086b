import os from 'node:os';
import { parseArgs } from 'node:util';
import { createPostgresDatabase } from '../db/database.js';
import { createLogger } from '../logger.js';
import { productVersion } from '../forward/formats/index.js';
import { runForwarder } from '../forward/forwarder.js';
import { createForwarderMetrics, serveMetrics } from '../forward/metrics.js';
import { SinksFileError, loadSinksFile } from '../forward/sinks-file.js';

const USAGE = `usage: npm run audit:forward -- [--database-url URL] [--sinks FILE] [options]

Streams the audit log to SIEMs (docs/streaming.md): every committed record, in seq order, to each
sink of the sinks file, at least once. Run one on each of several hosts: one forwards, the others
stand by and take over within --lease-ttl-ms when it stops.

  --database-url URL    the gateway's PostgreSQL database (or DATABASE_URL)
  --sinks FILE          the sinks file, JSON (or AUDIT_SINKS_FILE)
  --metrics-port PORT   serve Prometheus metrics on GET /metrics (default: off; 0 picks a free port)
  --metrics-host HOST   address of the metrics endpoint (default 127.0.0.1)
  --lease-ttl-ms MS     how long the active forwarder's lease lasts without renewal (default 15000):
                        a standby takes over at most this long after the active one stopped
  --idle-ms MS          wait between polls once a sink has caught up (default 250)
  --accept-gap SINK     let SINK skip records archived before it delivered them (repeatable);
                        without it the sink stops at such a gap and says so
  --holder NAME         this process in the lease (default host:pid)
  --log-level LEVEL     fatal, error, warn, info (default), debug, silent
  --data-dir DIR        refused: the embedded database serves the gateway's process only;
                        forwarding needs PostgreSQL

Tokens for HTTP sinks are read from the environment variables the sinks file names (token_env).

Exit status: 0 stopped by SIGTERM or SIGINT; 1 failed while running; 2 could not start (bad flags,
an invalid sinks file, a token variable not set).`;

class UsageError extends Error {}

const positiveInt = (value: string | undefined, flag: string, dflt: number, min: number, max: number): number => {
  if (value === undefined) return dflt;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) throw new UsageError(`${flag} must be an integer from ${min} to ${max}`);
  return Number(value);
};

async function run(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        'database-url': { type: 'string' },
        'data-dir': { type: 'string' },
        sinks: { type: 'string' },
        'metrics-port': { type: 'string' },
        'metrics-host': { type: 'string' },
        'lease-ttl-ms': { type: 'string' },
        'idle-ms': { type: 'string' },
        'accept-gap': { type: 'string', multiple: true },
        holder: { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values['data-dir'] !== undefined) {
    throw new UsageError('--data-dir: forwarding needs PostgreSQL (--database-url or DATABASE_URL); the embedded database serves the gateway\'s process only');
  }
  const url = values['database-url'] ?? process.env.DATABASE_URL;
  if (!url) throw new UsageError('give --database-url or DATABASE_URL');
  if (!/^postgres(ql)?:\/\//.test(url)) throw new UsageError('--database-url must be a postgres:// or postgresql:// URL');
  const sinksFile = values.sinks ?? process.env.AUDIT_SINKS_FILE;
  if (!sinksFile) throw new UsageError('give --sinks FILE or AUDIT_SINKS_FILE');
  const level = values['log-level'] ?? process.env.LOG_LEVEL ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(level)) throw new UsageError('--log-level must be fatal, error, warn, info, debug, trace or silent');
  const metricsPort = values['metrics-port'] === undefined ? undefined : positiveInt(values['metrics-port'], '--metrics-port', 0, 0, 65535);
  const leaseTtlMs = positiveInt(values['lease-ttl-ms'], '--lease-ttl-ms', 15_000, 300, 600_000);
  const idleMs = positiveInt(values['idle-ms'], '--idle-ms', 250, 10, 60_000);
  const sinks = loadSinksFile(sinksFile);
  const acceptGap = new Set(values['accept-gap'] ?? []);
  for (const name of acceptGap) if (!sinks.some((s) => s.name === name)) throw new UsageError(`--accept-gap ${name}: no sink of that name`);

  const logger = createLogger(level).child({ component: 'forwarder' });
  const holder = (values.holder ?? `${os.hostname()}:${process.pid}`).slice(0, 256);
  const db = createPostgresDatabase({ url, poolMax: Math.min(20, sinks.length * 2 + 2), statementTimeoutMs: 30_000, connectTimeoutMs: 5000, applicationName: 'authtrail-forward' });
  const metrics = createForwarderMetrics(db, sinks.map((s) => s.name));
  const stop = new AbortController();
  let metricsServer: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      logger.info({ signal }, 'forwarder stopping');
      stop.abort();
      // A sink stuck in a long timeout must not hold the stop forever.
      setTimeout(() => {
        logger.error('forwarder did not stop within 15 s');
        process.exit(1);
      }, 15_000).unref();
    });
  }
  try {
    if (metricsPort !== undefined) metricsServer = await serveMetrics(metrics.registry, values['metrics-host'] ?? '127.0.0.1', metricsPort);
    logger.info({ holder, sinks: sinks.map((s) => `${s.name} (${s.type}, ${s.format})`), metrics_port: metricsServer?.port ?? null }, 'forwarder started');
    await runForwarder({
      db,
      sinks,
      holder,
      leaseTtlMs,
      idleMs,
      acceptGap,
      context: { hostname: os.hostname(), version: productVersion() },
      logger,
      metrics,
      signal: stop.signal,
    });
    logger.info('forwarder stopped');
    return 0;
  } finally {
    metricsServer?.server.close();
    metricsServer?.server.closeAllConnections();
    await db.close().catch(() => {});
  }
}

run().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError || err instanceof SinksFileError) {
      console.error(`audit:forward: ${err.message}`);
      if (err instanceof UsageError) console.error(`\n${USAGE}`);
      process.exitCode = 2;
      return;
    }
    console.error(`audit:forward: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
