import crypto, { type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import type { Logger } from 'pino';
import { AUDIT_CHAIN_LOCK } from '../db/advisory-locks.js';
import type { Database, Queryable } from '../db/database.js';
import { encodeFields } from './canonical.js';
import type { ChainHead, ChainWriter } from './chain-writer.js';
import { createMicrosecondClock, sqlTimestamp } from './clock.js';
import { formatCheckpoint, openNote, parseCheckpoint, parseSignatureLine, parseVerifierKey, signNote, verifierKey, type NoteVerifierKey } from './note.js';
import { readTreeSize, storedRoot } from './tree.js';

/** First field of every signed checkpoint message. */
export const CHECKPOINT_FORMAT = 'authtrail-checkpoint-v1';

/** The dedicated Ed25519 key that signs checkpoints (never used for tokens). */
export interface SigningKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** RFC 7638 JWK thumbprint of the public key, base64url. */
  readonly keyId: string;
}

/**
 * A signed statement about the log. Since migration 008 it is a C2SP tlog-checkpoint signed note
 * (`note`): the tree of `seq` leaves has root `root`, and the chain head at `seq` is `hash` (an
 * extension line); `seq`, `hash` and `root` are read from the note itself. Checkpoints written
 * before have no note: their signature covers {@link checkpointMessage}.
 */
export interface Checkpoint {
  readonly seq: number;
  readonly hash: Buffer;
  readonly signedAt: string;
  readonly keyId: string;
  /** The Ed25519 signature: over the note text, or over {@link checkpointMessage} for a legacy checkpoint. */
  readonly signature: Buffer;
  /** The signed note (text, blank line, the log's signature line), absent for legacy checkpoints. */
  readonly note?: string | undefined;
  /** The Merkle tree root at `seq` leaves, from the note. */
  readonly root?: Buffer | undefined;
}

/** Extension line of a checkpoint note naming the hash chain's head at the tree size. */
export const CHAIN_HEAD_EXTENSION = 'authtrail-chain-head';

/** The default origin (checkpoint note name) when AUDIT_LOG_ORIGIN is unset. */
export const DEFAULT_LOG_ORIGIN = 'authtrail.local/audit-log';

/** What a checkpoint note says, or undefined when it is not a well-formed authtrail checkpoint note. */
export function readCheckpointNote(note: string): { origin: string; size: number; root: Buffer; chainHead: Buffer; text: string } | undefined {
  const split = note.lastIndexOf('\n\n');
  if (split < 0) return undefined;
  const text = note.slice(0, split + 1);
  const body = parseCheckpoint(text);
  if (!body) return undefined;
  const heads = body.extensions.filter((line) => line.startsWith(`${CHAIN_HEAD_EXTENSION} `));
  if (heads.length !== 1) return undefined;
  const chainHead = Buffer.from(heads[0]!.slice(CHAIN_HEAD_EXTENSION.length + 1), 'base64');
  if (chainHead.length !== 32 || chainHead.toString('base64') !== heads[0]!.slice(CHAIN_HEAD_EXTENSION.length + 1)) return undefined;
  return { origin: body.origin, size: body.size, root: body.root, chainHead, text };
}

/** The note verifier key (`<origin>+<hex key hash>+<base64>`) of the checkpoint key: what GET /audit-log/key serves. */
export function checkpointVerifierKey(origin: string, publicKey: KeyObject): string {
  return verifierKey(origin, publicKey);
}

/** RFC 7638 thumbprint of an Ed25519 public key. */
export function keyIdOf(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: 'jwk' });
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519') throw new TypeError('checkpoint keys must be Ed25519');
  const members = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x });
  return crypto.createHash('sha256').update(members).digest('base64url');
}

/** Loads the signing key from a PKCS#8 PEM file; when allowed (embedded mode) creates it on first start. */
export function loadSigningKey(file: string, options: { generate: boolean }): SigningKey {
  if (!fs.existsSync(file)) {
    if (!options.generate) throw new Error(`audit signing key ${file} does not exist`);
    const { privateKey } = crypto.generateKeyPairSync('ed25519');
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(file, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' });
  }
  const privateKey = crypto.createPrivateKey(fs.readFileSync(file));
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`audit signing key ${file} is not an Ed25519 key`);
  const publicKey = crypto.createPublicKey(privateKey);
  return { privateKey, publicKey, keyId: keyIdOf(publicKey) };
}

