import type { Role } from './api';

/** Shapes of the gateway's answers (docs/api.md). */
export interface AuditRecord {
  seq: number;
  event_id: string;
  occurred_at: string;
  event_type: string;
  outcome: 'success' | 'failure';
  reason: string | null;
  username: string | null;
  user_id: string | null;
  ip: string | null;
  user_agent: string | null;
  device_id: string | null;
  mfa_method: string | null;
  session_id: string | null;
  request_id: string | null;
  actor_id: string | null;
  details: Record<string, unknown> | null;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface Summary {
  from: string;
  to: string;
  bucket: 'hour' | 'day';
  buckets: Array<{ start: string; success: number; failure: number }>;
  top_failing_ips: Array<{ ip: string; failures: number }>;
  most_targeted_usernames: Array<{ username: string; distinct_ips: number; failures: number }>;
  spraying_ips: Array<{ ip: string; distinct_usernames: number; failures: number }>;
  by_event_type: Array<{ event_type: string; outcome: 'success' | 'failure'; count: number }>;
}

export interface Lockout {
  username: string;
  failures: number;
  locked_since: string;
  locked_until: string;
  lock_count: number;
}

export interface Alert {
  id: string;
  seq: number;
  raised_at: string;
  rule: string;
  severity: string;
  key: string;
  status: string;
  details: Record<string, unknown>;
}

export interface VerifyResult {
  valid: boolean;
  checked: number;
  head_seq: number;
  first_invalid_seq?: number;
  problem?: string;
  detail?: string;
  checkpoints_checked: number;
  from_seq: number;
}

export interface Checkpoint {
  seq: number;
  hash: string;
  signed_at: string;
  key_id: string;
  root_hash: string | null;
  note: string | null;
}

export interface InclusionProof {
  seq: number;
  leaf_index: number;
  leaf_hash: string;
  tree_size: number;
  root_hash: string;
  inclusion_proof: string[];
  checkpoint: string;
}

export interface UserSummary {
  id: string;
  username: string;
  roles: Role[];
  status: 'active' | 'disabled';
  mfa_enabled: boolean;
  created_at: string;
}

/** The event types of the audit log, from the gateway's own closed list (docs/api.md, "Audit events"). */
export { AUDIT_EVENT_TYPES as EVENT_TYPES } from '../../src/audit/vocabulary.js';
