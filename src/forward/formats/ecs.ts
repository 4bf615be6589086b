import { ocsfMapping } from './ocsf.js';
import type { FormatContext, RecordView, Severity } from './record-view.js';

/**
 * Elastic Common Schema documents (docs/streaming.md, "ECS"). Category follows the OCSF class
 * the event maps to, so both formats agree: authentication events are `authentication`, changes
 * to an account `iam`, reads of the audit log `database` access, alerts and witness refusals
 * `intrusion_detection` alerts. `event.id` = event_id and `event.sequence` = seq are the
 * de-duplication keys; the chain hash and the fields ECS has no place for go in `authtrail.*`.
 */

export const ECS_VERSION = '8.11.0';

const SEVERITY: Record<Severity, number> = { info: 1, low: 2, medium: 3, high: 4 };

function categoryAndType(view: RecordView): { kind: string; category: string[]; type: string[] } {
  const r = view.record;
  const { cls, activity_id } = ocsfMapping(r.event_type);
  const denied = r.outcome === 'failure' ? ['denied'] : [];
  switch (cls.class_uid) {
    case 3002:
      return { kind: 'event', category: ['authentication'], type: [activity_id === 1 ? 'start' : activity_id === 2 ? 'end' : 'info', ...denied] };
    case 3001:
      return { kind: 'event', category: ['iam'], type: ['user', r.event_type === 'user.created' ? 'creation' : 'change', ...denied] };
    case 6003:
      return { kind: 'event', category: ['database'], type: ['access'] };
    case 2004:
      return { kind: 'alert', category: ['intrusion_detection'], type: ['indicator'] };
    default:
      return { kind: 'event', category: ['authentication'], type: ['info'] };
  }
}

export function toEcs(view: RecordView, ctx: FormatContext): Record<string, unknown> {
  const r = view.record;
  const { kind, category, type } = categoryAndType(view);
  const doc: Record<string, unknown> = {
    '@timestamp': r.occurred_at,
    ecs: { version: ECS_VERSION },
    event: {
      id: r.event_id,
      sequence: r.seq,
      kind,
      category,
      type,
      action: r.event_type,
      outcome: r.outcome === 'success' || r.outcome === 'failure' ? r.outcome : 'unknown',
      ...(r.reason !== null ? { reason: r.reason } : {}),
      severity: SEVERITY[view.severity],
      dataset: 'authtrail.audit',
      module: 'authtrail',
      provider: 'authtrail',
    },
    observer: { hostname: ctx.hostname, product: 'authtrail', vendor: 'authtrail', version: ctx.version, type: 'authentication' },
    authtrail: {
      seq: r.seq,
      hash: r.hash,
      prev_hash: r.prev_hash,
      mfa_method: r.mfa_method,
      device_id: r.device_id,
      session_id: r.session_id,
      actor_id: r.actor_id,
      details: view.details,
    },
  };
  const user: Record<string, unknown> = {};
  const subject: Record<string, unknown> = {};
  if (r.username !== null) subject.name = r.username;
  if (r.user_id !== null) subject.id = r.user_id;
  if (r.actor_id !== null && r.actor_id !== r.user_id && category[0] === 'iam') {
    // An admin acting on another account: ECS puts the one who acted in `user` and the account in `user.target`.
    user.id = r.actor_id;
    if (Object.keys(subject).length > 0) user.target = subject;
  } else {
    Object.assign(user, subject);
  }
  if (Object.keys(user).length > 0) doc.user = user;
  if (r.ip !== null) doc.source = { ip: r.ip };
  if (r.user_agent !== null) doc.user_agent = { original: r.user_agent };
  if (r.request_id !== null) doc.http = { request: { id: r.request_id } };
  const related: Record<string, string[]> = {};
  if (r.ip !== null) related.ip = [r.ip];
  if (r.username !== null) related.user = [r.username];
  if (Object.keys(related).length > 0) doc.related = related;
  return doc;
}