/** Public keys trusted to have signed checkpoints, by key id. A private key file is accepted too. */
export function loadTrustedKeys(files: readonly string[]): Map<string, KeyObject> {
  const keys = new Map<string, KeyObject>();
  for (const file of files) {
    const publicKey = trustedKeyFrom(fs.readFileSync(file, 'utf8')).publicKey;
    keys.set(keyIdOf(publicKey), publicKey);
  }
  return keys;
}

/**
 * A trusted checkpoint key from its text: a PEM public or private key, or a note verifier key
 * line (`<name>+<hex>+<base64>`, as GET /audit-log/key and `npm run audit:key` print it), which
 * also fixes the origin the key's checkpoints must name.
 */
export function trustedKeyFrom(text: string): { publicKey: KeyObject; origin?: string } {
  const trimmed = text.trim();
  if (!trimmed.includes('-----BEGIN')) {
    const vkey = parseVerifierKey(trimmed);
    if (!vkey || vkey.type !== 0x01) throw new Error('not a PEM key nor an Ed25519 note verifier key');
    return { publicKey: vkey.publicKey, origin: vkey.name };
  }
  const publicKey = trimmed.includes('PRIVATE KEY') ? crypto.createPublicKey(crypto.createPrivateKey(trimmed)) : crypto.createPublicKey(trimmed);
  if (publicKey.asymmetricKeyType !== 'ed25519') throw new Error('checkpoint keys must be Ed25519');
  return { publicKey };
}

/** The exact bytes signed for a checkpoint (docs/audit-chain.md, "Checkpoints"). */
export function checkpointMessage(seq: number, hash: Buffer, signedAt: string): Buffer {
  return encodeFields([CHECKPOINT_FORMAT, String(seq), hash, signedAt]);
}

/** A legacy (authtrail-checkpoint-v1) checkpoint of the chain head; the checkpointer now signs notes ({@link signCheckpointNote}). */
export function signCheckpoint(key: SigningKey, head: ChainHead, signedAt: string): Checkpoint {
  const signature = crypto.sign(null, checkpointMessage(head.seq, head.hash, signedAt), key.privateKey);
  return { seq: head.seq, hash: head.hash, signedAt, keyId: key.keyId, signature };
}

/**
 * A C2SP tlog-checkpoint signed note: origin, tree size, base64 root, the chain head at that size
 * as the extension line `authtrail-chain-head <base64>`, then the Ed25519 note signature of the
 * checkpoint key under the name `origin`.
 */
export function signCheckpointNote(key: SigningKey, origin: string, tree: { size: number; root: Buffer; chainHead: Buffer }, signedAt: string): Checkpoint {
  const text = formatCheckpoint({ origin, size: tree.size, root: tree.root, extensions: [`${CHAIN_HEAD_EXTENSION} ${tree.chainHead.toString('base64')}`] });
  const note = signNote(text, [{ name: origin, privateKey: key.privateKey }]);
  const line = parseSignatureLine(note.slice(note.lastIndexOf('\n\n') + 2));
  return { seq: tree.size, hash: tree.chainHead, signedAt, keyId: key.keyId, signature: line!.signature, note, root: tree.root };
}

/** A checkpoint from a stored note; seq, hash and root are what the note says (undefined when it is not a checkpoint note). */
export function checkpointFromNote(note: string, meta: { signedAt: string; keyId: string }): Checkpoint | undefined {
  const body = readCheckpointNote(note);
  if (!body) return undefined;
  const line = parseSignatureLine(note.slice(note.lastIndexOf('\n\n') + 2).split('\n')[0] ?? '');
  return { seq: body.size, hash: body.chainHead, root: body.root, note, signedAt: meta.signedAt, keyId: meta.keyId, signature: line?.signature ?? Buffer.alloc(0) };
}

export type CheckpointCheck = 'ok' | 'unknown_key' | 'bad_signature' | 'wrong_origin';

