/** Stable `code` values of problem responses; clients switch on these. */
export type ProblemCode =
  | 'invalid_request'
  | 'not_found'
  | 'method_not_allowed'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'audit_unavailable'
  | 'service_unavailable'
  | 'internal_error'
  | 'invalid_credentials'
  | 'mfa_required'
  | 'invalid_mfa'
  | 'account_locked'
  | 'too_many_attempts'
  | 'invalid_refresh_token'
  | 'unauthorized'
  | 'forbidden'
  | 'username_taken'
  | 'mfa_already_enabled';

export interface HttpErrorOptions {
  detail?: string;
  headers?: Record<string, string>;
  /** Extra members of the problem body (snake_case). */
  extensions?: Record<string, unknown>;
  cause?: unknown;
}

/**
 * The one error type routes throw. The error handler turns it into RFC 9457 problem+json;
 * `detail` is shown only when `expose` (status < 500), so internal errors never leak.
 */
export class HttpError extends Error {
  readonly expose: boolean;
  readonly detail: string | undefined;
  readonly headers: Record<string, string>;
  readonly extensions: Record<string, unknown>;

  constructor(
    readonly status: number,
    readonly code: ProblemCode,
    readonly title: string,
    options: HttpErrorOptions = {},
  ) {
    super(options.detail ?? title, { cause: options.cause });
    this.name = 'HttpError';
    this.expose = status < 500;
    this.detail = options.detail;
    this.headers = options.headers ?? {};
    this.extensions = options.extensions ?? {};
  }
}

export const invalidRequest = (detail: string, extensions?: Record<string, unknown>): HttpError =>
  new HttpError(400, 'invalid_request', 'The request is not valid', { detail, extensions });
