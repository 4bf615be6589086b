import type { ErrorRequestHandler, RequestHandler } from 'express';
import { AuditUnavailableError } from '../audit/chain-writer.js';
import { DatabaseUnavailableError } from '../db/database.js';
import { HttpError } from './errors.js';

/** Errors raised by express.json (body-parser) carry a `type`. */
function fromBodyParser(err: { type?: unknown; status?: unknown }): HttpError | undefined {
  switch (err.type) {
    case 'entity.too.large':
      return new HttpError('payload_too_large');
    case 'entity.parse.failed':
      return new HttpError('invalid_request', { detail: 'The body is not valid JSON' });
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new HttpError('unsupported_media_type', { detail: 'The request body encoding is not supported' });
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
      return new HttpError('invalid_request', { detail: 'The body could not be read' });
    default:
      return undefined;
  }
}

const isClientError = (err: unknown): boolean => {
  if (!err || typeof err !== 'object') return false;
  const { status, expose } = err as { status?: unknown; expose?: unknown };
  return typeof status === 'number' && status >= 400 && status < 500 && expose === true;
};

/** What any thrown value becomes for the client: the stable `code` used in responses and audit reasons. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof AuditUnavailableError) {
    return new HttpError('audit_unavailable', {
      headers: { 'Retry-After': '5' },
      cause: err,
    });
  }
  if (err instanceof DatabaseUnavailableError) {
    return new HttpError('service_unavailable', {
      headers: { 'Retry-After': '5' },
      cause: err,
    });
  }
  if (err && typeof err === 'object' && 'type' in err) {
    const parsed = fromBodyParser(err);
    if (parsed) return parsed;
  }
  // The router could not decode a path parameter (`/admin/users/%zz`): the client's mistake.
  if (err instanceof URIError) return new HttpError('invalid_request', { detail: 'the path has an invalid percent-escape' });
  // Any other library error that declares itself a client error (http-errors: status 4xx, expose).
  if (isClientError(err)) return new HttpError('invalid_request');
  return new HttpError('internal_error', { cause: err });
}

/**
 * The one place that turns errors into RFC 9457 responses. The request id travels in the
 * `X-Request-Id` header, not the body, so equal refusals have byte-identical bodies.
 */
export const problemHandler: ErrorRequestHandler = (err, req, res, _next) => {
  const problem = toHttpError(err);
  if (problem.status >= 500) req.log.error({ err: problem.cause ?? err }, problem.title);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.status(problem.status).set(problem.headers).type('application/problem+json').json({
    type: `urn:authtrail:problem:${problem.code}`,
    title: problem.title,
    status: problem.status,
    code: problem.code,
    ...(problem.expose && problem.detail ? { detail: problem.detail } : {}),
    ...(problem.expose ? problem.extensions : {}),
  });
};

export const notFound: RequestHandler = (req, _res, next) => {
  next(new HttpError('not_found', { detail: `${req.method} ${req.path} is not a route of this gateway` }));
};
