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

/** The one logger of the gateway: JSON lines on stdout, secrets redacted. */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'authtrail' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    destination,
  );
}
