import crypto from 'node:crypto';
import fs from 'node:fs';
import type { Logger } from 'pino';
import { delayUnlessAborted } from '../delay.js';

/**
 * Delivers each raised alert to `AUDIT_ALERT_WEBHOOK_URL` as a JSON POST, signed with
 * HMAC-SHA256 of the exact body under the secret in `AUDIT_ALERT_WEBHOOK_SECRET_FILE`
 * (docs/alerts.md, "Webhook"). Delivery runs in the background on its own queue: the engine only
 * enqueues, so a slow or failing receiver never delays the engine, let alone a login. Failed
 * attempts (network, timeout, non-2xx) are retried with a doubling pause; each failure is counted
 * and logged with the alert id and the status, never the body.
 */

/** The signature header: `sha256=<hex HMAC-SHA256(secret, body)>`. */
export const SIGNATURE_HEADER = 'X-Authtrail-Signature';
export const ALERT_ID_HEADER = 'X-Authtrail-Alert-Id';

/** Most alerts waiting for delivery; beyond it the oldest is dropped (and counted as a failure). */
const MAX_QUEUED = 1000;

export interface WebhookOptions {
  url: string;
  /** HMAC key; absent: deliveries are unsigned. */
  secret?: Buffer | undefined;
  timeoutMs: number;
  /** Further attempts after a failed one. */
  retries: number;
  logger: Logger;
  /** Pause before retry `n` (0-based); default 1 s doubling up to 60 s. */
  backoffMs?: (attempt: number) => number;
}

export interface WebhookDelivery {
  /** Queues one alert's payload; returns at once. */
  send(alertId: string, payload: Record<string, unknown>): void;
  /** Called on every failed attempt and every dropped alert. */
  onFailure(listener: (reason: 'network' | 'timeout' | 'status' | 'dropped') => void): void;
  /** Waits for the queue to drain, at most `graceMs`, then abandons what is left. */
  close(graceMs?: number): Promise<void>;
}

/** `sha256=<hex>` of `body` under `secret`: what a receiver recomputes and compares in constant time. */
export function signBody(secret: Buffer, body: string | Buffer): string {
  return `sha256=${crypto.createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** The secret from its file: the file's bytes without a trailing line break; an empty file is refused. */
export function loadWebhookSecret(file: string): Buffer {
  let raw: Buffer;
  try {
    raw = fs.readFileSync(file);
  } catch (err) {
    throw new Error(`AUDIT_ALERT_WEBHOOK_SECRET_FILE: cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const secret = Buffer.from(raw.toString('utf8').replace(/\r?\n$/, ''), 'utf8');
  if (secret.length < 16) throw new Error('AUDIT_ALERT_WEBHOOK_SECRET_FILE: the secret must be at least 16 bytes');
  return secret;
}

export function createWebhookDelivery(options: WebhookOptions): WebhookDelivery {
  const backoff = options.backoffMs ?? ((n: number) => Math.min(60_000, 1000 * 2 ** n));
  const queue: Array<{ alertId: string; body: string }> = [];
  const listeners: Array<(reason: 'network' | 'timeout' | 'status' | 'dropped') => void> = [];
  const closing = new AbortController();
  let running: Promise<void> | undefined;

  const fail = (reason: 'network' | 'timeout' | 'status' | 'dropped') => {
    for (const l of listeners) l(reason);
  };

  async function deliver(item: { alertId: string; body: string }): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { 'content-type': 'application/json', [ALERT_ID_HEADER]: item.alertId };
      if (options.secret) headers[SIGNATURE_HEADER] = signBody(options.secret, item.body);
      let reason: 'network' | 'timeout' | 'status' | undefined;
      let status: number | undefined;
      try {
        const res = await fetch(options.url, {
          method: 'POST',
          headers,
          body: item.body,
          redirect: 'manual',
          signal: AbortSignal.any([AbortSignal.timeout(options.timeoutMs), closing.signal]),
        });
        await res.body?.cancel().catch(() => {});
        status = res.status;
        if (res.status >= 200 && res.status < 300) return;
        reason = 'status';
      } catch (err) {
        reason = (err as Error).name === 'TimeoutError' ? 'timeout' : 'network';
      }
      fail(reason);
      const last = attempt >= options.retries || closing.signal.aborted;
      options.logger.warn({ alert_id: item.alertId, attempt: attempt + 1, reason, status, gave_up: last }, 'alert webhook delivery failed');
      if (last) return;
      await delayUnlessAborted(backoff(attempt), closing.signal);
    }
  }

  async function drain(): Promise<void> {
    while (queue.length > 0 && !closing.signal.aborted) await deliver(queue.shift()!);
    running = undefined;
  }

  return {
    send(alertId, payload) {
      if (closing.signal.aborted) return;
      if (queue.length >= MAX_QUEUED) {
        const dropped = queue.shift()!;
        fail('dropped');
        options.logger.warn({ alert_id: dropped.alertId }, 'alert webhook queue full: oldest alert not delivered');
      }
      queue.push({ alertId, body: JSON.stringify(payload) });
      running ??= drain();
    },
    onFailure(listener) {
      listeners.push(listener);
    },
    async close(graceMs = 2000) {
      if (running) {
        const grace = setTimeout(() => closing.abort(), graceMs);
        await running;
        clearTimeout(grace);
      }
      closing.abort();
    },
  };
}
