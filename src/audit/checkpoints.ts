import crypto, { type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import type { Logger } from 'pino';
import type { Database, Queryable } from '../db/database.js';
import { encodeFields } from './canonical.js';
import { readChainHead, type ChainHead, type ChainWriter } from './chain-writer.js';
import { createMicrosecondClock, sqlTimestamp } from './clock.js';

/** First field of every signed checkpoint message. */
export const CHECKPOINT_FORMAT = 'authtrail-checkpoint-v1';

/** The dedicated Ed25519 key that signs checkpoints (never used for tokens). */
export interface SigningKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** RFC 7638 JWK thumbprint of the public key, base64url. */
  readonly keyId: string;
}

/** A signed statement that the chain head was (`seq`, `hash`) at `signedAt`. */
export interface Checkpoint {
  readonly seq: number;
  readonly hash: Buffer;
  readonly signedAt: string;
  readonly keyId: string;
  readonly signature: Buffer;
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
    const pem = fs.readFileSync(file, 'utf8');
    const publicKey = pem.includes('PRIVATE KEY') ? crypto.createPublicKey(crypto.createPrivateKey(pem)) : crypto.createPublicKey(pem);
    keys.set(keyIdOf(publicKey), publicKey);
  }
  return keys;
}

/** The exact bytes signed for a checkpoint (docs/audit-chain.md, "Checkpoints"). */
export function checkpointMessage(seq: number, hash: Buffer, signedAt: string): Buffer {
  return encodeFields([CHECKPOINT_FORMAT, String(seq), hash, signedAt]);
}

export function signCheckpoint(key: SigningKey, head: ChainHead, signedAt: string): Checkpoint {
  const signature = crypto.sign(null, checkpointMessage(head.seq, head.hash, signedAt), key.privateKey);
  return { seq: head.seq, hash: head.hash, signedAt, keyId: key.keyId, signature };
}

export type CheckpointCheck = 'ok' | 'unknown_key' | 'bad_signature';

