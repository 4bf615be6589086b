import type { ChainRecord } from '../../src/audit/canonical.js';
import type { AuditEvent } from '../../src/audit/record.js';

/** A realistic login-attempt event; `i` varies every field a little. */
export function sampleEvent(i: number, overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    eventType: i % 3 === 0 ? 'login.succeeded' : 'login.failed',
    outcome: i % 3 === 0 ? 'success' : 'failure',
    reason: i % 3 === 0 ? null : 'invalid_credentials',
    username: `user${i % 17}@example.com`,
    userId: i % 5 === 0 ? null : '6f1c2a9e-0b7d-4c55-9a43-3e2f1d0c9b8a',
    ip: i % 2 === 0 ? `10.0.${i % 250}.${(i * 7) % 250}` : `2001:db8::${(i % 65535).toString(16)}`,
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64) test',
    deviceId: `device-${i % 11}`,
    mfaMethod: i % 4 === 0 ? 'totp' : 'none',
    requestId: `req-${i}`,
    details: { attempt: i, note: 'ünïcödé ✓' },
    ...overrides,
  };
}

/** The example record of docs/audit-chain.md, whose test vectors (chain hash, leaf hash, checkpoint) the docs publish. */
export const DOC_EXAMPLE_RECORD: ChainRecord = {
  seq: 1,
  event_id: '0190f3a4-5b6c-7d8e-9f00-112233445566',
  occurred_at: '2026-01-02T03:04:05.678901Z',
  event_type: 'login.succeeded',
  outcome: 'success',
  reason: null,
  username: 'alice',
  user_id: '6f1c2a9e-0b7d-4c55-9a43-3e2f1d0c9b8a',
  ip: '192.0.2.1',
  user_agent: 'curl/8.5.0',
  device_id: '',
  mfa_method: 'none',
  session_id: null,
  request_id: 'r-1',
  actor_id: null,
  details: '{"amr":["pwd"]}',
};
