import type { StoredRecord } from '../audit/follow.js';
import { USER_CHANGE_EVENT_TYPES, type AuditEventType } from '../audit/vocabulary.js';
import { ipLimitKey } from '../lockout/lockout-service.js';
import type { AlertRules, OffHoursRule, RuleName, Weekday } from './rules.js';

/**
 * The window rules of the alert engine, evaluated record by record in seq order (docs/alerts.md).
 * Every window is measured on the records' own `occurred_at`, never on the wall clock, so the same
 * records give the same alerts whenever and however often they are read: a new leader that
 * re-reads records another one already handled reaches the same verdicts, and the suppression it
 * learns from the `alert.raised` records already in the log keeps it from raising them twice.
 * Synchronous and free of I/O; `new_device` needs the log's history and is asked of the engine.
 */

/** Most seqs an alert lists; `first_seq`, `last_seq` and the counts always cover them all. */
export const MAX_ALERT_SEQS = 50;

/** A rule's condition held at a record: what an `alert.raised` record will say. */
export interface Trigger {
  rule: RuleName;
  key: string;
  /** What the threshold is compared with: distinct usernames or addresses, failures, lockouts. */
  count: number;
  /** Records that took part (in the window, and the triggering one). */
  records: number;
  /** Their seqs, ascending, at most {@link MAX_ALERT_SEQS} (first and last always kept). */
  seqs: number[];
  seqsTruncated: boolean;
  firstSeq: number;
  lastSeq: number;
  firstAt: string;
  lastAt: string;
  /** Rule-specific members of the details (never a secret, never another record's contents). */
  extra: Record<string, unknown>;
}

/** The admin actions `admin_off_hours` watches: changes to users, roles, locks and factors (docs/api.md). */
export const ADMIN_EVENT_TYPES: ReadonlySet<string> = new Set<AuditEventType>([...USER_CHANGE_EVENT_TYPES, 'lockout.cleared']);

interface Entry {
  seq: number;
  t: number;
  at: string;
  value: string;
}

/** Entries of one key in seq order, with how often each value occurs among them. */
class KeyWindow {
  entries: Entry[] = [];
  head = 0;
  counts = new Map<string, number>();

  add(entry: Entry): void {
    this.entries.push(entry);
    this.counts.set(entry.value, (this.counts.get(entry.value) ?? 0) + 1);
  }

  /** Drops entries at or before `cutoff` from the front (records arrive in seq order, nearly in time order). */
  prune(cutoff: number): void {
    while (this.head < this.entries.length && this.entries[this.head]!.t <= cutoff) {
      const value = this.entries[this.head]!.value;
      const n = this.counts.get(value)! - 1;
      if (n === 0) this.counts.delete(value);
      else this.counts.set(value, n);
      this.head += 1;
    }
    if (this.head > 64 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }

  get size(): number {
    return this.entries.length - this.head;
  }

  live(): Entry[] {
    return this.entries.slice(this.head);
  }
}

/** Sliding windows of one rule, by key. */
class Windows {
  private readonly keys = new Map<string, KeyWindow>();
  constructor(readonly windowMs: number) {}

  add(key: string, entry: Entry): KeyWindow {
    let w = this.keys.get(key);
    if (!w) {
      w = new KeyWindow();
      this.keys.set(key, w);
    }
    w.prune(entry.t - this.windowMs);
    w.add(entry);
    return w;
  }

  get(key: string, now: number): KeyWindow | undefined {
    const w = this.keys.get(key);
    w?.prune(now - this.windowMs);
    return w;
  }

  delete(key: string): void {
    this.keys.delete(key);
  }

  /** Forgets every key whose entries have all left the window at `now`. */
  sweep(now: number): void {
    for (const [key, w] of this.keys) {
      w.prune(now - this.windowMs);
      if (w.size === 0) this.keys.delete(key);
    }
  }