export function checkCheckpointSignature(cp: Checkpoint, trusted: ReadonlyMap<string, KeyObject>): CheckpointCheck {
  const key = trusted.get(cp.keyId);
  if (!key) return 'unknown_key';
  return crypto.verify(null, checkpointMessage(cp.seq, cp.hash, cp.signedAt), key, cp.signature) ? 'ok' : 'bad_signature';
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
export function createSignatureChecker(trusted: ReadonlyMap<string, KeyObject>, options: { onVerify?: () => void } = {}): SignatureChecker {
  const verdicts = new Map<number, string>();
  let verified = 0;
  return {
    check(cp) {
      const key = trusted.get(cp.keyId);
      if (!key) return 'unknown_key';
      const message = checkpointMessage(cp.seq, cp.hash, cp.signedAt);
      // 128 bits of SHA-256 as a one-byte string: compact, and no second checkpoint can be made to match it.
      const digest = crypto.createHash('sha256').update(encodeFields([message, cp.keyId, cp.signature])).digest().toString('latin1', 0, 16);
      const known = verdicts.get(cp.seq);
      if (known !== undefined && known.slice(1) === digest) return known[0] === 'o' ? 'ok' : 'bad_signature';
      const check: CheckpointCheck = crypto.verify(null, message, key, cp.signature) ? 'ok' : 'bad_signature';
      verified += 1;
      options.onVerify?.();
      verdicts.set(cp.seq, `${check === 'ok' ? 'o' : 'b'}${digest}`);
      return check;
    },
    get verified() {
      return verified;
    },
  };
}

/** One line of the JSON-lines export. */
export function checkpointToLine(cp: Checkpoint): string {
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

function parseCheckpointLine(line: string, lineNumber: number): Checkpoint {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new CheckpointFileError(`checkpoint file line ${lineNumber} is not JSON`);
  }
  const { seq, hash, signed_at: signedAt, key_id: keyId, signature } = v;
  if (
    typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1 ||
    typeof hash !== 'string' || !/^[0-9a-f]{64}$/.test(hash) ||
    typeof signedAt !== 'string' || typeof keyId !== 'string' || typeof signature !== 'string'
  ) {
    throw new CheckpointFileError(`checkpoint file line ${lineNumber} lacks a field or has a wrong type`);
  }
  return { seq, hash: Buffer.from(hash, 'hex'), signedAt, keyId, signature: Buffer.from(signature, 'base64url') };
}

/** Reads the export file line by line; a missing file holds no checkpoints. */
export async function readCheckpointFile(file: string): Promise<Checkpoint[]> {
  if (!fs.existsSync(file)) return [];
  const checkpoints: Checkpoint[] = [];
  const lines = readline.createInterface({ input: fs.createReadStream(file, 'utf8'), crlfDelay: Infinity });
  let n = 0;
  for await (const line of lines) {
    n += 1;
    if (line.trim() !== '') checkpoints.push(parseCheckpointLine(line, n));
  }
  return checkpoints;
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

type CheckpointRow = { seq: number; hash: Uint8Array; signed_at: string; key_id: string; signature: Uint8Array };

const fromRow = (r: CheckpointRow): Checkpoint => ({
  seq: r.seq,
  hash: Buffer.from(r.hash),
  signedAt: r.signed_at,
  keyId: r.key_id,
  signature: Buffer.from(r.signature),
});

const CHECKPOINT_COLUMNS = `seq, hash, ${sqlTimestamp('signed_at')} AS signed_at, key_id, signature`;

/** Every checkpoint stored in the database, in `seq` order. */
export async function readCheckpointTable(db: Pick<Queryable, 'query'>): Promise<Checkpoint[]> {
  const checkpoints: Checkpoint[] = [];
  for await (const page of streamCheckpointTable(db, 0)) for (const cp of page) checkpoints.push(cp);
  return checkpoints;
}

/** The stored checkpoints after `afterSeq`, in `seq` order, a page at a time (keyset on the primary key). */
export async function* streamCheckpointTable(db: Pick<Queryable, 'query'>, afterSeq: number, pageSize = 5000): AsyncGenerator<Checkpoint[]> {
  let after = afterSeq;
  for (;;) {
    const { rows } = await db.query<CheckpointRow>(`SELECT ${CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE seq > $1 ORDER BY seq LIMIT $2`, [after, pageSize]);
    if (rows.length > 0) yield rows.map(fromRow);
    if (rows.length < pageSize) return;
    after = rows[rows.length - 1]!.seq;
  }
}

/** A checkpoint as `GET /admin/audit/checkpoints` shows it. */
export interface CheckpointView {
  seq: number;
  hash: string;
  signed_at: string;
  key_id: string;
  signature: string;
}

/** The newest `limit` stored checkpoints, newest first. */
export async function listCheckpoints(db: Pick<Queryable, 'query'>, limit: number): Promise<CheckpointView[]> {
  const { rows } = await db.query<CheckpointRow>(`SELECT ${CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq DESC LIMIT $1`, [limit]);
  return rows.map((r) => ({
    seq: r.seq,
    hash: Buffer.from(r.hash).toString('hex'),
    signed_at: r.signed_at,
    key_id: r.key_id,
    signature: Buffer.from(r.signature).toString('base64url'),
  }));
}

async function appendLine(file: string, line: string): Promise<void> {
  await fs.promises.mkdir(path.dirname(file), { recursive: true });
  const handle = await fs.promises.open(file, 'a', 0o640);
  try {
    await handle.write(`${line}\n`);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

export interface Checkpointer {
  /** Signs the current head unless it is already checkpointed; resolves with the new checkpoint, if any. */
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
}

/**
 * Signs the chain head every `everyRecords` records this process commits, every `everySeconds`
 * when the head has moved, and at shutdown. Each checkpoint goes to `audit_checkpoints` and to
 * the export file; two instances signing the same head store it once.
 */
export function createCheckpointer(options: CheckpointerOptions): Checkpointer {
  const { db, key, file, logger } = options;
  const clock = createMicrosecondClock();
  let sinceLast = 0;
  let lastSeq = 0;
  let chain: Promise<unknown> = Promise.resolve();

  async function write(head: ChainHead): Promise<Checkpoint | undefined> {
    if (head.seq === 0 || head.seq <= lastSeq) return undefined;
    const cp = signCheckpoint(key, head, clock());
    const { rows } = await db.query<{ seq: number }>(
      `INSERT INTO audit_checkpoints (seq, hash, signed_at, key_id, signature)
       VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING RETURNING seq`,
      [cp.seq, cp.hash, cp.signedAt, cp.keyId, cp.signature],
    );
    lastSeq = Math.max(lastSeq, head.seq);
    if (rows.length === 0) return undefined; // another instance signed this head
    await appendLine(file, checkpointToLine(cp));
    return cp;
  }

  /** Runs checkpoint writes one at a time; a failure is logged and does not stop later ones. */
  function enqueue(head: () => Promise<ChainHead>): Promise<Checkpoint | undefined> {
    const next = chain.then(async () => write(await head()));
    chain = next.catch((err: unknown) => logger.error({ err }, 'audit checkpoint failed'));
    return next;
  }

  options.writer.onCommit((head, batch) => {
    sinceLast += batch.count;
    if (sinceLast < options.everyRecords) return;
    sinceLast = 0;
    enqueue(() => Promise.resolve(head)).catch(() => {});
  });

  const timer = setInterval(() => {
    enqueue(() => readChainHead(db)).catch(() => {});
  }, options.everySeconds * 1000);
  timer.unref();

  return {
    checkpointNow: () => enqueue(() => readChainHead(db)),
    async close() {
      clearInterval(timer);
      return enqueue(() => readChainHead(db));
    },
  };
}
