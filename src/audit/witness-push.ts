import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Queryable } from '../db/database.js';
import { outsideDeadline } from '../deadline.js';
import { formatAddCheckpoint, parseSignatureLines, parseSizeBody } from '../witness/protocol.js';
import type { ChainWriter } from './chain-writer.js';
import { consistencyProof } from './merkle.js';
import { KEY_TYPE_COSIGNATURE_V1, parseCheckpoint, parseVerifierKey, verifyCosignature, type NoteVerifierKey } from './note.js';
import { storedTree } from './tree.js';
import { lastCosignedSize, latestCheckpointCosigners, storeCosignatures } from './witness-cosignatures.js';

/** Why a witness refused a checkpoint: the reason of the `audit.witness_refused` record. */
export type WitnessRefusalReason = 'witness_rollback' | 'witness_fork' | 'witness_inconsistent' | 'witness_rejected';

/** The `reason` labels of `authtrail_witness_refusals_total`. */
export const WITNESS_REFUSAL_METRIC_REASONS = ['witness_rollback', 'witness_fork', 'witness_inconsistent', 'witness_rejected', 'invalid_cosignature'] as const;

/** What is pushed: a checkpoint as the checkpointer stored it (legacy checkpoints without a note are skipped). */
export interface PushableCheckpoint {
  readonly seq: number;
  readonly note?: string | undefined;
}

export interface WitnessRefusal {
  readonly reason: WitnessRefusalReason;
  readonly status: number;
  readonly at: string;
  readonly checkpoint_size: number;
  readonly witness_size: number | null;
}

/** One witness as /readyz, /metrics and the security API show it. */
export interface WitnessView {
  readonly name: string;
  readonly url: string;
  readonly verifier_key: string;
  /** The largest checkpoint size whose cosignature by this witness is stored (0: none). */
  readonly cosigned_size: number;
  /** It cosigned the latest checkpoint. */
  readonly cosigned_latest: boolean;
  readonly last_success_at: string | null;
  /** The last failure to get a cosignature that was no refusal (unreachable, 5xx, a cosignature that does not verify). */
  readonly last_error: string | null;
  readonly last_refusal: WitnessRefusal | null;
}

export interface WitnessReport {
  readonly witnesses: WitnessView[];
  readonly quorum: {
    readonly required: number;
    /** Size of the latest stored checkpoint. */
    readonly checkpoint_size: number;
    readonly cosigned_by: string[];
    readonly met: boolean;
  };
}

export interface WitnessPusher {
  /** The configured witnesses' names, in configuration order. */
  readonly names: readonly string[];
  /** Queues the checkpoint for every witness and returns at once; pushing runs in the background. */
  push(checkpoint: PushableCheckpoint): void;
  /** Each witness's latest stored cosignature and whether the latest checkpoint has its quorum. */
  report(): Promise<WitnessReport>;
  /** Called on every refusal, and on every cosignature that failed to verify (`invalid_cosignature`). */
  onRefusal(listener: (witness: string, reason: WitnessRefusalReason | 'invalid_cosignature') => void): void;
  /** Resolves when nothing is being pushed (tests, shutdown). */
  idle(): Promise<void>;
  /** Stops taking checkpoints; lets pushes in flight finish for at most the request timeout. */
  close(): Promise<void>;
}

export interface WitnessPusherOptions {
  /** Reads cosignatures and the tree; writes cosignatures. */
  db: Pick<Queryable, 'query'>;
  /** Records `audit.witness_refused`. */
  writer: Pick<ChainWriter, 'recordEvent'>;
  witnesses: Config['witnesses'];
  logger: Logger;
  /** Pause before the n-th retry of a failed request (default 250 ms · 2^n, at most 5 s). */
  backoffMs?: (attempt: number) => number;
}

interface WitnessAnswerRaw {
  status: number;
  body: string;
}

/** The request could not be completed (network, timeout, 5xx): no statement by the witness. */
class WitnessUnavailableError extends Error {}

interface WitnessSlot {
  readonly name: string;
  readonly url: string;
  readonly verifierKey: string;
  readonly key: NoteVerifierKey;
  pending: PushableCheckpoint | undefined;
  running: Promise<void> | undefined;
  lastSuccessAt: string | null;
  lastError: string | null;
  lastRefusal: WitnessRefusal | null;
  /** The refusal last recorded in the audit log, so a lasting refusal is recorded once, not at every checkpoint. */
  recorded: string | undefined;
}

