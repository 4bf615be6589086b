import type { RecordView } from './record-view.js';

/**
 * The record exactly as the security API returns it (docs/api.md: `{seq, event_id, occurred_at,
 * event_type, outcome, reason, username, user_id, ip, user_agent, device_id, mfa_method,
 * session_id, request_id, actor_id, details}`, `details` parsed), for a SIEM that already reads
 * authtrail's own exports.
 */
export function toNative(view: RecordView): Record<string, unknown> {
  const r = view.record;
  return {
    seq: r.seq,
    event_id: r.event_id,
    occurred_at: r.occurred_at,
    event_type: r.event_type,
    outcome: r.outcome,
    reason: r.reason,
    username: r.username,
    user_id: r.user_id,
    ip: r.ip,
    user_agent: r.user_agent,
    device_id: r.device_id,
    mfa_method: r.mfa_method,
    session_id: r.session_id,
    request_id: r.request_id,
    actor_id: r.actor_id,
    details: view.details,
  };
}
