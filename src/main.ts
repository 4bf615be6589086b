import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createLogger } from './logger.js';
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
  const server = http.createServer(createApp(runtime));
  server.requestTimeout = 30_000;
  server.listen(config.port, config.host, () => {
    const { port } = server.address() as AddressInfo;
    logger.info({ port, mode: config.mode }, 'listening');
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
    // Stop accepting; requests in flight finish (and write their audit records) before the writer closes.
    server.close(() => {
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
    server.closeIdleConnections();
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