/** Parses the configured witness keys; a key that is not an Ed25519 cosignature key (type 0x04) is refused at start. */
function slotsOf(witnesses: Config['witnesses']): WitnessSlot[] {
  return witnesses.list.map((w, i) => {
    const key = parseVerifierKey(w.verifierKey);
    if (!key || key.type !== KEY_TYPE_COSIGNATURE_V1) {
      throw new Error(`AUDIT_WITNESSES: entry ${i + 1} is not a cosignature verifier key (type 0x04, as npm run witness prints it)`);
    }
    return {
      name: key.name, url: w.url, verifierKey: w.verifierKey, key, pending: undefined, running: undefined,
      lastSuccessAt: null, lastError: null, lastRefusal: null, recorded: undefined,
    };
  });
}

/**
 * Sends each new checkpoint to the configured C2SP tlog-witnesses (POST add-checkpoint with a
 * consistency proof from the size the witness last cosigned, as stored in audit_cosignatures),
 * verifies every returned cosignature with the configured witness key and stores it. On 409 it
 * retries once from the witness's own size. A refusal that no retry fixes — the witness holds a
 * larger tree than this database ever checkpointed, or the proof from its size fails — is an alarm:
 * an error log line and an `audit.witness_refused` record. Everything runs in the background, one
 * request per witness at a time, newest checkpoint first; nothing here ever waits on a login.
 */
