import type { z } from 'zod';
import { PROBLEMS, type ProblemCode } from '../problems.js';

export { PROBLEMS, type ProblemCode } from '../problems.js';

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
  readonly status: number;
  readonly title: string;
  readonly expose: boolean;
  readonly detail: string | undefined;
  readonly headers: Record<string, string>;
  readonly extensions: Record<string, unknown>;

  constructor(
    readonly code: ProblemCode,
    options: HttpErrorOptions = {},
  ) {
    const { status, title } = PROBLEMS[code];
    super(options.detail ?? title, { cause: options.cause });
    this.name = 'HttpError';
    this.status = status;
    this.title = title;
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
  new HttpError('invalid_request', { detail, extensions });
