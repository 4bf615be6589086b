import pino, { type Logger } from 'pino';

/**
 * Paths pino replaces with "[redacted]". Request bodies are never logged; these catch secrets
 * that reach a log object any other way.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  '*.password',
  '*.new_password',
  '*.current_password',
  '*.otp',
  '*.recovery_code',
  '*.refresh_token',
  '*.access_token',
  '*.mfa_token',
  '*.secret',
  '*.token',
];

/** Fields of a PostgreSQL error that can quote the failing row or the statement's values. */
const ROW_FIELDS = ['detail', 'where', 'hint', 'internalQuery', 'internalPosition', 'position', 'query', 'parameters'] as const;
const SQLSTATE = /^[0-9A-Z]{5}$/;

const isDatabaseError = (e: unknown): e is Error & { code: string; constraint?: unknown } => {
  const code = e instanceof Error ? (e as unknown as { code?: unknown }).code : undefined;
  return typeof code === 'string' && SQLSTATE.test(code) && 'severity' in (e as object);
};

/**
 * pino's error serializer, minus database row values: a CHECK violation's `detail` quotes the whole
 * row, and messages such as `invalid input syntax for type uuid: "…"` quote the input. Database
 * errors anywhere in the cause chain keep their SQLSTATE, constraint, table and column only.
 */
export function serializeError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const replacements: Array<[string, string]> = [];
  for (let e: unknown = err; e instanceof Error && replacements.length < 8; e = e.cause) {
    if (isDatabaseError(e)) {
      replacements.push([e.message, `database error ${e.code}${typeof e.constraint === 'string' ? ` (${e.constraint})` : ''}`]);
    }
  }
  const serialized = pino.stdSerializers.err(err) as unknown as Record<string, unknown>;
  if (replacements.length === 0) return serialized;
  const scrub = (value: Record<string, unknown>): Record<string, unknown> => {
    for (const field of ROW_FIELDS) delete value[field];
    for (const key of ['message', 'stack'] as const) {
      const original = value[key];
      if (typeof original !== 'string') continue;
      let text = original;
      for (const [raw, safe] of replacements) if (raw) text = text.split(raw).join(safe);
      value[key] = text;
    }
    if (value.cause && typeof value.cause === 'object') value.cause = scrub(value.cause as Record<string, unknown>);
    return value;
  };
  return scrub(serialized);
}

/** The one logger of the gateway: JSON lines on stdout, secrets redacted. */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'authtrail' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: { err: serializeError },
    },
    destination,
  );
}
