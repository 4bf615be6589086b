import { Router } from 'express';
import type { Services } from '../services.js';

const CHECK_TIMEOUT_MS = 2000;

type CheckResult = 'ok' | 'embedded' | 'failing';

async function withTimeout(check: () => Promise<unknown>): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timeout')), CHECK_TIMEOUT_MS);
  });
  try {
    await Promise.race([check(), timeout]);
    return 'ok';
  } catch {
    return 'failing';
  } finally {
    clearTimeout(timer);
  }
}

/** `GET /healthz`: the process answers. `GET /readyz`: it can serve logins (database, Redis, audit writer). `GET /metrics`: Prometheus. */
export function healthRoutes(deps: Pick<Services, 'db' | 'redis' | 'writer' | 'metrics'>): Router {
  const router = Router();

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    const { redis, writer } = deps;
    const [database, redisCheck] = await Promise.all([
      withTimeout(() => deps.db.query('SELECT 1')),
      redis ? withTimeout(() => redis.ping()) : Promise.resolve<CheckResult>('embedded'),
    ]);
    const stats = writer.stats();
    const checks = {
      database,
      redis: redisCheck,
      audit_writer: (stats.closed ? 'failing' : 'ok') as CheckResult,
    };
    const ready = Object.values(checks).every((c) => c !== 'failing');
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not_ready', checks });
  });

  router.get('/metrics', async (_req, res) => {
    res.type(deps.metrics.contentType).send(await deps.metrics.metrics());
  });

  return router;
}
