import type { Logger } from 'pino';
import type { Database } from './db/database.js';

/** What one sweep removed. */
export interface SweepResult {
  challenges: number;
  refreshTokens: number;
}

/**
 * Removes what can no longer be used: `mfa_token`s an hour after they expired, and the refresh
 * tokens of sessions a day past their absolute lifetime (until then a replay is still recognised
 * and recorded as such). Sessions themselves stay, so a `sid` in an old record still names its
 * user. The audit trail is never touched.
 */
export async function sweepExpired(db: Pick<Database, 'query'>): Promise<SweepResult> {
  const challenges = await db.query<{ n: number }>(
    `WITH gone AS (DELETE FROM mfa_challenges WHERE expires_at < now() - interval '1 hour' RETURNING 1) SELECT count(*)::int AS n FROM gone`,
  );
  const tokens = await db.query<{ n: number }>(
    `WITH gone AS (DELETE FROM refresh_tokens t USING refresh_families f
                    WHERE t.family_id = f.id AND f.absolute_expires_at < now() - interval '1 day' RETURNING 1)
     SELECT count(*)::int AS n FROM gone`,
  );
  return { challenges: challenges.rows[0]?.n ?? 0, refreshTokens: tokens.rows[0]?.n ?? 0 };
}

/** Sweeps every `intervalMs` in the background; failures are logged and retried next time. */
export function startMaintenance(db: Database, logger: Logger, intervalMs = 3_600_000): () => void {
  const timer = setInterval(() => {
    sweepExpired(db).then(
      (result) => {
        if (result.challenges + result.refreshTokens > 0) logger.info(result, 'expired challenges and refresh tokens removed');
      },
      (err: unknown) => logger.warn({ err }, 'maintenance sweep failed'),
    );
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