/** Note verifiers of the trusted keys under one origin name, built once per origin. */
function noteVerifiers(trusted: ReadonlyMap<string, KeyObject>): (origin: string) => NoteVerifierKey[] {
  const byOrigin = new Map<string, NoteVerifierKey[]>();
  return (origin) => {
    let verifiers = byOrigin.get(origin);
    if (!verifiers) {
      verifiers = [...trusted.values()].map((k) => parseVerifierKey(verifierKey(origin, k))!);
      byOrigin.set(origin, verifiers);
    }
    return verifiers;
  };
}

/**
 * Checks a checkpoint: a note needs a verified signature of a trusted key under its own origin
 * name and none that fails (and, when `origin` is given, to name that origin); a legacy
 * checkpoint its Ed25519 signature over the v1 message.
 */
function checkOne(cp: Checkpoint, trusted: ReadonlyMap<string, KeyObject>, verifiers: (origin: string) => NoteVerifierKey[], origin: string | undefined): CheckpointCheck {
  if (cp.note === undefined) {
    const key = trusted.get(cp.keyId);
    if (!key) return 'unknown_key';
    return crypto.verify(null, checkpointMessage(cp.seq, cp.hash, cp.signedAt), key, cp.signature) ? 'ok' : 'bad_signature';
  }
  const body = readCheckpointNote(cp.note);
  if (!body || body.size !== cp.seq || !body.chainHead.equals(cp.hash) || (cp.root !== undefined && !body.root.equals(cp.root))) return 'bad_signature';
  if (origin !== undefined && body.origin !== origin) return 'wrong_origin';
  let signatures;
  try {
    signatures = openNote(cp.note, verifiers(body.origin)).signatures.filter((sig) => sig.known);
  } catch {
    return 'bad_signature';
  }
  if (signatures.some((sig) => !sig.verified)) return 'bad_signature';
  return signatures.length > 0 ? 'ok' : 'unknown_key';
}

export function checkCheckpointSignature(cp: Checkpoint, trusted: ReadonlyMap<string, KeyObject>, options: { origin?: string | undefined } = {}): CheckpointCheck {
  return checkOne(cp, trusted, noteVerifiers(trusted), options.origin);
}

/** Checks checkpoint signatures, remembering each verdict so that no checkpoint is verified twice. */
export interface SignatureChecker {
  check(cp: Checkpoint): CheckpointCheck;
  /** Ed25519 verifications actually done (remembered verdicts are not counted). */
  readonly verified: number;
}

/**
 * A {@link SignatureChecker} for one set of trusted keys. The verdict is remembered by `seq`
 * together with a digest of everything the verdict depends on (message, key id, signature), so a
 * checkpoint replaced by another at the same seq is verified afresh. About 80 bytes a checkpoint.
 */
export function createSignatureChecker(
  trusted: ReadonlyMap<string, KeyObject>,
  options: { onVerify?: () => void; origin?: string | undefined } = {},
): SignatureChecker {
  const verdicts = new Map<number, string>();
  const verifiers = noteVerifiers(trusted);
  const codes: Record<CheckpointCheck, string> = { ok: 'o', bad_signature: 'b', unknown_key: 'u', wrong_origin: 'w' };
  const checks = Object.fromEntries(Object.entries(codes).map(([check, code]) => [code, check])) as Record<string, CheckpointCheck>;
  let verified = 0;
  return {
    check(cp) {
      if (cp.note === undefined && !trusted.has(cp.keyId)) return 'unknown_key';
      const message = cp.note === undefined ? checkpointMessage(cp.seq, cp.hash, cp.signedAt) : Buffer.from(cp.note, 'utf8');
      // 128 bits of SHA-256 as a one-byte string: compact, and no second checkpoint can be made to match it.
      const digest = crypto.createHash('sha256').update(encodeFields([message, cp.keyId, cp.signature])).digest().toString('latin1', 0, 16);
      const known = verdicts.get(cp.seq);
      if (known !== undefined && known.slice(1) === digest) return checks[known[0]!]!;
      const check = checkOne(cp, trusted, verifiers, options.origin);
      verified += 1;
      options.onVerify?.();
      verdicts.set(cp.seq, `${codes[check]}${digest}`);
      return check;
    },
    get verified() {
      return verified;
    },
  };
}

