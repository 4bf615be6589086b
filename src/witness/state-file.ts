import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** First member of every state file; a future layout gets a new tag. */
export const STATE_FORMAT = 'authtrail-witness-state-v1';

/** What the witness remembers of one log: the latest checkpoint it cosigned. */
export interface LogState {
  /** Tree size of the latest cosigned checkpoint. */
  readonly size: number;
  /** Its root hash, standard base64. */
  readonly root: string;
  /** The checkpoint as served to monitors: the note with the log's verified signatures and this witness's cosignature. */
  readonly checkpoint: string;
  /** POSIX seconds of that cosignature. */
  readonly cosignedAt: number;
  /** Checkpoints of this log refused as a rollback, a fork or an inconsistent proof (alarms), ever. */
  readonly refusals: number;
  readonly lastRefusal?: RefusalRecord | undefined;
}

/** The last alarm for a log, kept as evidence: what was offered and why it was refused. */
export interface RefusalRecord {
  readonly at: string;
  readonly kind: string;
  readonly size: number;
  readonly root: string;
}

export interface WitnessState {
  readonly logs: Readonly<Record<string, LogState>>;
}

export class StateFileError extends Error {
  readonly code = 'ERR_WITNESS_STATE';
}

type Json = Record<string, unknown>;

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function parseLogState(origin: string, v: unknown): LogState {
  const o = v as Json;
  const bad = (field: string) => new StateFileError(`witness state: log ${JSON.stringify(origin)} has an invalid ${field}`);
  if (!o || typeof o !== 'object') throw bad('entry');
  if (!isCount(o.size)) throw bad('size');
  if (typeof o.root !== 'string' || Buffer.from(o.root, 'base64').length !== 32) throw bad('root');
  if (typeof o.checkpoint !== 'string') throw bad('checkpoint');
  if (!isCount(o.cosigned_at)) throw bad('cosigned_at');
  if (!isCount(o.refusals)) throw bad('refusals');
  const last = o.last_refusal as Json | undefined;
  return {
    size: o.size,
    root: o.root,
    checkpoint: o.checkpoint,
    cosignedAt: o.cosigned_at,
    refusals: o.refusals,
    lastRefusal:
      last && typeof last === 'object'
        ? { at: String(last.at), kind: String(last.kind), size: Number(last.size), root: String(last.root) }
        : undefined,
  };
}

/** Parses the text of a state file; throws {@link StateFileError} on anything but a well-formed state. */
export function parseState(text: string): WitnessState {
  let v: Json;
  try {
    v = JSON.parse(text) as Json;
  } catch {
    throw new StateFileError('witness state: not JSON');
  }
  if (!v || typeof v !== 'object' || v.format !== STATE_FORMAT) throw new StateFileError(`witness state: format is not ${STATE_FORMAT}`);
  const logs = v.logs as Json | undefined;
  if (!logs || typeof logs !== 'object') throw new StateFileError('witness state: no logs object');
  const parsed: Record<string, LogState> = {};
  for (const [origin, entry] of Object.entries(logs)) parsed[origin] = parseLogState(origin, entry);
  return { logs: parsed };
}

export function serializeState(state: WitnessState): string {
  const logs: Json = {};
  for (const [origin, s] of Object.entries(state.logs)) {
    logs[origin] = {
      size: s.size,
      root: s.root,
      checkpoint: s.checkpoint,
      cosigned_at: s.cosignedAt,
      refusals: s.refusals,
      ...(s.lastRefusal ? { last_refusal: s.lastRefusal } : {}),
    };
  }
  return `${JSON.stringify({ format: STATE_FORMAT, logs }, null, 2)}\n`;
}

/** Reads the state file; `undefined` when there is none. A file that exists but does not parse is an error, never an empty state. */
export function readStateFile(file: string): WitnessState | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return parseState(text);
}

/**
 * Replaces the state file atomically and durably: the new text goes to a temporary file in the
 * same directory, which is fsynced, renamed over the old one, and the directory fsynced, so a
 * crash leaves either the old state or the new one, never a mix or nothing.
 */
export async function writeStateFile(file: string, state: WitnessState): Promise<void> {
  const dir = path.dirname(file);
  await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
  const temp = path.join(dir, `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`);
  const handle = await fs.promises.open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(serializeState(state));
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.promises.rename(temp, file);
  } catch (err) {
    await fs.promises.rm(temp, { force: true });
    throw err;
  }
  const dirHandle = await fs.promises.open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}
