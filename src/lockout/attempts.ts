import type { AuditOutcome } from '../audit/record.js';
import type { AuditEventType, AuditReason } from '../audit/vocabulary.js';
import type { LockoutService, Refused } from './lockout-service.js';

/**
 * A login ends a lock cycle when it succeeds (the failure count starts over). A re-authentication
 * inside a session (current password or code on self-service routes) only gives its slot back:
 * whoever holds a session can make successes at will, so they must never reset the count.
 */
export type AttemptKind = 'login' | 'reauthentication';

/** An audit record the protocol writes for its attempt; the caller adds request, user and method. */
export interface AttemptEvent {
  eventType: AuditEventType;
  outcome: AuditOutcome;
  reason: AuditReason | null;
  details: Record<string, unknown> | null;
  /**
   * The record must be written even when its request has already been answered (its deadline
   * passed): `lockout.started` is the source of truth locks are restored from.
   */
  outlivesRequest?: boolean;
}

export interface AttemptOptions {
  /** The normalized username: the lockout key. */
  account: string;
  /** The client address, for the per-address limiter (IPv6 by /64); null when unknown. */
  ip: string | null;
  kind: AttemptKind;
  /** Event type of this route's refusals and wrong secrets, e.g. `login.failed`. */
  failureEventType: AuditEventType;
  /** Appends one audit record of this attempt. */
  record(event: AttemptEvent): Promise<unknown>;
}

export type AttemptStart = { ok: true; attempt: Attempt } | { ok: false; refusal: Refused };

const degradedDetails = (degraded: boolean): Record<string, unknown> | null => (degraded ? { lockout_store: 'degraded' } : null);

/**
 * One attempt to check a secret (password, TOTP or recovery code), README, "Login and lockout". Every route that checks
 * a secret goes through it, in this order: {@link beginAttempt} takes the address's point and the
 * account's slot atomically before any secret is checked (or records the refusal); then exactly one
 * verdict: {@link Attempt.fail} (the slot stays taken, the refusal and any lock start are recorded),
 * {@link Attempt.succeed} (a login resets the count; a re-authentication gives its slot back), or
 * {@link Attempt.release} (no verdict, e.g. the database failed: everything is given back, so an
 * outage locks no one). The address's point is given back on anything but a failure.
 */
export class Attempt {
  #judged = false;
  #degraded: boolean;

  constructor(
    private readonly lockout: LockoutService,
    private readonly options: AttemptOptions,
    /** 1..max: the slot this attempt holds in the account's lock cycle. */
    readonly slot: number,
    private readonly ipPoint: number,
    degraded: boolean,
  ) {
    this.#degraded = degraded;
  }

  /** Whether any store operation of this attempt fell back to the in-process limiter. */
  get degraded(): boolean {
    return this.#degraded;
  }

  /** Whether the verdict is in (failed, succeeded or released). */
  get judged(): boolean {
    return this.#judged;
  }

  /** Details every record of this attempt carries. */
  details(extra: Record<string, unknown> = {}): Record<string, unknown> | null {
    const details = { ...extra, ...degradedDetails(this.#degraded) };
    return Object.keys(details).length > 0 ? details : null;
  }

  #judge(): void {
    if (this.#judged) throw new Error('an attempt has exactly one verdict');
    this.#judged = true;
  }

  /** A wrong secret: counted toward the lockout and recorded; the last slot starts the lock (recorded too). */
  async fail(reason: AuditReason, options: { eventType?: AuditEventType; details?: Record<string, unknown> } = {}): Promise<void> {
    this.#judge();
    const { account, ip } = this.options;
    const record = (event: AttemptEvent) => this.options.record(event);
    const outcome = await this.lockout.recordFailure(account, this.slot, { ip, consumed: this.ipPoint });
    this.#degraded ||= outcome.degraded;
    await record({
      eventType: options.eventType ?? this.options.failureEventType,
      outcome: 'failure',
      reason,
      details: this.details({ attempt: this.slot, ...options.details }),
    });
    if (outcome.lockStarted) {
      await record({ eventType: 'lockout.started', outcome: 'success', reason: 'too_many_failures', details: this.details({ ...outcome.lockStarted }), outlivesRequest: true });
    }
  }

  /** The secret was right. Recording the success is the caller's (it knows what was achieved). */
  async succeed(): Promise<void> {
    this.#judge();
    const { account, ip, kind } = this.options;
    const [slot, address] = await Promise.all([
      kind === 'login' ? this.lockout.resetFailures(account) : this.lockout.releaseSlot(account),
      this.lockout.returnIpPoint(ip),
    ]);
    this.#degraded ||= slot.degraded || address.degraded;
  }

  /** No verdict (the database failed, or a second step follows): slot and point are given back. */
  async release(): Promise<void> {
    if (this.#judged) return;
    this.#judged = true;
    const { account, ip } = this.options;
    await Promise.all([this.lockout.releaseSlot(account), this.lockout.returnIpPoint(ip)]);
  }
}

/**
 * Starts an attempt: the account's slot, then the address's point. A refusal (account locked, or
 * address over its budget) costs no secret check, gives back what it took, and is recorded here, once.
 */
export async function beginAttempt(lockout: LockoutService, options: AttemptOptions): Promise<AttemptStart> {
  const refuse = async (refusal: Refused, degraded: boolean): Promise<AttemptStart> => {
    await options.record({ eventType: options.failureEventType, outcome: 'failure', reason: refusal.reason, details: degradedDetails(degraded) });
    return { ok: false, refusal };
  };
  // The account first: attempts on a locked account never touch the address's budget.
  const slot = await lockout.takeAttemptSlot(options.account);
  if (!slot.allowed) return refuse(slot, slot.degraded);
  let address;
  try {
    address = await lockout.takeIpPoint(options.ip);
  } catch (err) {
    await lockout.releaseSlot(options.account).catch(() => {});
    throw err;
  }
  if (!address.allowed) {
    await lockout.releaseSlot(options.account);
    return refuse(address, slot.degraded || address.degraded);
  }
  return { ok: true, attempt: new Attempt(lockout, options, slot.slot, address.consumed, address.degraded || slot.degraded) };
}