/** `prev` of the first line of an export file. */
export const FIRST_LINE_PREV = '0'.repeat(64);

/** SHA-256 of one export line (its UTF-8 bytes, without the newline), hex: the next line's `prev`. */
export const exportLineHash = (line: string): string => crypto.createHash('sha256').update(line, 'utf8').digest('hex');

/**
 * One line of the JSON-lines export. A note checkpoint is a chained line (`v: 2`): `prev` is the
 * hash of the line before it in the file ({@link FIRST_LINE_PREV} for the first), so a deleted,
 * inserted or edited line breaks the chain. A legacy checkpoint gives the line format of before.
 */
export function checkpointToLine(cp: Checkpoint, prev: string = FIRST_LINE_PREV): string {
  if (cp.note !== undefined) {
    return JSON.stringify({ v: 2, seq: cp.seq, signed_at: cp.signedAt, key_id: cp.keyId, note: cp.note, prev });
  }
  return JSON.stringify({
    seq: cp.seq,
    hash: cp.hash.toString('hex'),
    signed_at: cp.signedAt,
    key_id: cp.keyId,
    signature: cp.signature.toString('base64url'),
  });
}

export class CheckpointFileError extends Error {
  readonly code = 'ERR_CHECKPOINT_FILE';
}

/** A line of the export file: its checkpoint and, for a chained (v2) line, the hash of the line before. */
export interface ExportLine {
  readonly checkpoint: Checkpoint;
  readonly prev: string | undefined;
  readonly text: string;
  readonly line: number;
}

function parseExportLine(text: string, lineNumber: number): ExportLine {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new CheckpointFileError(`checkpoint file line ${lineNumber} is not JSON`);
  }
  if (v.v === 2) {
    const { seq, signed_at: signedAt, key_id: keyId, note, prev } = v;
    if (
      typeof seq !== 'number' || typeof signedAt !== 'string' || typeof keyId !== 'string' || typeof note !== 'string' ||
      typeof prev !== 'string' || !/^[0-9a-f]{64}$/.test(prev)
    ) {
      throw new CheckpointFileError(`checkpoint file line ${lineNumber} lacks a field or has a wrong type`);
    }
    const checkpoint = checkpointFromNote(note, { signedAt, keyId });
    if (!checkpoint || checkpoint.seq !== seq) throw new CheckpointFileError(`checkpoint file line ${lineNumber} does not hold a checkpoint note of its seq`);
    return { checkpoint, prev, text, line: lineNumber };
  }
  const { seq, hash, signed_at: signedAt, key_id: keyId, signature } = v;
  if (
    typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1 ||
    typeof hash !== 'string' || !/^[0-9a-f]{64}$/.test(hash) ||
    typeof signedAt !== 'string' || typeof keyId !== 'string' || typeof signature !== 'string'
  ) {
    throw new CheckpointFileError(`checkpoint file line ${lineNumber} lacks a field or has a wrong type`);
  }
  return { checkpoint: { seq, hash: Buffer.from(hash, 'hex'), signedAt, keyId, signature: Buffer.from(signature, 'base64url') }, prev: undefined, text, line: lineNumber };
}

const parseCheckpointLine = (text: string, lineNumber: number): Checkpoint => parseExportLine(text, lineNumber).checkpoint;

/** Reads the export file's lines (legacy and chained); a missing file holds none. */
export async function readExportFile(file: string): Promise<ExportLine[]> {
  if (!fs.existsSync(file)) return [];
  const found: ExportLine[] = [];
  const lines = readline.createInterface({ input: fs.createReadStream(file, 'utf8'), crlfDelay: Infinity });
  let n = 0;
  for await (const line of lines) {
    n += 1;
    if (line.trim() !== '') found.push(parseExportLine(line, n));
  }
  return found;
}

/** Reads the export file's checkpoints; a missing file holds none. */
export async function readCheckpointFile(file: string): Promise<Checkpoint[]> {
  return (await readExportFile(file)).map((l) => l.checkpoint);
}

/** Where an incremental read of the export file stands: the file (device and inode), the bytes and lines consumed. */
export interface CheckpointFilePosition {
  readonly dev: number;
  readonly ino: number;
  readonly offset: number;
  readonly line: number;
}

