import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { AlertEvaluator, localTime, withinHours } from '../../src/alerts/evaluate.js';
import { AlertRulesError, DEFAULT_RULES, loadAlertRules, parseAlertRules } from '../../src/alerts/rules.js';
import type { StoredRecord } from '../../src/audit/follow.js';

const problemsOf = (value: unknown): string[] => {
  try {
    parseAlertRules(value);
  } catch (err) {
    assert.ok(err instanceof AlertRulesError);
    return [...err.problems];
  }
  return assert.fail('the rules were accepted');
};

let seq = 0;
/** A stored record at `at` (ISO time), as the follower hands it over. */
function record(at: string, fields: Partial<StoredRecord>): StoredRecord {
  seq += 1;
  return {
    seq, event_id: `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`, occurred_at: at, event_type: 'login.failed', outcome: 'failure',
    reason: 'unknown_user', username: null, user_id: null, ip: null, user_agent: null, device_id: null, mfa_method: 'none', session_id: null,
    request_id: null, actor_id: null, details: null, hash: '', prev_hash: '', account: null, ...fields,
  };
}
const at = (secondsAfter: number) => new Date(Date.parse('2026-03-02T10:00:00Z') + secondsAfter * 1000).toISOString().replace('Z', '000Z');

describe('the alert rules file', () => {
  it('when no file is configured, then the documented defaults apply', () => {
    assert.equal(loadAlertRules(undefined), DEFAULT_RULES);
    assert.deepEqual(parseAlertRules({}), DEFAULT_RULES);
  });

  it('when a file overrides some members, then only those change', () => {
    const rules = parseAlertRules({ password_spraying: { threshold: 50 }, admin_off_hours: { time_zone: 'Europe/Berlin', start: '22:00', end: '06:00', weekdays: ['sat', 'sun'] } });
    assert.deepEqual(rules.password_spraying, { ...DEFAULT_RULES.password_spraying, threshold: 50 });
    assert.deepEqual(rules.credential_stuffing, DEFAULT_RULES.credential_stuffing);
    assert.deepEqual([rules.admin_off_hours.timeZone, rules.admin_off_hours.startMinute, rules.admin_off_hours.endMinute], ['Europe/Berlin', 22 * 60, 6 * 60]);
  });

  it('when members are misspelled, out of range or of the wrong kind, then each is named (never its value)', () => {
    assert.deepEqual(problemsOf({ password_spraying: { treshold: 3 } }), ['password_spraying: unknown member: "treshold"']);
    assert.deepEqual(problemsOf({ brute_force: {} }), ['(the file): unknown member: "brute_force"']);
    assert.match(problemsOf({ lockout_storm: { window_seconds: 0 } })[0]!, /^lockout_storm\.window_seconds: /);
    assert.match(problemsOf({ new_device: { enabled: 'yes' } })[0]!, /^new_device\.enabled: /);
    assert.match(problemsOf({ admin_off_hours: { time_zone: 'Mars/Olympus_Mons' } })[0]!, /^admin_off_hours\.time_zone: must be an IANA time zone/);
    assert.match(problemsOf({ admin_off_hours: { start: '7:00' } })[0]!, /^admin_off_hours\.start: must be HH:MM/);
    assert.match(problemsOf({ admin_off_hours: { weekdays: ['monday'] } })[0]!, /^admin_off_hours\.weekdays\.0: /);
    assert.deepEqual(problemsOf({ admin_off_hours: { start: '09:00', end: '09:00' } }), ['admin_off_hours.end: start and end must differ']);
    assert.deepEqual(problemsOf([]).length, 1);
  });

  it('when the file is missing or not JSON, then loading refuses it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-rules-'));
    try {
      assert.throws(() => loadAlertRules(path.join(dir, 'absent.json')), /cannot be read \(ENOENT\)/);
      fs.writeFileSync(path.join(dir, 'rules.json'), '{"password_spraying": {');
      assert.throws(() => loadAlertRules(path.join(dir, 'rules.json')), /is not JSON/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the window rules', () => {
  const rules = parseAlertRules({ password_spraying: { threshold: 3, window_seconds: 60, suppress_seconds: 300 } });

  it('count by the records\' own times: the same records spread over more than the window raise nothing, however fast they are read', () => {
    const slow = new AlertEvaluator(rules);
    const spread = [0, 61, 122, 183].map((s, i) => record(at(s), { ip: '203.0.113.1', account: `user${i}` }));
    assert.deepEqual(spread.flatMap((r) => slow.observe(r, { warm: false })), []);
    const fast = new AlertEvaluator(rules);
    const close = [0, 20, 40].map((s, i) => record(at(s), { ip: '203.0.113.1', account: `user${i}` }));
    const found = close.flatMap((r) => fast.observe(r, { warm: false }));
    assert.deepEqual(found.map((t) => [t.rule, t.key, t.count, t.seqs]), [['password_spraying', '203.0.113.1', 3, close.map((r) => r.seq)]]);
  });

  it('suppress a key by record time after an alert, and let it alert again once the period is over', () => {
    const e = new AlertEvaluator(rules);
    const first = [0, 1, 2].map((s, i) => record(at(s), { ip: '203.0.113.2', account: `u${i}` })).flatMap((r) => e.observe(r, { warm: false }));
    assert.equal(first.length, 1);
    e.noteRaised('password_spraying', '203.0.113.2', first[0]!.lastAt);
    const during = [100, 101, 102].map((s, i) => record(at(s), { ip: '203.0.113.2', account: `v${i}` })).flatMap((r) => e.observe(r, { warm: false }));
    assert.deepEqual(during, []);
    const later = [400, 401, 402].map((s, i) => record(at(s), { ip: '203.0.113.2', account: `w${i}` })).flatMap((r) => e.observe(r, { warm: false }));
    assert.equal(later.length, 1);
  });

  it('learn suppression from an alert.raised record, and never alert on alert records', () => {
    const e = new AlertEvaluator(rules);
    e.observe(record(at(0), { event_type: 'alert.raised', outcome: 'success', details: JSON.stringify({ rule: 'password_spraying', key: '203.0.113.3', last_at: at(0) }) }), { warm: true });
    const found = [1, 2, 3].map((s, i) => record(at(s), { ip: '203.0.113.3', account: `u${i}` })).flatMap((r) => e.observe(r, { warm: false }));
    assert.deepEqual(found, []);
  });
});

describe('admin working hours', () => {
  it('are read in the configured zone, across daylight saving time, and may span midnight', () => {
    const rule = parseAlertRules({ admin_off_hours: { time_zone: 'Europe/Berlin', start: '08:00', end: '18:00' } }).admin_off_hours;
    const format = new Intl.DateTimeFormat('en-US', { timeZone: 'Europe/Berlin', weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    // 07:30 UTC is 08:30 in Berlin in winter (inside) and 09:30 in summer (inside); 06:30 UTC in winter is 07:30 (outside).
    assert.equal(withinHours(rule, localTime(Date.parse('2026-01-14T07:30:00Z'), format)), true);
    assert.equal(withinHours(rule, localTime(Date.parse('2026-01-14T06:30:00Z'), format)), false);
    assert.equal(withinHours(rule, localTime(Date.parse('2026-07-15T06:30:00Z'), format)), true);
    assert.equal(withinHours(rule, localTime(Date.parse('2026-01-17T10:00:00Z'), format)), false, 'a Saturday');
    const night = parseAlertRules({ admin_off_hours: { time_zone: 'UTC', start: '22:00', end: '06:00', weekdays: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] } }).admin_off_hours;
    const utc = new Intl.DateTimeFormat('en-US', { timeZone: 'UTC', weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    assert.equal(withinHours(night, localTime(Date.parse('2026-01-14T23:15:00Z'), utc)), true);
    assert.equal(withinHours(night, localTime(Date.parse('2026-01-14T12:00:00Z'), utc)), false);
  });
});
