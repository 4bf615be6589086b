import crypto from 'node:crypto';
import type { Logger } from 'pino';
import { EMPTY_ROOT, verifyConsistency } from '../audit/merkle.js';
import {
  KEY_TYPE_COSIGNATURE_V1,
  KEY_TYPE_ED25519,
  MalformedNoteError,
  cosign,
  openNote,
  parseCheckpoint,
  parseVerifierKey,
  verifierKey,
  type NoteVerifierKey,
} from '../audit/note.js';
import type { WitnessKey } from './key-file.js';
import { SIZE_CONTENT_TYPE, WitnessProtocolError, parseAddCheckpoint } from './protocol.js';
import { writeStateFile, type LogState, type WitnessState } from './state-file.js';

/** An answer of the witness, as the HTTP layer sends it. */
export interface WitnessAnswer {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

/** Why a checkpoint was refused as misbehaviour of the log: each is an alarm. */
export type AlarmKind = 'rollback' | 'fork' | 'inconsistent';

export interface LogStatus {
  readonly origin: string;
  /** SHA-256 of the origin, lower-case hex: the path of the monitoring endpoint. */
  readonly origin_hash: string;
  readonly size: number;
  readonly root: string;
  readonly cosigned_at: string | null;
  readonly refusals: number;
  readonly last_refusal: { at: string; kind: string; size: number; root: string } | null;
}

export interface WitnessStatus {
  readonly name: string;
  readonly verifier_key: string;
  readonly logs: LogStatus[];
}

export interface Witness {
  /** `<name>+<hex>+<base64(0x04 ‖ key)>`: what a log configures to verify this witness's cosignatures. */
  readonly verifierKey: string;
  /** C2SP tlog-witness add-checkpoint: the request body in, the answer out. Never throws for bad input. */
  addCheckpoint(body: string): Promise<WitnessAnswer>;
  /** The latest cosigned checkpoint of the log whose origin hashes to `originHash`, with the log's signatures and the cosignature. */
  checkpoint(originHash: string): string | undefined;
  status(): WitnessStatus;
}

export interface WitnessOptions {
  /** The witness's key name (a schema-less URL, such as `witness.example.com/w1`). */
  name: string;
  key: WitnessKey;
  /** Per log origin, the verifier keys (type 0x01) whose signatures the witness trusts. */
  logs: ReadonlyMap<string, readonly NoteVerifierKey[]>;
  /** The state read at start (empty when new). */
  state: WitnessState;
  stateFile: string;
  logger: Logger;
  /** Unix seconds; the cosignature timestamp. */
  now?: () => number;
}

const answer = (status: number, body: string, contentType = 'text/plain; charset=utf-8'): WitnessAnswer => ({ status, contentType, body });

const originHash = (origin: string): string => crypto.createHash('sha256').update(origin, 'utf8').digest('hex');

/**
 * Parses `<vkey>` or `<origin>|<vkey>` (repeatable for one origin, e.g. during a key rotation):
 * the logs a witness accepts. The origin defaults to the key's name, which by convention equals it.
 */
export function parseLogList(entries: readonly string[]): Map<string, NoteVerifierKey[]> {
  const logs = new Map<string, NoteVerifierKey[]>();
  entries.forEach((entry, i) => {
    const bar = entry.lastIndexOf('|');
    const vkey = entry.slice(bar + 1).trim();
    const key = parseVerifierKey(vkey);
    if (!key || key.type !== KEY_TYPE_ED25519) throw new TypeError(`log ${i + 1}: not an Ed25519 note verifier key (name+hex+base64)`);
    const origin = bar < 0 ? key.name : entry.slice(0, bar).trim();
    if (origin === '' || origin.includes('\n')) throw new TypeError(`log ${i + 1}: empty origin`);
    logs.set(origin, [...(logs.get(origin) ?? []), key]);
  });
  return logs;
}

/**
 * A C2SP tlog-witness: for each configured log, remembers the latest checkpoint it cosigned and
 * cosigns a new one only when it is signed by the log and provably extends that one (RFC 6962
 * consistency proof). Requests are handled one at a time, so checking the old size and storing
 * the new state are one step; the new state is on disk (fsynced) before the cosignature leaves.
 */
export function createWitness(options: WitnessOptions): Witness {
  const { name, key, logs, stateFile, logger } = options;
  const now = options.now ?? (() => Math.floor(Date.now() / 1000));
  const vkey = verifierKey(name, key.publicKey, KEY_TYPE_COSIGNATURE_V1);
  let state: WitnessState = options.state;
  let queue: Promise<unknown> = Promise.resolve();

  /** Runs `step` after every earlier request; a failure does not stop later ones. */
  function serialized<T>(step: () => Promise<T>): Promise<T> {
    const next = queue.then(step);
    queue = next.catch(() => {});
    return next;
  }

  async function save(origin: string, log: LogState): Promise<void> {
    const next: WitnessState = { logs: { ...state.logs, [origin]: log } };
    await writeStateFile(stateFile, next);
    state = next;
  }

  async function alarm(origin: string, kind: AlarmKind, offered: { size: number; root: Buffer }, detail: Record<string, unknown>): Promise<void> {
    const current = state.logs[origin];
    logger.error(
      { origin, kind, offered_size: offered.size, offered_root: offered.root.toString('base64'), witnessed_size: current?.size ?? 0, ...detail },
      `witness refused a checkpoint: ${kind}`,
    );
    if (!current) return; // nothing cosigned yet: nothing that could be rolled back or forked
    const lastRefusal = { at: new Date().toISOString(), kind, size: offered.size, root: offered.root.toString('base64') };
    await save(origin, { ...current, refusals: current.refusals + 1, lastRefusal }).catch((err: unknown) =>
      logger.error({ err }, 'witness state could not record the refusal'),
    );
  }

  async function add(body: string): Promise<WitnessAnswer> {
    let request;
    try {
      request = parseAddCheckpoint(body);
    } catch (err) {
      if (err instanceof WitnessProtocolError) return answer(400, `${err.message}\n`);
      throw err;
    }
    const origin = request.checkpoint.slice(0, Math.max(0, request.checkpoint.indexOf('\n')));
    const keys = logs.get(origin);
    if (!keys) return answer(404, 'unknown log origin\n');

    let opened;
    try {
      opened = openNote(request.checkpoint, keys);
    } catch (err) {
      if (err instanceof MalformedNoteError) return answer(400, `malformed checkpoint note: ${err.message}\n`);
      throw err;
    }
    const known = opened.signatures.filter((s) => s.known);
    if (known.length === 0 || known.some((s) => !s.verified)) return answer(403, 'no valid signature from a trusted key of this log\n');
    const checkpoint = parseCheckpoint(opened.text);
    if (!checkpoint || checkpoint.origin !== origin) return answer(400, 'the note is not a checkpoint\n');
    const { size, root } = checkpoint;
    const offered = { size, root };

    if (request.oldSize > size) {
      if (state.logs[origin] && request.oldSize === state.logs[origin].size) await alarm(origin, 'rollback', offered, { old_size: request.oldSize });
      return answer(400, 'old size exceeds the checkpoint size\n');
    }
    const current = state.logs[origin];
    const latestSize = current?.size ?? 0;
    if (request.oldSize !== latestSize) {
      if (size < latestSize) await alarm(origin, 'rollback', offered, { old_size: request.oldSize });
      return answer(409, `${latestSize}\n`, SIZE_CONTENT_TYPE);
    }
    if (size === 0 && !root.equals(EMPTY_ROOT)) return answer(422, 'a checkpoint of size 0 must have the root of the empty tree\n');
    if (latestSize === 0) {
      if (request.proof.length > 0) return answer(422, 'the consistency proof from size 0 must be empty\n');
    } else {
      const latestRoot = Buffer.from(current!.root, 'base64');
      if (!verifyConsistency(latestSize, size, latestRoot, root, request.proof)) {
        const kind: AlarmKind = size === latestSize ? 'fork' : 'inconsistent';
        await alarm(origin, kind, offered, { old_size: request.oldSize, proof_lines: request.proof.length });
        return answer(422, size === latestSize ? 'same size, another root hash\n' : 'the consistency proof does not verify\n');
      }
    }

    // Monotonic timestamps: a clock stepped back never makes a newer cosignature look older.
    const time = Math.max(now(), current?.cosignedAt ?? 0);
    const line = cosign(opened.text, { name, privateKey: key.privateKey, time });
    const signatureLines = request.checkpoint.slice(opened.text.length + 1, -1).split('\n');
    const logSignatures = signatureLines.filter((_, i) => opened.signatures[i]?.verified).map((l) => `${l}\n`);
    await save(origin, {
      size,
      root: root.toString('base64'),
      checkpoint: `${opened.text}\n${logSignatures.join('')}${line}`,
      cosignedAt: time,
      refusals: current?.refusals ?? 0,
      lastRefusal: current?.lastRefusal,
    });
    logger.info({ origin, size, old_size: request.oldSize }, 'checkpoint cosigned');
    return answer(200, line);
  }

  return {
    verifierKey: vkey,
    addCheckpoint: (body) => serialized(() => add(body)),
    checkpoint(hash) {
      for (const [origin, log] of Object.entries(state.logs)) if (originHash(origin) === hash) return log.checkpoint;
      return undefined;
    },
    status() {
      const origins = new Set([...logs.keys(), ...Object.keys(state.logs)]);
      return {
        name,
        verifier_key: vkey,
        logs: [...origins].sort().map((origin) => {
          const log = state.logs[origin];
          return {
            origin,
            origin_hash: originHash(origin),
            size: log?.size ?? 0,
            root: log?.root ?? EMPTY_ROOT.toString('base64'),
            cosigned_at: log ? new Date(log.cosignedAt * 1000).toISOString() : null,
            refusals: log?.refusals ?? 0,
            last_refusal: log?.lastRefusal ?? null,
          };
        }),
      };
    },
  };
}