const FILE_CHUNK = 256 * 1024;

/**
 * Reads the export file's complete lines after `from` (the whole file when `from` is absent,
 * names another file, or lies beyond the file's end: then `restarted`), a chunk at a time,
 * handing each chunk's checkpoints to `onPage`. A last line without its newline is being written
 * and is left for the next read. A missing file holds no checkpoints.
 */
export async function readCheckpointFileFrom(
  file: string,
  from: CheckpointFilePosition | undefined,
  onPage: (checkpoints: Checkpoint[]) => void | Promise<void>,
): Promise<{ position: CheckpointFilePosition | undefined; restarted: boolean }> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { position: undefined, restarted: from !== undefined };
    throw err;
  }
  try {
    const stat = await handle.stat();
    const resume = from !== undefined && from.dev === stat.dev && from.ino === stat.ino && from.offset <= stat.size;
    let offset = resume ? from.offset : 0;
    let line = resume ? from.line : 0;
    let carry = Buffer.alloc(0);
    const chunk = Buffer.allocUnsafe(FILE_CHUNK);
    while (offset + carry.length < stat.size) {
      const { bytesRead } = await handle.read(chunk, 0, Math.min(FILE_CHUNK, stat.size - offset - carry.length), offset + carry.length);
      if (bytesRead === 0) break;
      const bytes = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead);
      const end = bytes.lastIndexOf(0x0a) + 1; // a newline byte never occurs inside a multi-byte UTF-8 character
      const page: Checkpoint[] = [];
      const lines = bytes.toString('utf8', 0, end).split('\n');
      lines.pop(); // the piece after the last newline: empty, or a line still being written
      for (const text of lines) {
        line += 1;
        if (text.trim() !== '') page.push(parseCheckpointLine(text, line));
      }
      offset += end;
      carry = Buffer.from(bytes.subarray(end));
      if (page.length > 0) await onPage(page);
    }
    return { position: { dev: stat.dev, ino: stat.ino, offset, line }, restarted: from !== undefined && !resume };
  } finally {
    await handle.close();
  }
}

type CheckpointRow = { seq: number; hash: Uint8Array; signed_at: string; key_id: string; signature: Uint8Array; note: string | null; root_hash: Uint8Array | null };

/** A stored row as a checkpoint: a note row is what its note says (a note that is not a checkpoint keeps the row's seq and fails its check). */
function fromRow(r: CheckpointRow): Checkpoint {
  const meta = { signedAt: r.signed_at, keyId: r.key_id };
  if (r.note !== null) {
    return checkpointFromNote(r.note, meta) ?? { seq: r.seq, hash: Buffer.from(r.hash), ...meta, signature: Buffer.from(r.signature), note: r.note };
  }
  return { seq: r.seq, hash: Buffer.from(r.hash), ...meta, signature: Buffer.from(r.signature) };
}

const CHECKPOINT_COLUMNS = `seq, hash, ${sqlTimestamp('signed_at')} AS signed_at, key_id, signature, note, root_hash`;

/** Every checkpoint stored in the database, in `seq` order. */
export async function readCheckpointTable(db: Pick<Queryable, 'query'>): Promise<Checkpoint[]> {
  const checkpoints: Checkpoint[] = [];
  for await (const page of streamCheckpointTable(db, 0)) for (const cp of page) checkpoints.push(cp);
  return checkpoints;
}

/** The newest stored checkpoint note (tree size, note), or undefined before the first one. */
export async function latestCheckpointNote(db: Pick<Queryable, 'query'>): Promise<Checkpoint | undefined> {
  const { rows } = await db.query<CheckpointRow>(`SELECT ${CHECKPOINT_COLUMNS} FROM public.audit_checkpoints WHERE note IS NOT NULL ORDER BY seq DESC LIMIT 1`);
  return rows[0] ? fromRow(rows[0]) : undefined;
}

/** The stored checkpoint note of tree size `size`, or undefined. */
export async function checkpointNoteAt(db: Pick<Queryable, 'query'>, size: number): Promise<Checkpoint | undefined> {
  const { rows } = await db.query<CheckpointRow>(`SELECT ${CHECKPOINT_COLUMNS} FROM public.audit_checkpoints WHERE seq = $1 AND note IS NOT NULL`, [size]);
  return rows[0] ? fromRow(rows[0]) : undefined;
}

