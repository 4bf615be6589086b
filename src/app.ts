import express, { type Express } from 'express';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ChainWriter } from './audit/chain-writer.js';
import type { Config } from './config.js';
import type { Database } from './db/database.js';
import { notFound, problemHandler } from './http/error-handler.js';
import { requestId, requestLogger } from './http/request-context.js';
import { healthRoutes } from './http/health-routes.js';

/** What the HTTP layer needs; `main.ts` and tests build it. */
export interface AppDeps {
  config: Config;
  logger: Logger;
  db: Database;
  writer: ChainWriter;
  /** Absent in embedded mode. */
  redis?: Redis | undefined;
}

/** Builds the gateway's Express app; it never listens (main.ts and tests do). */
export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(requestId());
  app.use(requestLogger(deps.logger));
  app.use(healthRoutes(deps));
  app.use(notFound);
  app.use(problemHandler);
  return app;
}
