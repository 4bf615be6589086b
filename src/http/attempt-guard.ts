import type { ErrorRequestHandler, Request, Response } from 'express';
import { beginAttempt, type Attempt, type AttemptOptions } from '../lockout/attempts.js';
import type { LockoutService } from '../lockout/lockout-service.js';
import { clientInfo } from './client-info.js';
import { HttpError } from './errors.js';

/**
 * Begins the request's attempt to check a secret (see `lockout/attempts.ts`): 429 with
 * `Retry-After` when refused (already recorded). The attempt is kept on the response so that
 * {@link releaseUnjudgedAttempt} gives it back if the request fails before its verdict.
 */
export async function startAttempt(lockout: LockoutService, req: Request, res: Response, options: Omit<AttemptOptions, 'ip'>): Promise<Attempt> {
  const started = await beginAttempt(lockout, { ...options, ip: clientInfo(req).ip });
  if (!started.ok) {
    const { reason, retryAfterSeconds } = started.refusal;
    throw new HttpError(reason, {
      headers: { 'Retry-After': String(retryAfterSeconds) },
    });
  }
  res.locals.attempt = started.attempt;
  return started.attempt;
}

/** The request's attempt, if it began one. */
export const attemptOf = (res: Response): Attempt | undefined => res.locals.attempt as Attempt | undefined;

/**
 * An attempt that ends in an error before its verdict (the database or the audit log failed) was
 * not a wrong secret: its slot and address point are given back, so an outage locks no one.
 * Wrong secrets are counted before anything that could fail.
 */
export const releaseUnjudgedAttempt: ErrorRequestHandler = (err, _req, res, next) => {
  const attempt = attemptOf(res);
  if (!attempt || attempt.judged) {
    next(err);
    return;
  }
  attempt.release().then(
    () => next(err),
    () => next(err),
  );
};
