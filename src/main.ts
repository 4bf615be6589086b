import type { AddressInfo } from 'node:net';
import { createApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { connectionCap, createHttpServer, openFileLimit, type RefusalReason } from './http/server.js';
import { createLogger } from './logger.js';
import { localOrigin, setupLink } from './users/first-run.js';
import { openRuntime } from './runtime.js';

function readConfig(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

async function main(): Promise<void> {
  const config = readConfig();
  const logger = createLogger(config.logLevel);
  if (config.mode === 'embedded') {
    logger.warn(
      { data_dir: config.dataDir },
      'embedded mode: PGlite and an in-process lockout store; one instance only. Set DATABASE_URL and REDIS_URL for production',
    );
  }

  const runtime = await openRuntime(config, logger);
  const fileLimit = openFileLimit();
  const maxConnections = connectionCap(config.http.maxConnections, fileLimit);
  if (maxConnections < config.http.maxConnections) {
    logger.warn(
      { configured: config.http.maxConnections, max_connections: maxConnections, open_file_limit: fileLimit },
      'HTTP_MAX_CONNECTIONS lowered to keep file descriptors for the database, Redis and files; raise the open-file limit (ulimit -n, LimitNOFILE) to allow more',
    );
  }
  // Refusals are logged at most once a minute, with the counts since the last report.
  const refused: Record<RefusalReason, number> = { max_connections: 0, max_connections_per_ip: 0 };
  let reportedAt = 0;
  const onRefused = (reason: RefusalReason): void => {
    refused[reason] += 1;
    if (Date.now() - reportedAt < 60_000) return;
    reportedAt = Date.now();
    const hint =
      refused.max_connections_per_ip > 0 && config.trustProxy !== false
        ? 'behind a proxy every connection comes from its address: raise HTTP_MAX_CONNECTIONS_PER_IP to what the proxy may open'
        : undefined;
    logger.warn({ refused: { ...refused }, hint }, 'connections closed at a connection cap');
    refused.max_connections = 0;
    refused.max_connections_per_ip = 0;
  };
  const server = createHttpServer(createApp(runtime), { ...config.http, maxConnections }, { onRefused });
  server.listen(config.port, config.host, () => {
    const { port } = server.address() as AddressInfo;
    logger.info({ port, mode: config.mode }, 'listening');
    // Once, while no user exists: the token is in the fragment, which browsers never send, so it
    // reaches no request log; it stops working when the first admin exists or this process stops.
    if (runtime.setup?.pending()) {
      logger.info({ setup_url: setupLink(localOrigin(config.host, port), runtime.setup) }, 'no user yet: open the setup link to create the first administrator');
    }
  });

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const deadline = setTimeout(() => {
      logger.error('shutdown timed out');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    deadline.unref();
    // Stop accepting; requests in flight finish (and write their audit records) before the writer
    // closes. Idle and slow connections are ended, so no slow client holds the shutdown.
    server.shutdown(() => {
      runtime
        .close()
        .then(() => {
          logger.info('stopped');
          process.exit(0);
        })
        .catch((err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          process.exit(1);
        });
    });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

/** An error and its causes on one line: "the database is unavailable: connect ECONNREFUSED …". */
function describeError(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e instanceof Error && parts.length < 4; e = e.cause) parts.push(e.message);
  return parts.join(': ') || String(err);
}

main().catch((err: unknown) => {
  process.stderr.write(`authtrail failed to start: ${describeError(err)}\n`);
  process.exit(1);
});
