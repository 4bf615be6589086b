import { Router } from 'express';
import type { WitnessReport } from '../audit/witness-push.js';
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

/** The witnesses' report within the check timeout, or undefined (no witnesses, or the database did not answer). */
async function witnessReport(witnesses: Services['witnesses']): Promise<WitnessReport | undefined> {
  if (!witnesses || witnesses.names.length === 0) return undefined;
  let report: WitnessReport | undefined;
  const check = await withTimeout(async () => {
    report = await witnesses.report();
  });
  return check === 'ok' ? report : undefined;
}

/**
 * `GET /healthz`: the process answers. `GET /readyz`: it can serve logins (database, Redis, audit
 * writer); with witnesses configured it also shows each one's latest cosigned size and whether the
 * latest checkpoint has its quorum, which never makes it unready: a witness down or refusing stops
 * no login, and is an alarm for the security team (metrics, `audit.witness_refused`), not a reason
 * for a load balancer to take the gateway out. `GET /metrics`: Prometheus.
 */
export function healthRoutes(deps: Pick<Services, 'db' | 'redis' | 'writer' | 'metrics' | 'witnesses'>): Router {
  const router = Router();

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    const { redis, writer } = deps;
    const [database, redisCheck, witnesses] = await Promise.all([
      withTimeout(() => deps.db.query('SELECT 1')),
      redis ? withTimeout(() => redis.ping()) : Promise.resolve<CheckResult>('embedded'),
      witnessReport(deps.witnesses),
    ]);
    const stats = writer.stats();
    const checks = {
      database,
      redis: redisCheck,
      audit_writer: (stats.closed ? 'failing' : 'ok') as CheckResult,
    };
    const ready = Object.values(checks).every((c) => c !== 'failing');
    const witnessView = witnesses && {
      quorum_met: witnesses.quorum.met,
      quorum: witnesses.quorum.required,
      checkpoint_size: witnesses.quorum.checkpoint_size,
      cosigned: Object.fromEntries(witnesses.witnesses.map((w) => [w.name, w.cosigned_size])),
    };
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not_ready', checks, ...(witnessView ? { witnesses: witnessView } : {}) });
  });

  router.get('/metrics', async (_req, res) => {
    res.type(deps.metrics.contentType).send(await deps.metrics.metrics());
  });

  return router;
}
