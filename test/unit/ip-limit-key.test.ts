import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ipLimitKey } from '../../src/lockout/lockout-service.js';

describe('per-IP limiter keys', () => {
  it('when addresses share an IPv6 /64, then they share one key; another /64 gets its own', () => {
    assert.equal(ipLimitKey('2001:db8:1:2:aaaa::1'), ipLimitKey('2001:db8:1:2:ffff:ffff:ffff:ffff'));
    assert.notEqual(ipLimitKey('2001:db8:1:2::1'), ipLimitKey('2001:db8:1:3::1'));
    assert.equal(ipLimitKey('2001:db8:1:2::1'), '2001:db8:1:2::/64');
  });

  it('when the address is IPv4 or IPv4-mapped IPv6, then each address is its own key', () => {
    assert.equal(ipLimitKey('203.0.113.7'), '203.0.113.7');
    assert.equal(ipLimitKey('::ffff:203.0.113.7'), '203.0.113.7');
    assert.notEqual(ipLimitKey('203.0.113.7'), ipLimitKey('203.0.113.8'));
  });
});