/** The cosignature lines stored for the checkpoint of tree size `size` (migration 008, filled by the witness client), in a stable order. */
export async function cosignatureLines(db: Pick<Queryable, 'query'>, size: number): Promise<string[]> {
  const { rows } = await db.query<{ line: string }>('SELECT line FROM public.audit_cosignatures WHERE tree_size = $1 ORDER BY witness, key_id', [size]);
  return rows.map((r) => r.line);
}

/** A checkpoint note with every stored cosignature line appended: what GET /audit-log/checkpoint serves. */
export async function cosignedNote(db: Pick<Queryable, 'query'>, cp: Checkpoint): Promise<string> {
  const lines = await cosignatureLines(db, cp.seq);
  return `${cp.note!}${lines.map((l) => `${l.replace(/\n$/, '')}\n`).join('')}`;
}

/** The stored checkpoints after `afterSeq`, in `seq` order, a page at a time (keyset on the primary key). */
export async function* streamCheckpointTable(db: Pick<Queryable, 'query'>, afterSeq: number, pageSize = 5000): AsyncGenerator<Checkpoint[]> {
  let after = afterSeq;
  for (;;) {
    const { rows } = await db.query<CheckpointRow>(`SELECT ${CHECKPOINT_COLUMNS} FROM public.audit_checkpoints WHERE seq > $1 ORDER BY seq LIMIT $2`, [after, pageSize]);
    if (rows.length > 0) yield rows.map(fromRow);
    if (rows.length < pageSize) return;
    after = rows[rows.length - 1]!.seq;
  }
}

/** A checkpoint as `GET /admin/audit/checkpoints` shows it; `note` and `root_hash` (base64) are null for legacy checkpoints. */
export interface CheckpointView {
  seq: number;
  hash: string;
  signed_at: string;
  key_id: string;
  signature: string;
  root_hash: string | null;
  note: string | null;
}

/** The newest `limit` stored checkpoints, newest first. */
export async function listCheckpoints(db: Pick<Queryable, 'query'>, limit: number): Promise<CheckpointView[]> {
  const { rows } = await db.query<CheckpointRow>(`SELECT ${CHECKPOINT_COLUMNS} FROM public.audit_checkpoints ORDER BY seq DESC LIMIT $1`, [limit]);
  return rows.map((r) => ({
    seq: r.seq,
    hash: Buffer.from(r.hash).toString('hex'),
    signed_at: r.signed_at,
    key_id: r.key_id,
    signature: Buffer.from(r.signature).toString('base64url'),
    root_hash: r.root_hash === null ? null : Buffer.from(r.root_hash).toString('base64'),
    note: r.note,
  }));
}

/** The last complete line of a file (undefined when it has none), read from its end. */
async function lastLine(file: string): Promise<string | undefined> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const { size } = await handle.stat();
    let tail = Buffer.alloc(0);
    for (let end = size; end > 0; ) {
      const start = Math.max(0, end - FILE_CHUNK);
      const chunk = Buffer.alloc(end - start);
      await handle.read(chunk, 0, chunk.length, start);
      tail = Buffer.concat([chunk, tail]);
      end = start;
      const text = tail.toString('utf8').replace(/\n+$/, '');
      const cut = text.lastIndexOf('\n');
      if (cut >= 0 || start === 0) return text.slice(cut + 1) || undefined;
    }
    return undefined;
  } finally {
    await handle.close();
  }
}

/**
 * The export file, appended to as a chain: each note line carries the hash of the line before.
 * Lines are written and `fdatasync`ed in order by one writer per process.
 */
class ExportFile {
  /** Hash of the file's last line; undefined until read. */
  private prev: string | undefined;
  /** The file as this process last wrote it: another file there, or another size, is read again. */
  private written: { dev: number; ino: number; size: number } | undefined;
  /** Seq of the file's last checkpoint: the table's note checkpoints after it are still to be written (0: an empty file). */
  exported = 0;
  constructor(readonly file: string) {}

