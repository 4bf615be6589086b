import type { StoredRecord } from '../audit/follow.js';
import type { Formatted } from './formats/index.js';

/**
 * Where one sink's records go. `send` resolves only once the batch is delivered as far as the
 * sink can tell (an HTTP 2xx; a syslog connection that stayed up after the write) and rejects
 * otherwise; the sink's loop (src/forward/sink-loop.ts) then resends from its cursor. Calls are
 * made in seq order and up to `depth` may be in flight at once; a sink that must keep them in
 * order on the wire (one HTTP request at a time, one TCP stream) does so itself.
 */
export interface Sink {
  readonly name: string;
  /** Most batches in flight at once. */
  readonly depth: number;
  send(messages: Formatted[], records: StoredRecord[]): Promise<void>;
  close(): Promise<void>;
}

/** A delivery failed. `status` is the HTTP status when the sink answered; the body is never kept. */
export class SinkError extends Error {
  readonly code = 'ERR_FORWARD_SINK';
  constructor(
    message: string,
    options?: { cause?: unknown; status?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SinkError';
    this.status = options?.status;
  }

  readonly status: number | undefined;

  /** A 4xx other than 408 and 429: the sink refuses these records as sent; retrying alone will not help. */
  get refused(): boolean {
    return this.status !== undefined && this.status >= 400 && this.status < 500 && this.status !== 408 && this.status !== 429;
  }
}
