import { detailText, epochMs, type FormatContext, type RecordView, type Severity } from './record-view.js';

/**
 * OCSF 1.8.0 events (docs/streaming.md, "OCSF"). Each audit event type maps to one class and
 * activity: logins, MFA steps of a login, refreshes and logouts to Authentication (3002); changes
 * to an account — created, enabled, disabled, password, roles, MFA factor, lock — to Account
 * Change (3001); reads of the audit log to API Activity (6003); alerts and witness refusals to
 * Detection Finding (2004). A type this version does not know becomes a Base Event (0), so a
 * newer gateway never stops the forwarder. Every attribute the schema marks required for the class
 * and its base event is always present (test/unit/forward-ocsf.test.ts checks them against the
 * schema's lists, transcribed in test/fixtures/ocsf-1.8.0-required.json).
 *
 * De-duplication keys: `metadata.uid` = event_id, `metadata.sequence` = seq. The chain hash and
 * the record's own fields that have no OCSF attribute go in `unmapped.authtrail`.
 */

export const OCSF_VERSION = '1.8.0';

interface OcsfClass {
  class_uid: number;
  class_name: string;
  category_uid: number;
  category_name: string;
}

const AUTHENTICATION: OcsfClass = { class_uid: 3002, class_name: 'Authentication', category_uid: 3, category_name: 'Identity & Access Management' };
const ACCOUNT_CHANGE: OcsfClass = { class_uid: 3001, class_name: 'Account Change', category_uid: 3, category_name: 'Identity & Access Management' };
const API_ACTIVITY: OcsfClass = { class_uid: 6003, class_name: 'API Activity', category_uid: 6, category_name: 'Application Activity' };
const DETECTION_FINDING: OcsfClass = { class_uid: 2004, class_name: 'Detection Finding', category_uid: 2, category_name: 'Findings' };
const BASE_EVENT: OcsfClass = { class_uid: 0, class_name: 'Base Event', category_uid: 0, category_name: 'Uncategorized' };

interface Mapping {
  cls: OcsfClass;
  activity_id: number;
  activity_name: string;
}

const m = (cls: OcsfClass, activity_id: number, activity_name: string): Mapping => ({ cls, activity_id, activity_name });

/** Event type → class and activity (activity ids from each class's enum in the schema; 99 = Other). */
export const OCSF_MAPPINGS: Readonly<Record<string, Mapping>> = {
  'login.succeeded': m(AUTHENTICATION, 1, 'Logon'),
  'login.failed': m(AUTHENTICATION, 1, 'Logon'),
  'login.mfa_required': m(AUTHENTICATION, 1, 'Logon'),
  'mfa.replayed': m(AUTHENTICATION, 1, 'Logon'),
  logout: m(AUTHENTICATION, 2, 'Logoff'),
  'token.refreshed': m(AUTHENTICATION, 99, 'Token Refresh'),
  'token.refresh_failed': m(AUTHENTICATION, 99, 'Token Refresh'),
  'token.reuse_detected': m(AUTHENTICATION, 99, 'Token Refresh'),
  'auth.request_refused': m(AUTHENTICATION, 99, 'Request Refused'),

  'user.created': m(ACCOUNT_CHANGE, 1, 'Create'),
  'user.enabled': m(ACCOUNT_CHANGE, 2, 'Enable'),
  'user.password_changed': m(ACCOUNT_CHANGE, 3, 'Password Change'),
  'user.password_change_failed': m(ACCOUNT_CHANGE, 3, 'Password Change'),
  'user.password_reset': m(ACCOUNT_CHANGE, 4, 'Password Reset'),
  'user.disabled': m(ACCOUNT_CHANGE, 5, 'Disable'),
  'lockout.started': m(ACCOUNT_CHANGE, 9, 'Lock'),
  'lockout.cleared': m(ACCOUNT_CHANGE, 12, 'Unlock'),
  'mfa.enabled': m(ACCOUNT_CHANGE, 10, 'MFA Factor Enable'),
  'mfa.enrollment_failed': m(ACCOUNT_CHANGE, 10, 'MFA Factor Enable'),
  'mfa.disabled': m(ACCOUNT_CHANGE, 11, 'MFA Factor Disable'),
  'mfa.disable_failed': m(ACCOUNT_CHANGE, 11, 'MFA Factor Disable'),
  'user.mfa_reset': m(ACCOUNT_CHANGE, 11, 'MFA Factor Disable'),
  'mfa.enrollment_started': m(ACCOUNT_CHANGE, 99, 'MFA Enrollment Start'),
  'mfa.recovery_codes_regenerated': m(ACCOUNT_CHANGE, 99, 'Recovery Codes Regenerate'),
  'mfa.recovery_codes_failed': m(ACCOUNT_CHANGE, 99, 'Recovery Codes Regenerate'),
  'user.roles_changed': m(ACCOUNT_CHANGE, 99, 'Roles Change'),
  'user.sessions_revoked': m(ACCOUNT_CHANGE, 99, 'Sessions Revoke'),

  'user.searched': m(API_ACTIVITY, 2, 'Read'),
  'audit.queried': m(API_ACTIVITY, 2, 'Read'),
  'audit.exported': m(API_ACTIVITY, 2, 'Read'),

  'alert.raised': m(DETECTION_FINDING, 1, 'Create'),
  'alert.resolved': m(DETECTION_FINDING, 3, 'Close'),
  'audit.witness_refused': m(DETECTION_FINDING, 1, 'Create'),
};

export function ocsfMapping(eventType: string): Mapping {
  return OCSF_MAPPINGS[eventType] ?? m(BASE_EVENT, 99, 'Other');
}