  /**
   * Reads where the file ends: its last line's hash and seq. An empty or missing file (a new one,
   * or one rotated away) goes on from the last line this process wrote, so the rotated files
   * read in order form one chain.
   */
  async open(): Promise<void> {
    const last = await lastLine(this.file);
    this.prev = last === undefined ? (this.prev ?? FIRST_LINE_PREV) : exportLineHash(last);
    this.written = undefined;
    if (last !== undefined) {
      try {
        const parsed = JSON.parse(last) as { seq?: unknown };
        if (typeof parsed.seq === 'number') this.exported = Math.max(this.exported, parsed.seq);
      } catch {
        // A damaged last line: the chain goes on after it and the verifier names the damage.
      }
    }
  }

  /** Whether the file is still the one this process last appended to, at the size it left it (not rotated, cut or appended to by another). */
  private async unchanged(): Promise<boolean> {
    if (!this.written) return false;
    try {
      const stat = await fs.promises.stat(this.file);
      return stat.dev === this.written.dev && stat.ino === this.written.ino && stat.size === this.written.size;
    } catch {
      return false;
    }
  }

  async append(checkpoints: readonly Checkpoint[]): Promise<void> {
    if (checkpoints.length === 0) return;
    // A rotated or edited file: chain on from the line that is now last (a new file: from the last one written).
    if (this.prev === undefined || (this.written !== undefined && !(await this.unchanged()))) await this.open();
    let text = '';
    let prev = this.prev!;
    for (const cp of checkpoints) {
      const line = checkpointToLine(cp, prev);
      text += `${line}\n`;
      prev = exportLineHash(line);
    }
    await fs.promises.mkdir(path.dirname(this.file), { recursive: true });
    const handle = await fs.promises.open(this.file, 'a', 0o640);
    try {
      await handle.write(text);
      await handle.datasync();
      const stat = await handle.stat();
      this.written = { dev: stat.dev, ino: stat.ino, size: stat.size };
    } finally {
      await handle.close();
    }
    this.prev = prev;
    this.exported = Math.max(this.exported, ...checkpoints.map((cp) => cp.seq));
  }
}

export interface Checkpointer {
  /** Signs the current tree head unless it is already checkpointed; resolves with the new checkpoint, if any. */
  checkpointNow(): Promise<Checkpoint | undefined>;
  /** Stops the timer and writes a last checkpoint of the head. */
  close(): Promise<Checkpoint | undefined>;
}

export interface CheckpointerOptions {
  db: Database;
  writer: ChainWriter;
  key: SigningKey;
  file: string;
  everyRecords: number;
  everySeconds: number;
  logger: Logger;
  /** The log's origin: the first line of every checkpoint note and the name of its signature. Default {@link DEFAULT_LOG_ORIGIN}. */
  origin?: string;
  /**
   * Called once after each checkpoint this process signed is stored in `audit_checkpoints` and
   * exported: the hook for pushing it to witnesses (whose cosignatures go to
   * `audit_cosignatures`). Awaited one at a time, after the export; a failure is logged and
   * stops nothing.
   */
  onCheckpoint?: (checkpoint: Checkpoint) => void | Promise<void>;
}

/** What the next checkpoint signs: the stored tree's size and root, and the chain head at that size. */
export async function readTreeHead(db: Pick<Queryable, 'query'>, atMost?: number): Promise<{ size: number; root: Buffer; chainHead: Buffer } | undefined> {
  const stored = await readTreeSize(db);
  const size = atMost === undefined ? stored : Math.min(stored, atMost);
  if (size === 0) return undefined;
  const { rows } = await db.query<{ hash: Uint8Array }>('SELECT hash FROM public.audit_log WHERE seq = $1', [size]);
  if (!rows[0]) return undefined;
  return { size, root: await storedRoot(db, size), chainHead: Buffer.from(rows[0].hash) };
}

/**
 * Signs the tree head every `everyRecords` records this process commits, every `everySeconds`
 * when it has moved, and at shutdown: a C2SP checkpoint note of (origin, size, root) with the
 * chain head as an extension line. Each goes to `audit_checkpoints` and to the export file; two
 * instances signing the same size store it once. Each instance's export file gets every note
 * checkpoint of the table after its last line (the ones other instances signed too), at each of
 * its own checkpoints and timer ticks, so a file lacking one is a file cut short.
 */
