import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import ipaddr from 'ipaddr.js';
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

  it('when IPv6 addresses are written in any valid hex-group form, then each is stored as ipaddr.js writes it', () => {
    // The reference: ipaddr.js's parser and RFC 5952 writer, which normalizeIp short-cuts for hex groups.
    const reference = (text: string): string => {
      const addr = ipaddr.parse(text) as ipaddr.IPv6;
      return addr.isIPv4MappedAddress() ? addr.toIPv4Address().toString() : addr.toString();
    };
    let seed = 12345;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const fixed = ['::', '::1', '1::', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', '1:0:0:2:0:0:0:3', '1:0:0:0:2:0:0:0', '0:0:1:0:0:0:0:0', '::ffff:1:2', '::fffe:1:2', '0:0:0:0:0:ffff:0102:0304', '2001:DB8:0:0:8:800:200C:417A', '0001:0002:0003:0004:0005:0006:0007:0008', '::ffff:0:1.2.3.4', '64:ff9b::192.0.2.33'];
    const generated: string[] = [];
    for (let n = 0; n < 20_000; n++) {
      const groups = Array.from({ length: 8 }, () => (random(3) === 0 ? 0 : random(4) === 0 ? random(16) : random(0x10000)));
      if (random(10) === 0) groups.splice(0, 6, 0, 0, 0, 0, 0, 0xffff);
      const texts = groups.map((g) => {
        const hex = g.toString(16).padStart(random(3) === 0 ? 4 : 1, '0');
        return random(4) === 0 ? hex.toUpperCase() : hex;
      });
      // Compress a random run of zero groups (any length, or none).
      const start = random(8);
      let end = start;
      while (end < 8 && groups[end] === 0 && random(5) !== 0) end += 1;
      generated.push(end > start ? `${texts.slice(0, start).join(':')}::${texts.slice(end).join(':')}` : texts.join(':'));
    }
    for (const text of [...fixed, ...generated]) {
      assert.equal(net.isIP(text), 6, text);
      assert.equal(normalizeIp(text), reference(text), text);
    }
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
