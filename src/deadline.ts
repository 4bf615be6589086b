import { AsyncLocalStorage } from 'node:async_hooks';

/** The request's deadline passed before its work was done. */
export class DeadlineExceededError extends Error {
  readonly code = 'ERR_DEADLINE_EXCEEDED';
  constructor(readonly deadlineMs: number) {
    super(`the request did not finish within its ${deadlineMs} ms deadline`);
    this.name = 'DeadlineExceededError';
  }
}

type State = 'running' | 'answering' | 'expired';

/**
 * One request's deadline (`REQUEST_DEADLINE_MS`). While the request runs, the work it starts is
 * bounded by the time left: database calls (src/db/database.ts) and its audit records' wait in
 * the writer's queue (src/audit/chain-writer.ts). It ends in one of two ways:
 *
 * - the request starts answering by itself (its headers are sent, or it {@link claim}s a success):
 *   from then on nothing is bounded, so a long export keeps streaming;
 * - the deadline passes first ({@link expire}): the request is answered 503, {@link signal} aborts,
 *   and whatever finishes later must not succeed (a session started too late is revoked).
 */
export class Deadline {
  readonly #controller = new AbortController();
  readonly #at: number;
  readonly #answered: () => boolean;
  #state: State = 'running';

  /** `answered` tells whether the request already started its answer (e.g. `res.headersSent`). */
  constructor(
    readonly ms: number,
    answered: () => boolean = () => false,
  ) {
    this.#at = performance.now() + ms;
    this.#answered = answered;
  }

  /** Aborts when the deadline passes before the request answered. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get expired(): boolean {
    return this.#state === 'expired';
  }

  #answering(): boolean {
    if (this.#state === 'running' && this.#answered()) this.#state = 'answering';
    return this.#state === 'answering';
  }

  /** Milliseconds left: 0 once expired, Infinity once the request is answering by itself. */
  remainingMs(): number {
    if (this.#state === 'expired') return 0;
    if (this.#answering()) return Infinity;
    return Math.max(0, this.#at - performance.now());
  }

  /**
   * Milliseconds left for work other than the request's final audit record: a reserve (a tenth
   * of the deadline, at most 500 ms) is kept, so that when a database call runs out of time the
   * refusal that follows can still be recorded before the deadline answers for it.
   */
  timeForWorkMs(): number {
    const remaining = this.remainingMs();
    return remaining === Infinity ? Infinity : Math.max(0, remaining - Math.min(500, this.ms / 10));
  }

  /**
   * The request is about to answer with success: true, and the deadline no longer fires, unless it
   * already did (false: the client was told 503, so the success must be undone, never sent).
   */
  claim(): boolean {
    if (this.#state === 'expired') return false;
    this.#state = 'answering';
    return true;
  }

  /**
   * The deadline passed. True when the request had not started answering: it is now expired,
   * {@link signal} aborts, and the caller answers 503. False when it was already answering.
   */
  expire(): boolean {
    if (this.#state !== 'running' || this.#answering()) return false;
    this.#state = 'expired';
    this.#controller.abort(new DeadlineExceededError(this.ms));
    return true;
  }
}

const storage = new AsyncLocalStorage<Deadline | undefined>();

/** The deadline of the request this code runs for, if any. */
export const currentDeadline = (): Deadline | undefined => storage.getStore();

/** Runs `fn`, and everything it starts, under `deadline`. */
export function runWithDeadline<T>(deadline: Deadline, fn: () => T): T {
  return storage.run(deadline, fn);
}

/**
 * Runs `fn` free of the current request's deadline: the undo of a fail-closed action, which must
 * run precisely when the deadline has passed, and work shared by many requests (the audit writer's
 * transactions).
 */
export function outsideDeadline<T>(fn: () => T): T {
  return storage.run(undefined, fn);
}