export function createCheckpointer(options: CheckpointerOptions): Checkpointer {
  const { db, key, logger } = options;
  const origin = options.origin ?? DEFAULT_LOG_ORIGIN;
  const exportFile = new ExportFile(options.file);
  const clock = createMicrosecondClock();
  let sinceLast = 0;
  let lastSeq = 0;
  let chain: Promise<unknown> = Promise.resolve();
  let opened: Promise<void> | undefined;

  /**
   * Opens the file once. An empty file starts at the table's latest checkpoint: the history before
   * it is in the table and in the other files. Opened when the checkpointer is created, not at its
   * first checkpoint, so a file never starts after checkpoints other instances signed meanwhile.
   */
  function openExport(): Promise<void> {
    opened ??= (async () => {
      await exportFile.open();
      if (exportFile.exported === 0) {
        const latest = await latestCheckpointNote(db);
        exportFile.exported = latest?.seq ?? 0;
      }
    })();
    return opened;
  }

  /** Appends the table's note checkpoints after the file's last one (up to `through`), oldest first. */
  async function exportMissing(): Promise<void> {
    await openExport();
    for (;;) {
      const { rows } = await db.query<CheckpointRow>(
        `SELECT ${CHECKPOINT_COLUMNS} FROM public.audit_checkpoints WHERE seq > $1 AND note IS NOT NULL ORDER BY seq LIMIT 1000`,
        [exportFile.exported],
      );
      await exportFile.append(rows.map(fromRow));
      if (rows.length < 1000) return;
    }
  }

  async function write(head: { seq: number } | undefined): Promise<Checkpoint | undefined> {
    await exportMissing();
    if (!head || head.seq === 0 || head.seq <= lastSeq) return undefined;
    const tree = await readTreeHead(db, head.seq);
    if (!tree || tree.size <= lastSeq) return undefined;
    const cp = signCheckpointNote(key, origin, tree, clock());
    // Under the chain's lock, and only when no checkpoint of this size or larger exists: checkpoints
    // then commit in the order of their sizes, so an export that copies those after its last line
    // never skips one that committed late.
    const stored = await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [...AUDIT_CHAIN_LOCK]);
      const { rows } = await tx.query<{ seq: number }>(
        `INSERT INTO public.audit_checkpoints (seq, hash, signed_at, key_id, signature, note, root_hash)
         SELECT $1, $2, $3, $4, $5, $6, $7 WHERE NOT EXISTS (SELECT 1 FROM public.audit_checkpoints WHERE seq >= $1) RETURNING seq`,
        [cp.seq, cp.hash, cp.signedAt, cp.keyId, cp.signature, cp.note, cp.root],
      );
      return rows.length > 0;
    });
    lastSeq = Math.max(lastSeq, cp.seq);
    if (!stored) return undefined; // another instance signed this size or a larger one
    await exportMissing();
    if (options.onCheckpoint) {
      try {
        await options.onCheckpoint(cp);
      } catch (err) {
        logger.error({ err }, 'audit checkpoint hook failed');
      }
    }
    return cp;
  }

  /** Runs checkpoint writes one at a time; a failure is logged and does not stop later ones. */
  function enqueue(head: () => Promise<{ seq: number } | undefined>): Promise<Checkpoint | undefined> {
    const next = chain.then(async () => write(await head()));
    chain = next.catch((err: unknown) => logger.error({ err }, 'audit checkpoint failed'));
    return next;
  }

  const currentHead = async () => ({ seq: await readTreeSize(db) });
  // Opened now; a failure here is retried by the first checkpoint, which logs it.
  openExport().catch(() => {
    opened = undefined;
  });

  options.writer.onCommit((head, batch) => {
    sinceLast += batch.count;
    if (sinceLast < options.everyRecords) return;
    sinceLast = 0;
    enqueue(() => Promise.resolve(head)).catch(() => {});
  });

  const timer = setInterval(() => {
    enqueue(currentHead).catch(() => {});
  }, options.everySeconds * 1000);
  timer.unref();

  return {
    checkpointNow: () => enqueue(currentHead),
    async close() {
      clearInterval(timer);
      return enqueue(currentHead);
    },
  };
}
