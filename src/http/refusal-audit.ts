import type { ErrorRequestHandler, Request, Response } from 'express';
import { AuditUnavailableError, type RecordOptions } from '../audit/chain-writer.js';
import type { AuditEventType, RefusalCode } from '../audit/vocabulary.js';
import type { Services } from '../services.js';
import type { AccessClaims } from '../tokens/access-tokens.js';
import { recordForRequest, wasAudited } from './audit-request.js';
import { toHttpError } from './error-handler.js';

/**
 * The authentication routes and the event type their refusals are recorded as. `/me/*` and
 * `/mfa/*` paths that are no route (404, 405) are authentication routes too.
 */
const AUTH_ROUTES: ReadonlyMap<string, AuditEventType> = new Map<string, AuditEventType>([
  ['/login', 'login.failed'],
  ['/login/mfa', 'login.failed'],
  ['/refresh', 'token.refresh_failed'],
  ['/logout', 'logout'],
  ['/setup', 'setup.failed'],
  ['/me/password', 'user.password_change_failed'],
  ['/mfa/totp/enroll', 'mfa.enrollment_failed'],
  ['/mfa/totp/confirm', 'mfa.enrollment_failed'],
  ['/mfa/totp/disable', 'mfa.disable_failed'],
  ['/mfa/recovery-codes', 'mfa.recovery_codes_failed'],
]);

/** The event type of a refusal on `path`, or undefined when it is not an authentication route. */
export function refusalEventType(path: string): AuditEventType | undefined {
  const exact = AUTH_ROUTES.get(path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path);
  if (exact) return exact;
  return /^\/(me|mfa)(\/|$)/.test(path) ? 'auth.request_refused' : undefined;
}

/** The failure event type of the authentication route `req` is on; a programming error elsewhere. */
export function failureEventTypeOf(req: Request): AuditEventType {
  const eventType = refusalEventType(req.path);
  if (!eventType) throw new Error(`${req.path} is not an authentication route`);
  return eventType;
}

/**
 * Writes the refusal record of `err` on an authentication route, unless it is no refusal, not on
 * such a route, or the request already recorded its decision; undefined when there is nothing to
 * write. The one place that decides what a refusal's record says.
 */
function recordRefusal(
  services: Pick<Services, 'writer'>,
  err: unknown,
  req: Request,
  res: Response,
  options?: RecordOptions,
): Promise<unknown> | undefined {
  const eventType = refusalEventType(req.path);
  const problem = toHttpError(err);
  const refusal = problem.status < 500 || problem.status === 503;
  if (!eventType || !refusal || wasAudited(res) || err instanceof AuditUnavailableError) return undefined;
  const auth = (res.locals as { auth?: AccessClaims }).auth;
  const login = (res.locals as { login?: { username?: string } }).login;
  const fields = problem.extensions.fields;
  return recordForRequest(
    services.writer,
    req,
    res,
    {
      eventType,
      outcome: 'failure',
      reason: problem.code as RefusalCode, // a refusal: 4xx or 503, checked above
      username: login?.username ?? null,
      userId: auth?.sub ?? null,
      actorId: auth?.sub ?? null,
      sessionId: auth?.sid ?? null,
      details: Array.isArray(fields) ? { fields } : null,
    },
    options,
  );
}

/**
 * The one place that makes every refusal of an authentication route a record (docs/api.md, "Audit events"): any 400,
 * 401, 403, 404, 405, 413, 415, 429 or 503 that reaches the error handler without its decision
 * recorded gets exactly one record, with the problem code as reason. Routes that record their own
 * decision (a wrong password, a lock start) are marked audited and are not recorded twice. When
 * the record cannot be written, the answer becomes 503 `audit_unavailable`: no refusal goes
 * unrecorded silently.
 */
export function recordAuthRefusals(services: Pick<Services, 'writer'>): ErrorRequestHandler {
  return (err, req, res, next) => {
    const recording = recordRefusal(services, err, req, res);
    if (!recording) {
      next(err);
      return;
    }
    recording.then(
      () => next(err),
      (auditErr: unknown) => next(auditErr),
    );
  };
}

/**
 * The same record for the 503 a request's deadline answers by itself (src/http/deadline.ts),
 * which never reaches the error handlers. The deadline has passed, so the record is written
 * after the answer, bounded by the writer's own timeout; the request's later decision then finds
 * it recorded and writes nothing more.
 */
export function recordDeadlineRefusal(services: Pick<Services, 'writer'>): (err: unknown, req: Request, res: Response) => void {
  return (err, req, res) => {
    recordRefusal(services, err, req, res, { signal: null })?.catch((auditErr: unknown) => {
      req.log.error({ err: { message: auditErr instanceof Error ? auditErr.message : String(auditErr) } }, 'the refusal record of a deadline 503 could not be written');
    });
  };
}