  get entryCount(): number {
    let n = 0;
    for (const w of this.keys.values()) n += w.size;
    return n;
  }
}

function triggerOf(rule: RuleName, key: string, count: number, entries: readonly Entry[], extra: Record<string, unknown>): Trigger {
  const first = entries[0]!;
  const last = entries[entries.length - 1]!;
  const all = entries.map((e) => e.seq);
  const seqs = all.length <= MAX_ALERT_SEQS ? all : [...all.slice(0, MAX_ALERT_SEQS - 1), last.seq];
  return {
    rule,
    key,
    count,
    records: entries.length,
    seqs,
    seqsTruncated: all.length > seqs.length,
    firstSeq: first.seq,
    lastSeq: last.seq,
    firstAt: first.at,
    lastAt: last.at,
    extra,
  };
}

const WEEKDAY_OF: Record<string, Weekday> = { Mon: 'mon', Tue: 'tue', Wed: 'wed', Thu: 'thu', Fri: 'fri', Sat: 'sat', Sun: 'sun' };

/** Weekday and minute after midnight of `t` in `timeZone`. */
export function localTime(t: number, format: Intl.DateTimeFormat): { weekday: Weekday; minute: number; text: string } {
  const parts = Object.fromEntries(format.formatToParts(t).map((p) => [p.type, p.value]));
  const hour = Number(parts.hour) % 24;
  const minute = Number(parts.minute);
  return { weekday: WEEKDAY_OF[parts.weekday!]!, minute: hour * 60 + minute, text: `${String(hour).padStart(2, '0')}:${parts.minute}` };
}

/** Whether a local time is inside the rule's working hours and weekdays. */
export function withinHours(rule: OffHoursRule, local: { weekday: Weekday; minute: number }): boolean {
  if (!rule.weekdays.includes(local.weekday)) return false;
  const { startMinute: s, endMinute: e } = rule;
  return s < e ? local.minute >= s && local.minute < e : local.minute >= s || local.minute < e;
}

/** Sweep idle keys every so many records, so memory follows the records inside the windows. */
const SWEEP_EVERY = 1000;

/** The window rules and the suppression of repeated alerts, fed the log in seq order. */
export class AlertEvaluator {
  private readonly spraying: Windows;
  private readonly stuffing: Windows;
  private readonly storm: Windows;
  private readonly failures: Windows;
  /** `rule\0key` → until when (record time, ms) further triggers raise nothing. */
  private readonly suppressed = new Map<string, number>();
  private readonly offHoursFormat: Intl.DateTimeFormat;
  private seen = 0;
  private latest = 0;

  constructor(private readonly rules: AlertRules) {
    this.spraying = new Windows(rules.password_spraying.windowSeconds * 1000);
    this.stuffing = new Windows(rules.credential_stuffing.windowSeconds * 1000);
    this.storm = new Windows(rules.lockout_storm.windowSeconds * 1000);
    this.failures = new Windows(rules.success_after_failures.windowSeconds * 1000);
    this.offHoursFormat = new Intl.DateTimeFormat('en-US', {
      timeZone: rules.admin_off_hours.timeZone,
      weekday: 'short',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    });
  }