const SEVERITY_ID: Record<Severity, { id: number; name: string }> = {
  info: { id: 1, name: 'Informational' },
  low: { id: 2, name: 'Low' },
  medium: { id: 3, name: 'Medium' },
  high: { id: 4, name: 'High' },
};

/** The user an event is about: the account that tried or was changed. */
function subjectUser(view: RecordView): Record<string, unknown> {
  const r = view.record;
  const user: Record<string, unknown> = {};
  if (r.username !== null) user.name = r.username;
  if (r.user_id !== null) user.uid = r.user_id;
  // OCSF wants at least one of account, name, uid: a record with neither still names the type of subject.
  if (r.username === null && r.user_id === null) user.name = r.actor_id ?? 'unknown';
  if (r.mfa_method === 'totp' || r.mfa_method === 'recovery_code') user.has_mfa = true;
  return user;
}

/** The client: its address when the record has one, else what acted (the CLI, the gateway itself). */
function srcEndpoint(view: RecordView): Record<string, unknown> {
  const r = view.record;
  const endpoint: Record<string, unknown> = r.ip !== null ? { ip: r.ip } : { name: detailText(view.details, 'via') ?? 'authtrail' };
  if (r.device_id !== null && r.device_id !== '') endpoint.uid = r.device_id;
  return endpoint;
}

function actor(view: RecordView): Record<string, unknown> {
  const r = view.record;
  if (r.actor_id !== null) return { user: { uid: r.actor_id }, app_name: 'authtrail' };
  return { app_name: 'authtrail' };
}

/** One OCSF event object for one record. */
export function toOcsf(view: RecordView, ctx: FormatContext): Record<string, unknown> {
  const r = view.record;
  const { cls, activity_id, activity_name } = ocsfMapping(r.event_type);
  const severity = SEVERITY_ID[view.severity];
  const event: Record<string, unknown> = {
    activity_id,
    activity_name,
    category_uid: cls.category_uid,
    category_name: cls.category_name,
    class_uid: cls.class_uid,
    class_name: cls.class_name,
    type_uid: cls.class_uid * 100 + activity_id,
    type_name: `${cls.class_name}: ${activity_name}`,
    severity_id: severity.id,
    severity: severity.name,
    time: epochMs(r.occurred_at),
    status_id: r.outcome === 'success' ? 1 : r.outcome === 'failure' ? 2 : 0,
    status: r.outcome === 'success' ? 'Success' : r.outcome === 'failure' ? 'Failure' : 'Unknown',
    message: `${r.event_type} ${r.outcome}${r.reason !== null ? ` (${r.reason})` : ''}`,
    metadata: {
      version: OCSF_VERSION,
      product: { name: 'authtrail', vendor_name: 'authtrail', version: ctx.version },
      uid: r.event_id,
      sequence: r.seq,
      original_time: r.occurred_at,
      event_code: r.event_type,
      log_name: 'audit_log',
      ...(r.request_id !== null ? { correlation_uid: r.request_id } : {}),
    },
    unmapped: {
      authtrail: {
        seq: r.seq,
        event_id: r.event_id,
        hash: r.hash,
        prev_hash: r.prev_hash,
        event_type: r.event_type,
        outcome: r.outcome,
        reason: r.reason,
        mfa_method: r.mfa_method,
        request_id: r.request_id,
        details: view.details,
      },
    },
  };
  if (r.reason !== null) {
    event.status_code = r.reason;
    event.status_detail = r.reason;
  }

  if (cls === AUTHENTICATION) {
    event.user = subjectUser(view);
    event.src_endpoint = srcEndpoint(view);
    event.service = { name: 'authtrail' };
    event.dst_endpoint = { hostname: ctx.hostname, svc_name: 'authtrail' };
    event.is_mfa = r.mfa_method === 'totp' || r.mfa_method === 'recovery_code';
    event.is_remote = r.ip !== null;
    if (r.user_agent !== null) event.http_request = { user_agent: r.user_agent };
    if (r.session_id !== null) event.session = { uid: r.session_id };
    if (r.actor_id !== null) event.actor = actor(view);
  } else if (cls === ACCOUNT_CHANGE) {
    event.user = subjectUser(view);
    event.actor = actor(view);
    event.src_endpoint = srcEndpoint(view);
    if (r.user_agent !== null) event.http_request = { user_agent: r.user_agent };
  } else if (cls === API_ACTIVITY) {
    event.actor = actor(view);
    event.api = { operation: detailText(view.details, 'resource') ?? r.event_type, service: { name: 'authtrail' } };
    event.src_endpoint = srcEndpoint(view);
    if (r.user_agent !== null) event.http_request = { user_agent: r.user_agent };
  } else if (cls === DETECTION_FINDING) {
    const uid = detailText(view.details, 'alert_id') ?? detailText(view.details, 'rule') ?? r.event_id;
    const title = detailText(view.details, 'title') ?? detailText(view.details, 'rule') ?? r.reason ?? r.event_type;
    const rule = detailText(view.details, 'rule');
    event.finding_info = { uid, title, ...(rule !== undefined ? { analytic: { name: rule, type_id: 1, type: 'Rule' } } : {}) };
    // A finding's status is its review state, not the outcome: raised and refused are New, resolved is Resolved.
    const resolved = r.event_type === 'alert.resolved';
    event.status_id = resolved ? 4 : 1;
    event.status = resolved ? 'Resolved' : 'New';
    if (r.username !== null || r.user_id !== null) event.user = subjectUser(view);
  } else {
    if (r.username !== null || r.user_id !== null) event.user = subjectUser(view);
    if (r.ip !== null) event.src_endpoint = srcEndpoint(view);
  }
  return event;
}
