import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import ipaddr from 'ipaddr.js';
import { GENESIS_HASH, canonicalRecord, chainHash, ipBytes, type ChainRecord } from '../../src/audit/canonical.js';
import { checkpointMessage } from '../../src/audit/checkpoints.js';
import { DOC_EXAMPLE_RECORD } from '../helpers/events.js';

const example: ChainRecord = DOC_EXAMPLE_RECORD;

// Written out byte by byte from the documented layout, independently of the encoder.
const text = (s: string): string => {
  const bytes = Buffer.from(s, 'utf8');
  return bytes.length.toString(16).padStart(8, '0') + bytes.toString('hex');
};
const NULL = 'ffffffff';
const expectedHex = [
  text('authtrail-audit-v1'), text('1'), text(example.event_id), text(example.occurred_at), text('login.succeeded'),
  text('success'), NULL, text('alice'), text(example.user_id!), '00000004c0000201', text('curl/8.5.0'), '00000000',
  text('none'), NULL, text('r-1'), NULL, text('{"amr":["pwd"]}'),
].join('');

describe('canonical record form', () => {
  it('when encoded, then the bytes are exactly the documented layout', () => {
    assert.equal(canonicalRecord(example).toString('hex'), expectedHex);
  });

  it('when hashed, then hash = SHA-256(32 zero bytes ‖ canonical) and equals the vector published in the docs', () => {
    const hash = chainHash(GENESIS_HASH, example);
    const independent = crypto.createHash('sha256').update(Buffer.alloc(32)).update(Buffer.from(expectedHex, 'hex')).digest();
    assert.ok(hash.equals(independent));
    const doc = fs.readFileSync(new URL('../../docs/audit-chain.md', import.meta.url), 'utf8');
    assert.ok(doc.includes(hash.toString('hex')), 'docs/audit-chain.md publishes this hash as its test vector');
    assert.ok(doc.includes(expectedHex.slice(0, 64)), 'docs/audit-chain.md shows the canonical bytes');
  });

  it('when a field is NULL rather than empty, then the hash differs', () => {
    const nullDevice = chainHash(GENESIS_HASH, { ...example, device_id: null });
    assert.ok(!nullDevice.equals(chainHash(GENESIS_HASH, example)));
  });

  it('when text moves between adjacent fields, then the hash differs (length prefixes)', () => {
    const a = chainHash(GENESIS_HASH, { ...example, username: 'ab', user_agent: 'c' });
    const b = chainHash(GENESIS_HASH, { ...example, username: 'a', user_agent: 'bc' });
    assert.ok(!a.equals(b));
  });

  it('when an IPv6 address is written in two notations, then it hashes the same 16 bytes', () => {
    const long = chainHash(GENESIS_HASH, { ...example, ip: '2001:0db8:0000:0000:0000:0000:0000:0001' });
    const short = chainHash(GENESIS_HASH, { ...example, ip: '2001:db8::1' });
    assert.ok(long.equals(short));
  });

  it('when a checkpoint message is built, then it is the same length-prefixed layout', () => {
    const hash = Buffer.alloc(32, 0xab);
    const msg = checkpointMessage(42, hash, '2026-01-02T03:04:05.678901Z');
    assert.equal(msg.toString('hex'), text('authtrail-checkpoint-v1') + text('42') + '00000020' + hash.toString('hex') + text('2026-01-02T03:04:05.678901Z'));
  });
});

describe('address bytes', () => {
  it('when an address is in any valid notation, then its bytes equal those ipaddr.js parses', () => {
    const samples = [
      '2001:db8::1', '::', '::1', 'fe80::', '1::', '2001:db8:0:0:1:0:0:1', '2001:DB8:85a3:8d3:1319:8a2e:370:7348',
      '::ffff:1.2.3.4', '64:ff9b::192.0.2.33', '0.0.0.0', '255.255.255.255', '10.0.0.1',
    ];
    for (let i = 0; i < 500; i++) {
      const groups = Array.from({ length: 8 }, () => (Math.random() < 0.3 ? '0' : Math.floor(Math.random() * 65536).toString(16)));
      samples.push(ipaddr.IPv6.parse(groups.join(':')).toString(), groups.join(':'));
      samples.push(Array.from({ length: 4 }, () => Math.floor(Math.random() * 256)).join('.'));
    }
    for (const ip of samples) {
      assert.equal(ipBytes(ip).toString('hex'), Buffer.from(ipaddr.parse(ip).toByteArray()).toString('hex'), ip);
    }
  });

  it('when the text is not an address, then it is refused rather than hashed as something else', () => {
    for (const bad of ['1:2:3:4:5:6:7:8:9', '1::2::3', '12345::', ':::', '2001:db8::1:2:3:4:5:6', '256.1.1.1', '1.2.3']) {
      assert.throws(() => ipBytes(bad), Error, bad);
    }
  });
});
