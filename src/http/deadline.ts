import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { AuditUnavailableError } from '../audit/chain-writer.js';
import { Deadline, DeadlineExceededError, runWithDeadline } from '../deadline.js';
import { wasAudited } from './audit-request.js';
import { problemHandler } from './error-handler.js';
import { HttpError } from './errors.js';

/** The request's deadline, when {@link requestDeadline} armed one. */
export const deadlineOf = (res: Response): Deadline | undefined => res.locals.deadline as Deadline | undefined;

/**
 * One deadline per request (`REQUEST_DEADLINE_MS`): a single timer, armed when the request
 * arrives. The work the request starts runs under the deadline (src/deadline.ts), so database
 * calls and the audit record's wait in the queue get the time left, not a full timeout each. When
 * the timer fires before the request started its answer, the request is answered 503 through the
 * problem handler — `audit_unavailable` when it was waiting for its audit record, else
 * `service_unavailable`, both with `Retry-After` — and whatever it finishes later cannot succeed.
 * `onExpired` sees that answer first (on authentication routes it becomes a refusal record).
 * An answer already under way (a streaming export) is never cut.
 */
export function requestDeadline(
  ms: number,
  options: { skip?: (req: Request) => boolean; onExpired?: (err: Error, req: Request, res: Response) => void } = {},
): RequestHandler {
  return (req, res, next) => {
    if (options.skip?.(req)) {
      next();
      return;
    }
    const deadline = new Deadline(ms, () => res.headersSent);
    res.locals.deadline = deadline;
    const timer = setTimeout(() => {
      if (!deadline.expire()) return;
      if (res.destroyed) return; // the client left: nobody to answer, but the work is stopped all the same
      const cause = new DeadlineExceededError(ms);
      const err = wasAudited(res)
        ? new AuditUnavailableError('ERR_AUDIT_UNAVAILABLE', 'the audit record was not committed within the request deadline', { cause })
        : new HttpError('service_unavailable', { headers: { 'Retry-After': '5' }, cause });
      // Recorded first (that marks the request audited), answered at once.
      options.onExpired?.(err, req, res);
      void problemHandler(err, req, res, () => {});
    }, ms);
    res.once('finish', () => clearTimeout(timer));
    runWithDeadline(deadline, next);
  };
}

/**
 * Errors of requests the deadline already answered with 503 end here: logged, never answered a
 * second time (the problem handler would reset the connection). Mount it just before the problem
 * handler.
 */
export const afterDeadline: ErrorRequestHandler = (err, req, res, next) => {
  if (!deadlineOf(res)?.expired) {
    next(err);
    return;
  }
  req.log.warn({ err: { message: err instanceof Error ? err.message : String(err) } }, 'finished after its deadline had answered 503');
};
