import { PROBLEMS, type ProblemCode } from '../problems.js';

/**
 * Every event type the audit log holds (docs/api.md, "Audit events"). A closed list: a record of any other type is a
 * compile error, and docs/api.md is checked against this list by a test.
 */
export const AUDIT_EVENT_TYPES = [
  'login.succeeded',
  'login.failed',
  'login.mfa_required',
  'mfa.replayed',
  'lockout.started',
  'lockout.cleared',
  'token.refreshed',
  'token.refresh_failed',
  'token.reuse_detected',
  'logout',
  'mfa.enrollment_started',
  'mfa.enabled',
  'mfa.enrollment_failed',
  'mfa.disabled',
  'mfa.disable_failed',
  'mfa.recovery_codes_regenerated',
  'mfa.recovery_codes_failed',
  'auth.request_refused',
  'user.created',
  'setup.failed',
  'user.disabled',
  'user.enabled',
  'user.roles_changed',
  'user.password_reset',
  'user.mfa_reset',
  'user.sessions_revoked',
  'user.password_changed',
  'user.password_change_failed',
  'user.searched',
  'audit.queried',
  'audit.exported',
  'audit.witness_refused',
  'alert.raised',
  'alert.resolved',
] as const;

export type AuditEventType = (typeof AUDIT_EVENT_TYPES)[number];

/** Changes an administrator (or `npm run user`) makes to accounts. */
export const USER_CHANGE_EVENT_TYPES = [
  'user.created',
  'user.disabled',
  'user.enabled',
  'user.roles_changed',
  'user.password_reset',
  'user.mfa_reset',
  'user.sessions_revoked',
] as const satisfies readonly AuditEventType[];

/** The alert rules (src/alerts/rules.ts): an `alert.raised` record's reason names its rule. */
export const ALERT_RULE_NAMES = [
  'password_spraying',
  'credential_stuffing',
  'lockout_storm',
  'success_after_failures',
  'new_device',
  'admin_off_hours',
] as const;

/** Why a decision went as it did, beyond a refusal's problem code. */
const DECISION_REASONS = [
  // wrong or unusable secrets
  'unknown_user',
  'wrong_password',
  'user_disabled',
  'invalid_otp',
  'invalid_recovery_code',
  'invalid_mfa_token',
  'mfa_not_available',
  'otp_replayed',
  'mfa_not_enabled',
  'no_enrollment',
  'invalid_code',
  'password_policy',
  // states
  'mfa_required',
  'too_many_failures',
  // refresh tokens
  'no_token',
  'malformed_token',
  'unknown_token',
  'expired',
  'revoked',
  'reuse_detected',
  // user management
  'bootstrap',
  // a witness refused a checkpoint (src/audit/witness-push.ts)
  'witness_rollback',
  'witness_fork',
  'witness_inconsistent',
  'witness_rejected',
  // the rule an alert was raised by
  ...ALERT_RULE_NAMES,
] as const;

/**
 * Every reason a record may carry: the decisions above, and the problem code of every refusal
 * (recorded as its own reason when no step recorded a more specific one).
 */
export const AUDIT_REASONS: ReadonlyArray<AuditReason> = [
  ...DECISION_REASONS,
  ...(Object.keys(PROBLEMS) as ProblemCode[]).filter((code): code is RefusalCode => code !== 'internal_error'),
];

/** A problem code that is a refusal (4xx, 503): an internal error is no decision and never a reason. */
export type RefusalCode = Exclude<ProblemCode, 'internal_error'>;

export type AuditReason = (typeof DECISION_REASONS)[number] | RefusalCode;
