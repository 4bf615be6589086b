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

/** Every checkpoint stored in the database, in `seq` order. */
export async function readCheckpointTable(db: Pick<Queryable, 'query'>): Promise<Checkpoint[]> {
  const { rows } = await db.query<{ seq: number; hash: Uint8Array; signed_at: string; key_id: string; signature: Uint8Array }>(
    `SELECT seq, hash, ${sqlTimestamp('signed_at')} AS signed_at, key_id, signature FROM audit_checkpoints ORDER BY seq`,
  );
  return rows.map((r) => ({
    seq: r.seq,
    hash: Buffer.from(r.hash),
    signedAt: r.signed_at,
    keyId: r.key_id,
    signature: Buffer.from(r.signature),
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
