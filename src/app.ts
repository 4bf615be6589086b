import cors from 'cors';
import express, { type Express } from 'express';
import helmet from 'helmet';
import { accountRoutes } from './http/account-routes.js';
import { adminUserRoutes } from './http/admin-user-routes.js';
import { alertRoutes } from './http/alert-routes.js';
import { auditIntegrityRoutes } from './http/audit-integrity-routes.js';
import { consoleRoutes } from './http/console-routes.js';
import { afterDeadline, requestDeadline } from './http/deadline.js';
import { notFound, problemHandler } from './http/error-handler.js';
import { healthRoutes } from './http/health-routes.js';
import { jwksRoutes } from './http/jwks-routes.js';
import { lockoutRoutes } from './http/lockout-routes.js';
import { loginEventRoutes } from './http/login-event-routes.js';
import { loginRoutes } from './http/login-routes.js';
import { openApiRoutes } from './http/openapi.js';
import { recordAuthRefusals, recordDeadlineRefusal } from './http/refusal-audit.js';
import { requestId, requestLogger } from './http/request-context.js';
import { setupRoutes } from './http/setup-routes.js';
import { tokenRoutes } from './http/token-routes.js';
import { transparencyRoutes } from './http/transparency-routes.js';
import { witnessRoutes } from './http/witness-routes.js';
import type { Services } from './services.js';

/** Builds the gateway's Express app; it never listens (main.ts and tests do). */
export function createApp(services: Services): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('trust proxy', services.config.trustProxy);
  app.use(requestId());
  app.use(requestLogger(services.logger));
  app.use(helmet());
  if (services.config.corsOrigins.length > 0) {
    app.use(
      cors({
        origin: [...services.config.corsOrigins],
        credentials: true,
        allowedHeaders: ['Authorization', 'Content-Type', 'X-Device-Id', 'X-Request-Id'],
        exposedHeaders: ['X-Request-Id', 'Retry-After', 'WWW-Authenticate'],
        maxAge: 600,
      }),
    );
  }
  // Every route but the full chain verification, which may read for longer (README "Operations").
  app.use(
    requestDeadline(services.config.requestDeadlineMs, { skip: (req) => req.path === '/admin/audit/verify', onExpired: recordDeadlineRefusal(services) }),
  );
  app.use(healthRoutes(services));
  app.use(jwksRoutes(services.keys));
  app.use(openApiRoutes());
  app.use(loginRoutes(services));
  app.use(tokenRoutes(services));
  app.use(setupRoutes(services));
  app.use(accountRoutes(services));
  app.use(adminUserRoutes(services));
  app.use(loginEventRoutes(services));
  app.use(lockoutRoutes(services));
  app.use(auditIntegrityRoutes(services));
  app.use(transparencyRoutes(services));
  app.use(witnessRoutes(services));
  app.use(alertRoutes(services));
  app.use(consoleRoutes(services.config.consoleDir));
  app.use(notFound);
  app.use(recordAuthRefusals(services));
  app.use(afterDeadline);
  app.use(problemHandler);
  return app;
}
