import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FIELD_LIMITS, normalizeIp, toChainRecord } from '../../src/audit/record.js';
import { createMicrosecondClock, formatMicros } from '../../src/audit/clock.js';

const ID = '0190f3a4-5b6c-7d8e-9f00-112233445566';
const AT = '2026-01-02T03:04:05.678901Z';

describe('audit record normalization', () => {
  it('when client text holds NUL bytes, CR/LF or lone surrogates, then it is stored safely and unambiguously', () => {
    const r = toChainRecord({ eventType: 'login.failed', outcome: 'failure', username: 'ev\u0000il\r\nx\uD800' }, ID, AT);
    assert.equal(r.username, 'ev\uFFFDil\r\nx\uFFFD');
  });

  it('when a username is 1 MB long, then it is cut to the limit and the cut is recorded in details', () => {
    const r = toChainRecord({ eventType: 'login.failed', outcome: 'failure', username: 'a'.repeat(1_000_000), details: { k: 1 } }, ID, AT);
    assert.equal(r.username?.length, FIELD_LIMITS.username);
    assert.deepEqual(JSON.parse(r.details!), { k: 1, truncated: ['username'] });
  });

  it('when the IP is IPv4-mapped IPv6 or has a zone, then it is stored as the plain host address', () => {
    assert.equal(normalizeIp('::ffff:203.0.113.9'), '203.0.113.9');
    assert.equal(normalizeIp('fe80::1%eth0'), 'fe80::1');
    assert.equal(normalizeIp('2001:0DB8::0001'), '2001:db8::1');
    assert.throws(() => normalizeIp('not-an-ip'), TypeError);
    assert.throws(() => normalizeIp('1.2.3'), TypeError, 'legacy short IPv4 forms are not addresses');
  });

  it('when an id is not a UUID or the event type is malformed, then it is refused as a programming error', () => {
    assert.throws(() => toChainRecord({ eventType: 'login.failed', outcome: 'failure', userId: '42' }, ID, AT), /UUID/);
    assert.throws(() => toChainRecord({ eventType: 'Login Failed' as never, outcome: 'failure' }, ID, AT), /dotted/);
    assert.throws(() => toChainRecord({ eventType: 'login.failed', outcome: 'maybe' as 'failure' }, ID, AT), /outcome/);
  });

  it('when details are too large, then the event is refused rather than stored partially', () => {
    assert.throws(() => toChainRecord({ eventType: 'login.failed', outcome: 'success', details: { blob: 'x'.repeat(10_000) } }, ID, AT), /details/);
  });

  it('when uppercase UUIDs are given, then they are stored lower case as PostgreSQL prints them', () => {
    const r = toChainRecord({ eventType: 'login.failed', outcome: 'success', userId: '6F1C2A9E-0B7D-4C55-9A43-3E2F1D0C9B8A' }, ID, AT);
    assert.equal(r.user_id, '6f1c2a9e-0b7d-4c55-9a43-3e2f1d0c9b8a');
  });
});

describe('microsecond clock', () => {
  it('when formatted, then it has six fraction digits and a Z', () => {
    assert.equal(formatMicros(1_767_323_045_678_901n), '2026-01-02T03:04:05.678901Z');
    const now = createMicrosecondClock()();
    assert.match(now, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/);
  });

  it('when read repeatedly, then it never runs backwards and stays within a few ms of Date.now', () => {
    const clock = createMicrosecondClock();
    let last = '';
    for (let i = 0; i < 10_000; i++) {
      const t = clock();
      assert.ok(t >= last, `${t} >= ${last}`);
      last = t;
    }
    const drift = Math.abs(Date.parse(last) - Date.now());
    assert.ok(drift < 50, `drift ${drift} ms`);
  });
});