export function createWitnessPusher(options: WitnessPusherOptions): WitnessPusher {
  const { db, writer, logger } = options;
  const { timeoutMs, retries, quorum } = options.witnesses;
  const backoff = options.backoffMs ?? ((n: number) => Math.min(5000, 250 * 2 ** n));
  const slots = slotsOf(options.witnesses);
  const listeners: Array<(witness: string, reason: WitnessRefusalReason | 'invalid_cosignature') => void> = [];
  const closing = new AbortController();
  let closed = false;

  async function post(slot: WitnessSlot, body: string): Promise<WitnessAnswerRaw> {
    for (let attempt = 0; ; attempt++) {
      let problem: string;
      try {
        const res = await fetch(`${slot.url}/add-checkpoint`, {
          method: 'POST',
          body,
          headers: { 'Content-Type': 'text/plain; charset=utf-8' },
          redirect: 'error',
          signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), closing.signal]),
        });
        const text = await res.text();
        if (res.status < 500) return { status: res.status, body: text };
        problem = `HTTP ${res.status}`;
      } catch (err) {
        problem = (err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : `unreachable: ${(err as Error).message}`;
      }
      if (attempt >= retries || closing.signal.aborted) throw new WitnessUnavailableError(problem);
      await new Promise((resolve) => setTimeout(resolve, backoff(attempt)).unref());
    }
  }

  async function refuse(
    slot: WitnessSlot,
    reason: WitnessRefusalReason,
    facts: { status: number; checkpointSize: number; oldSize: number; witnessSize?: number | undefined },
  ): Promise<void> {
    const refusal: WitnessRefusal = {
      reason, status: facts.status, at: new Date().toISOString(), checkpoint_size: facts.checkpointSize, witness_size: facts.witnessSize ?? null,
    };
    slot.lastRefusal = refusal;
    for (const listener of listeners) listener(slot.name, reason);
    const details = { witness: slot.name, url: slot.url, status: facts.status, checkpoint_size: facts.checkpointSize, old_size: facts.oldSize, witness_size: facts.witnessSize ?? null };
    logger.error({ ...details, reason }, `witness ${slot.name} refused the checkpoint: ${reason.replace('witness_', '')}`);
    const key = `${reason}:${facts.witnessSize ?? ''}`;
    if (slot.recorded === key) return;
    try {
      await writer.recordEvent({ eventType: 'audit.witness_refused', outcome: 'failure', reason, details }, { signal: null });
      slot.recorded = key;
    } catch (err) {
      logger.error({ err, witness: slot.name }, 'the witness refusal could not be recorded in the audit log');
    }
  }

  /** The witness says it cosigned `size`, more than this checkpoint: stale if the database checkpointed that far, else a rollback. */
  async function databaseReached(size: number): Promise<boolean> {
    const { rows } = await db.query<{ seq: number }>('SELECT seq FROM audit_checkpoints WHERE seq >= $1 ORDER BY seq LIMIT 1', [size]);
    return rows.length > 0;
  }

  async function pushOne(slot: WitnessSlot, checkpoint: PushableCheckpoint): Promise<void> {
    const note = checkpoint.note;
    if (note === undefined) return;
    const text = note.slice(0, note.lastIndexOf('\n\n') + 1);
    const parsed = parseCheckpoint(text);
    if (!parsed) throw new Error(`checkpoint ${checkpoint.seq} is not a checkpoint note`);
    const { size } = parsed;
    let old = await lastCosignedSize(db, slot.key);
    if (old >= size) return; // cosigned already, or a newer checkpoint was
    for (let retried = false; ; retried = true) {
      const proof = old > 0 ? await consistencyProof(old, size, storedTree(db, size)) : [];
      const answer = await post(slot, formatAddCheckpoint({ oldSize: old, proof, checkpoint: note }));
      const facts = { status: answer.status, checkpointSize: size, oldSize: old };
      if (answer.status === 200) {
        const lines = (parseSignatureLines(answer.body) ?? []).filter((line) => verifyCosignature(text, line, slot.key) !== undefined);
        if (lines.length === 0) {
          for (const listener of listeners) listener(slot.name, 'invalid_cosignature');
          logger.error({ witness: slot.name, checkpoint_size: size }, `witness ${slot.name} answered no cosignature that verifies with its configured key: refused`);
          slot.lastError = 'the answer holds no cosignature that verifies with the configured witness key';
          return;
        }
        await storeCosignatures(db, size, slot.key, lines);
        slot.lastSuccessAt = new Date().toISOString();
        slot.lastError = null;
        slot.recorded = undefined;
        logger.info({ witness: slot.name, checkpoint_size: size, old_size: old }, 'checkpoint cosigned');
        return;
      }
      if (answer.status === 409) {
        const theirs = parseSizeBody(answer.body);
        if (theirs === undefined) return refuse(slot, 'witness_rejected', facts);
        if (theirs > size) {
          if (await databaseReached(theirs)) return; // another instance pushed a newer checkpoint
          return refuse(slot, 'witness_rollback', { ...facts, witnessSize: theirs });
        }
        if (retried || theirs === old) {
          slot.lastError = `409 again: the witness is now at ${theirs}`;
          return;
        }
        if (theirs < old) logger.warn({ witness: slot.name, witness_size: theirs, stored_size: old }, 'the witness is behind a size it cosigned before (state restored from a backup?)');
        old = theirs;
        continue;
      }
      if (answer.status === 422) return refuse(slot, old === size ? 'witness_fork' : 'witness_inconsistent', facts);
      return refuse(slot, 'witness_rejected', facts);
    }
  }

  function drive(slot: WitnessSlot): void {
    if (slot.running) return;
    // Pushing is no request's work: no request's deadline bounds it (the request timeout does).
    slot.running = outsideDeadline(async () => {
      while (slot.pending && !closed) {
        const checkpoint = slot.pending;
        slot.pending = undefined;
        try {
          await pushOne(slot, checkpoint);
        } catch (err) {
          slot.lastError = err instanceof WitnessUnavailableError ? err.message : `push failed: ${(err as Error).message}`;
          logger.warn({ witness: slot.name, checkpoint_size: checkpoint.seq, problem: slot.lastError }, 'checkpoint not cosigned; the next checkpoint tries again');
        }
      }
    }).finally(() => {
      slot.running = undefined;
    });
  }

  return {
    names: slots.map((s) => s.name),
    push(checkpoint) {
      if (closed) return;
      for (const slot of slots) {
        if (!slot.pending || slot.pending.seq < checkpoint.seq) slot.pending = checkpoint;
        drive(slot);
      }
    },
    async report() {
      if (slots.length === 0) return { witnesses: [], quorum: { required: 0, checkpoint_size: 0, cosigned_by: [], met: false } };
      const latest = await latestCheckpointCosigners(db, slots.map((s) => s.key));
      const witnesses: WitnessView[] = [];
      for (const slot of slots) {
        witnesses.push({
          name: slot.name,
          url: slot.url,
          verifier_key: slot.verifierKey,
          cosigned_size: await lastCosignedSize(db, slot.key),
          cosigned_latest: latest.cosigners.includes(slot.name),
          last_success_at: slot.lastSuccessAt,
          last_error: slot.lastError,
          last_refusal: slot.lastRefusal,
        });
      }
      return { witnesses, quorum: { required: quorum, checkpoint_size: latest.size, cosigned_by: latest.cosigners, met: latest.cosigners.length >= quorum } };
    },
    onRefusal(listener) {
      listeners.push(listener);
    },
    async idle() {
      while (slots.some((s) => s.running !== undefined)) await Promise.all(slots.map((s) => s.running ?? Promise.resolve()));
    },
    async close() {
      closed = true;
      const grace = setTimeout(() => closing.abort(), timeoutMs);
      try {
        await Promise.all(slots.map((s) => s.running ?? Promise.resolve()));
      } finally {
        clearTimeout(grace);
      }
    },
  };
}
