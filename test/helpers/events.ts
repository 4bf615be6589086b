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