  /**
   * Feeds one record. `warm`: only fills the windows (records a previous leader already judged);
   * otherwise returns the triggers the record completes, already filtered by suppression. The
   * caller raises each and then calls {@link noteRaised}.
   */
  observe(r: StoredRecord, options: { warm: boolean }): Trigger[] {
    const t = Date.parse(r.occurred_at);
    this.latest = Math.max(this.latest, t);
    if (++this.seen % SWEEP_EVERY === 0) this.sweep();
    if (r.event_type === 'alert.raised') {
      this.learnFromAlert(r);
      return [];
    }
    // The engine never alerts on alerts (its own records or a resolution).
    if (r.event_type.startsWith('alert.')) return [];
    const entry = (value: string): Entry => ({ seq: r.seq, t, at: r.occurred_at, value });
    const found: Trigger[] = [];
    const rules = this.rules;

    if (r.event_type === 'login.failed' && r.account !== null) {
      const network = r.ip === null ? null : ipLimitKey(r.ip);
      if (rules.password_spraying.enabled && network !== null) {
        const w = this.spraying.add(network, entry(r.account));
        if (w.counts.size >= rules.password_spraying.threshold) {
          found.push(triggerOf('password_spraying', network, w.counts.size, w.live(), { distinct_usernames: w.counts.size }));
        }
      }
      if (rules.credential_stuffing.enabled && network !== null) {
        const w = this.stuffing.add(r.account, entry(network));
        if (w.counts.size >= rules.credential_stuffing.threshold) {
          found.push(triggerOf('credential_stuffing', r.account, w.counts.size, w.live(), { distinct_addresses: w.counts.size }));
        }
      }
      if (rules.success_after_failures.enabled) this.failures.add(r.account, entry(String(r.seq)));
    }

    if (r.event_type === 'lockout.started' && rules.lockout_storm.enabled) {
      const w = this.storm.add('cluster', entry(String(r.seq)));
      if (w.size >= rules.lockout_storm.threshold) found.push(triggerOf('lockout_storm', 'cluster', w.size, w.live(), { lockouts: w.size }));
    }

    if (r.event_type === 'login.succeeded' && r.account !== null && rules.success_after_failures.enabled) {
      const w = this.failures.get(r.account, t);
      const failed = w?.size ?? 0;
      if (w && failed >= rules.success_after_failures.threshold) {
        found.push(triggerOf('success_after_failures', r.account, failed, [...w.live(), entry('success')], { failures: failed, success_seq: r.seq }));
      }
      // A successful login ends the run of failures, as it resets the lockout count.
      this.failures.delete(r.account);
    }

    // An admin's action through the API carries the admin as actor_id; the bootstrap admin and the CLI have none.
    if (ADMIN_EVENT_TYPES.has(r.event_type) && r.actor_id !== null && rules.admin_off_hours.enabled) {
      const local = localTime(t, this.offHoursFormat);
      if (!withinHours(rules.admin_off_hours, local)) {
        found.push(
          triggerOf('admin_off_hours', r.actor_id, 1, [entry(r.event_type)], {
            event_type: r.event_type,
            actor_id: r.actor_id,
            user_id: r.user_id,
            local_time: local.text,
            weekday: local.weekday,
            time_zone: rules.admin_off_hours.timeZone,
          }),
        );
      }
    }
    return options.warm ? [] : found.filter((trigger) => !this.isSuppressed(trigger.rule, trigger.key, t));
  }

  /** Whether an alert of `rule` for `key` at record time `t` would repeat one already raised. */
  isSuppressed(rule: RuleName, key: string, t: number): boolean {
    const until = this.suppressed.get(`${rule}\u0000${key}`);
    return until !== undefined && t < until;
  }

  /** An alert was raised for `trigger`: the same rule and key stay quiet for its suppression period. */
  noteRaised(rule: RuleName, key: string, lastAt: string): void {
    const until = Date.parse(lastAt) + this.rules[rule].suppressSeconds * 1000;
    const name = `${rule}\u0000${key}`;
    this.suppressed.set(name, Math.max(until, this.suppressed.get(name) ?? 0));
  }

  /** An `alert.raised` record in the log (this leader's or an earlier one's) suppresses its rule and key. */
  learnFromAlert(r: Pick<StoredRecord, 'details'>): void {
    if (r.details === null) return;
    let details: { rule?: unknown; key?: unknown; last_at?: unknown };
    try {
      details = JSON.parse(r.details) as typeof details;
    } catch {
      return;
    }
    const { rule, key, last_at: lastAt } = details;
    if (typeof rule !== 'string' || !(rule in this.rules) || typeof key !== 'string' || typeof lastAt !== 'string') return;
    if (!Number.isFinite(Date.parse(lastAt))) return;
    this.noteRaised(rule as RuleName, key, lastAt);
  }

  private sweep(): void {
    for (const w of [this.spraying, this.stuffing, this.storm, this.failures]) w.sweep(this.latest);
    for (const [name, until] of this.suppressed) if (until <= this.latest) this.suppressed.delete(name);
  }

  /** Entries held in all windows (for tests and the docs' memory figures). */
  get entries(): number {
    return this.spraying.entryCount + this.stuffing.entryCount + this.storm.entryCount + this.failures.entryCount;
  }
}
