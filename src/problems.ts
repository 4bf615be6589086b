/**
 * Every problem the gateway answers, with its one HTTP status and title (RFC 9457). Clients switch
 * on `code`; a code cannot be thrown with another status, because the status comes from here.
 * docs/api.md lists them all, and a test keeps the two in step.
 */
export const PROBLEMS = {
  invalid_request: { status: 400, title: 'The request is not valid' },
  invalid_credentials: { status: 401, title: 'Invalid username or password' },
  mfa_required: { status: 401, title: 'A second factor is required' },
  invalid_mfa: { status: 401, title: 'The second factor is not valid' },
  invalid_refresh_token: { status: 401, title: 'The refresh token is not valid' },
  invalid_setup_token: { status: 401, title: 'The setup token is not valid' },
  unauthorized: { status: 401, title: 'A valid access token is required' },
  forbidden: { status: 403, title: 'Not allowed' },
  reauthentication_required: { status: 403, title: 'Confirm with the current password' },
  not_found: { status: 404, title: 'No such resource' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  username_taken: { status: 409, title: 'The username is taken' },
  mfa_already_enabled: { status: 409, title: 'MFA is already enabled' },
  alert_already_resolved: { status: 409, title: 'The alert is already resolved' },
  setup_completed: { status: 409, title: 'The first administrator already exists' },
  payload_too_large: { status: 413, title: 'The request body is too large' },
  unsupported_media_type: { status: 415, title: 'The request body is not supported' },
  account_locked: { status: 429, title: 'The account is locked' },
  too_many_attempts: { status: 429, title: 'Too many attempts' },
  internal_error: { status: 500, title: 'Internal error' },
  audit_unavailable: { status: 503, title: 'The audit trail is unavailable' },
  service_unavailable: { status: 503, title: 'The service is temporarily unavailable' },
} as const satisfies Record<string, { status: number; title: string }>;

/** Stable `code` values of problem responses. */
export type ProblemCode = keyof typeof PROBLEMS;
