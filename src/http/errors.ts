import type { z } from 'zod';

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
  | 'mfa_already_enabled'
  | 'reauthentication_required';

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

/** The input fields a failed validation names (`body` for the body as a whole). */
export function fieldsOf(error: z.ZodError): string[] {
  return [...new Set(error.issues.map((i) => i.path.join('.') || 'body'))];
}

/** Validates client input; a failure is 400 invalid_request with `fields` naming what was wrong. */
export function parseInput<T>(schema: z.ZodType<T>, value: unknown, message?: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const fields = fieldsOf(parsed.error);
  throw invalidRequest(message ?? `invalid ${fields.join(', ')}`, { fields });
}

export const invalidRequest = (detail: string, extensions?: Record<string, unknown>): HttpError =>
  new HttpError(400, 'invalid_request', 'The request is not valid', { detail, extensions });
