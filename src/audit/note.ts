/**
 * C2SP signed notes (https://c2sp.org/signed-note), checkpoints (https://c2sp.org/tlog-checkpoint)
 * and Ed25519 cosignatures (https://c2sp.org/tlog-cosignature, cosignature/v1). Pure code.
 *
 * A signed note is a text ending in "\n", a blank line, then signature lines
 * `— <name> <base64(key hash (4 bytes) ‖ signature)>\n`. The key hash is the first four bytes of
 * SHA-256(name ‖ "\n" ‖ type ‖ public key); type 0x01 is Ed25519 over the note text, type 0x04 an
 * Ed25519 cosignature whose payload is key hash ‖ timestamp (uint64 big-endian) ‖ signature over
 * "cosignature/v1\ntime <timestamp>\n" ‖ the checkpoint text.
 *
 * Functions that build (sign, format) throw on bad input; `parse*` functions return undefined on
 * any input that is not exactly in the canonical form; {@link openNote} throws a
 * {@link MalformedNoteError} for a malformed note.
 */
import crypto, { type KeyObject } from 'node:crypto';

/** Ed25519 note signatures. */
export const KEY_TYPE_ED25519 = 0x01;
/** Timestamped Ed25519 checkpoint cosignatures (cosignature/v1). */
export const KEY_TYPE_COSIGNATURE_V1 = 0x04;

export type NoteKeyType = typeof KEY_TYPE_ED25519 | typeof KEY_TYPE_COSIGNATURE_V1;

/** Signatures beyond this many make a note malformed (the spec requires accepting at least 16). */
export const MAX_NOTE_SIGNATURES = 100;

const EM_DASH = '\u2014';
const SIGNATURE_PREFIX = `${EM_DASH} `;
const COSIGNATURE_HEADER = 'cosignature/v1';
const ED25519_SIGNATURE_SIZE = 64;
const COSIGNATURE_PAYLOAD_SIZE = 4 + 8 + ED25519_SIGNATURE_SIZE;

export class MalformedNoteError extends Error {
  readonly code = 'ERR_MALFORMED_NOTE';
  override readonly name = 'MalformedNoteError';
}

// ---------------------------------------------------------------------------------------------
// Encodings

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Standard, padded base64 (RFC 4648 §4) in its one canonical spelling, or undefined. */
export function decodeBase64Strict(text: string): Buffer | undefined {
  if (typeof text !== 'string' || !BASE64.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : undefined; // refuses non-zero padding bits
}

/** Unicode White_Space (Go's unicode.IsSpace), '+', and C0 controls are not allowed in key names. */
// eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
const NAME_FORBIDDEN = /[\p{White_Space}+\u0000-\u001f]/u;

/** Key names (and so signer names, witness names): non-empty, no Unicode space, no '+', no control character. */
export function isValidKeyName(name: string): boolean {
  return typeof name === 'string' && name.length > 0 && name.isWellFormed() && !NAME_FORBIDDEN.test(name);
}

function checkName(name: string): void {
  if (!isValidKeyName(name)) throw new TypeError(`invalid key name ${JSON.stringify(name)}: it must be non-empty, without spaces, '+' or newlines`);
}

/** No ASCII control characters but newline, and well-formed UTF-16 (so valid UTF-8 once encoded). */
function isNoteSafe(text: string): boolean {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  return text.isWellFormed() && !/[\u0000-\u0009\u000b-\u001f]/.test(text);
}

const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** The 32-byte RFC 8032 encoding of an Ed25519 public key. */
export function rawPublicKey(publicKey: KeyObject): Buffer {
  if (publicKey.asymmetricKeyType !== 'ed25519') throw new TypeError('an Ed25519 key is required');
  const key = publicKey.type === 'private' ? crypto.createPublicKey(publicKey) : publicKey;
  const der = key.export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(SPKI_ED25519_PREFIX.length));
}

/** An Ed25519 public key object from its 32 raw bytes. */
export function ed25519PublicKey(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new RangeError('an Ed25519 public key is 32 bytes');
  return crypto.createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** An Ed25519 private key object from its 32-byte seed. */
export function ed25519PrivateKey(seed: Uint8Array): KeyObject {
  if (seed.length !== 32) throw new RangeError('an Ed25519 seed is 32 bytes');
  return crypto.createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

function ed25519Seed(privateKey: KeyObject): Buffer {
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519') throw new TypeError('an Ed25519 private key is required');
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  return Buffer.from(der.subarray(PKCS8_ED25519_PREFIX.length, PKCS8_ED25519_PREFIX.length + 32));
}

// ---------------------------------------------------------------------------------------------
// Keys

/** SHA-256(name ‖ "\n" ‖ type ‖ publicKey)[:4]: the key hash (key ID) of signatures and verifier keys. */
export function noteKeyHash(name: string, type: number, publicKey: Uint8Array): Buffer {
  checkName(name);
  if (!Number.isInteger(type) || type < 0 || type > 255) throw new RangeError(`key type must be a byte, got ${type}`);
  const digest = crypto.createHash('sha256').update(name, 'utf8').update(Buffer.of(0x0a, type)).update(publicKey).digest();
  return digest.subarray(0, 4);
}

/** A verifier key (vkey) parsed: whose signatures it checks and how. */
export interface NoteVerifierKey {
  readonly name: string;
  readonly keyHash: Buffer;
  readonly publicKey: KeyObject;
  readonly type: NoteKeyType;
}

function checkType(type: number): asserts type is NoteKeyType {
  if (type !== KEY_TYPE_ED25519 && type !== KEY_TYPE_COSIGNATURE_V1) throw new RangeError(`unsupported key type ${type}`);
}

/**
 * `<name>+<8 hex digits of the key hash>+<base64(type ‖ public key)>`. Type 0x01 (the default)
 * verifies note signatures, 0x04 cosignatures.
 */
export function verifierKey(name: string, publicKey: KeyObject, type: NoteKeyType = KEY_TYPE_ED25519): string {
  checkName(name);
  checkType(type);
  const raw = rawPublicKey(publicKey);
  return `${name}+${noteKeyHash(name, type, raw).toString('hex')}+${Buffer.concat([Buffer.of(type), raw]).toString('base64')}`;
}

const KEY_HASH_HEX = /^[0-9a-f]{8}$/;

/**
 * `<name>+<8 hex digits>+<base64 of a type byte and 32 bytes>`, the shape verifier and signer keys
 * share: the parts when the name is valid, the hash is lower-case hex and the key decodes to 33
 * bytes; else undefined. The name holds no '+' and the hash is hex, so only the key part may hold one.
 */
function keyParts(text: string): { name: string; hashHex: string; key: Buffer } | undefined {
  const first = text.indexOf('+');
  const second = text.indexOf('+', first + 1);
  if (first < 0 || second < 0) return undefined;
  const name = text.slice(0, first);
  const hashHex = text.slice(first + 1, second);
  const key = decodeBase64Strict(text.slice(second + 1));
  if (!isValidKeyName(name) || !KEY_HASH_HEX.test(hashHex) || key === undefined || key.length !== 33) return undefined;
  return { name, hashHex, key };
}

/**
 * Parses a verifier key strictly: valid name, exactly eight lower-case hex digits that match the
 * key, canonical base64 of a supported type (0x01 or 0x04) and a 32-byte key. Else undefined.
 */
export function parseVerifierKey(vkey: string): NoteVerifierKey | undefined {
  if (typeof vkey !== 'string') return undefined;
  const parts = keyParts(vkey);
  if (!parts) return undefined;
  const { name, hashHex, key } = parts;
  const type = key[0]!;
  if (type !== KEY_TYPE_ED25519 && type !== KEY_TYPE_COSIGNATURE_V1) return undefined;
  const raw = key.subarray(1);
  const keyHash = noteKeyHash(name, type, raw);
  if (keyHash.toString('hex') !== hashHex) return undefined;
  let publicKey: KeyObject;
  try {
    publicKey = ed25519PublicKey(raw);
  } catch {
    return undefined;
  }
  return { name, keyHash, publicKey, type };
}

/** A note signer: a name and an Ed25519 private key (its note signatures are type 0x01). */
export interface NoteSigner {
  readonly name: string;
  readonly privateKey: KeyObject;
}

/** `PRIVATE+KEY+<name>+<hex key hash>+<base64(0x01 ‖ 32-byte seed)>`, the golang.org/x/mod/sumdb/note signer key. Secret. */
export function signerKey(name: string, privateKey: KeyObject): string {
  checkName(name);
  const hash = noteKeyHash(name, KEY_TYPE_ED25519, rawPublicKey(privateKey));
  return `PRIVATE+KEY+${name}+${hash.toString('hex')}+${Buffer.concat([Buffer.of(KEY_TYPE_ED25519), ed25519Seed(privateKey)]).toString('base64')}`;
}

/** Parses a signer key strictly (the key hash must match the derived public key), or undefined. */
export function parseSignerKey(skey: string): (NoteSigner & { readonly keyHash: Buffer; readonly publicKey: KeyObject }) | undefined {
  if (typeof skey !== 'string' || !skey.startsWith('PRIVATE+KEY+')) return undefined;
  const parts = keyParts(skey.slice('PRIVATE+KEY+'.length));
  if (!parts || parts.key[0] !== KEY_TYPE_ED25519) return undefined;
  const { name, hashHex, key } = parts;
  const privateKey = ed25519PrivateKey(key.subarray(1));
  const publicKey = crypto.createPublicKey(privateKey);
  const keyHash = noteKeyHash(name, KEY_TYPE_ED25519, rawPublicKey(publicKey));
  if (keyHash.toString('hex') !== hashHex) return undefined;
  return { name, keyHash, privateKey, publicKey };
}

// ---------------------------------------------------------------------------------------------
// Notes

function checkText(text: string): void {
  if (typeof text !== 'string' || !text.endsWith('\n') || !isNoteSafe(text)) {
    throw new MalformedNoteError('note text must end in a newline and hold no control character but newline');
  }
}

function signatureLine(name: string, payload: Buffer): string {
  return `${SIGNATURE_PREFIX}${name} ${payload.toString('base64')}\n`;
}

/**
 * Signs `text` (which must end in "\n") with each signer, in order: the text, a blank line, one
 * signature line each. To add a witness cosignature, append the line {@link cosign} returns.
 */
export function signNote(text: string, signers: readonly NoteSigner[]): string {
  checkText(text);
  if (signers.length === 0) throw new TypeError('a note needs at least one signature');
  if (signers.length > MAX_NOTE_SIGNATURES) throw new MalformedNoteError(`more than ${MAX_NOTE_SIGNATURES} signatures`);
  let lines = '';
  const message = Buffer.from(text, 'utf8');
  for (const { name, privateKey } of signers) {
    checkName(name);
    const keyHash = noteKeyHash(name, KEY_TYPE_ED25519, rawPublicKey(privateKey));
    lines += signatureLine(name, Buffer.concat([keyHash, crypto.sign(null, message, privateKey)]));
  }
  return `${text}\n${lines}`;
}

/** One signature line of a note, decoded. */
export interface NoteSignatureLine {
  readonly name: string;
  readonly keyHash: Buffer;
  /** The bytes after the key hash (for a cosignature: timestamp ‖ signature). */
  readonly signature: Buffer;
}

/** Parses `— <name> <base64>` (with or without its final newline), or undefined. */
export function parseSignatureLine(line: string): NoteSignatureLine | undefined {
  if (typeof line !== 'string') return undefined;
  const body = line.endsWith('\n') ? line.slice(0, -1) : line;
  if (!body.startsWith(SIGNATURE_PREFIX) || body.includes('\n')) return undefined;
  const rest = body.slice(SIGNATURE_PREFIX.length);
  const space = rest.indexOf(' ');
  if (space < 0) return undefined;
  const name = rest.slice(0, space);
  const payload = decodeBase64Strict(rest.slice(space + 1));
  if (!isValidKeyName(name) || payload === undefined || payload.length < 5) return undefined;
  return { name, keyHash: Buffer.from(payload.subarray(0, 4)), signature: Buffer.from(payload.subarray(4)) };
}

/** A signature of an opened note and what became of it. */
export interface NoteSignatureResult {
  readonly name: string;
  readonly keyHash: Buffer;
  /** A verifier with this name and key hash was given. */
  readonly known: boolean;
  /** That verifier accepted the signature. A known but unverified signature should make the caller reject the note. */
  readonly verified: boolean;
  /** The key type of the matching verifier. */
  readonly type?: NoteKeyType;
  /** For a verified cosignature: its timestamp, Unix seconds. */
  readonly time?: number;
}

export interface OpenedNote {
  /** The signed text, final newline included, blank line excluded. */
  readonly text: string;
  readonly signatures: NoteSignatureResult[];
}

function cosignatureMessage(time: number | bigint, text: string): Buffer {
  return Buffer.from(`${COSIGNATURE_HEADER}\ntime ${time.toString()}\n${text}`, 'utf8');
}

function verifyWith(key: NoteVerifierKey, text: string, signature: Buffer): { verified: boolean; time?: number } {
  if (key.type === KEY_TYPE_ED25519) {
    return { verified: signature.length === ED25519_SIGNATURE_SIZE && crypto.verify(null, Buffer.from(text, 'utf8'), key.publicKey, signature) };
  }
  if (signature.length !== COSIGNATURE_PAYLOAD_SIZE - 4) return { verified: false };
  const time = signature.readBigUInt64BE(0);
  if (time > BigInt(Number.MAX_SAFE_INTEGER)) return { verified: false }; // the spec's bound is 2^63 - 1; no real clock gets past 2^53
  if (!crypto.verify(null, cosignatureMessage(time, text), key.publicKey, signature.subarray(8))) return { verified: false };
  return { verified: true, time: Number(time) };
}

/**
 * Opens a signed note: splits text and signatures at the last blank line, parses every signature
 * line, and verifies each signature whose name and key hash match a given verifier key (type
 * 0x01: Ed25519 over the text; type 0x04: cosignature/v1 over the text). Throws
 * MalformedNoteError for a note that is not valid (control characters, no blank line, a bad
 * signature line, more than 100 signatures) and for an ambiguous verifier set; otherwise lists
 * every signature, known or not. The caller decides what suffices: typically at least one
 * verified signature from the log's key and none known but unverified.
 */
export function openNote(note: string, verifiers: readonly NoteVerifierKey[]): OpenedNote {
  if (typeof note !== 'string' || !isNoteSafe(note)) throw new MalformedNoteError('note holds a control character or invalid Unicode');
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw new MalformedNoteError('note has no blank line before its signatures');
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (block.length === 0 || !block.endsWith('\n')) throw new MalformedNoteError('note has no signature, or its last line does not end in a newline');
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_NOTE_SIGNATURES) throw new MalformedNoteError(`note has more than ${MAX_NOTE_SIGNATURES} signatures`);

  const byId = new Map<string, NoteVerifierKey>();
  for (const key of verifiers) {
    const id = `${key.name}+${key.keyHash.toString('hex')}`;
    const other = byId.get(id);
    if (other !== undefined && (other.type !== key.type || !rawPublicKey(other.publicKey).equals(rawPublicKey(key.publicKey)))) {
      throw new MalformedNoteError(`ambiguous verifier key ${id}`);
    }
    byId.set(id, key);
  }

  const signatures = lines.map((line): NoteSignatureResult => {
    const parsed = parseSignatureLine(line);
    if (parsed === undefined) throw new MalformedNoteError('malformed signature line');
    const key = byId.get(`${parsed.name}+${parsed.keyHash.toString('hex')}`);
    if (key === undefined) return { name: parsed.name, keyHash: parsed.keyHash, known: false, verified: false };
    const { verified, time } = verifyWith(key, text, parsed.signature);
    return { name: parsed.name, keyHash: parsed.keyHash, known: true, verified, type: key.type, ...(time !== undefined ? { time } : {}) };
  });
  return { text, signatures };
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

export interface Checkpoint {
  /** The log's identity; by convention the log's key name, a schema-less URL. */
  readonly origin: string;
  /** Leaves in the tree. */
  readonly size: number;
  /** RFC 6962 root hash of the tree, 32 bytes. */
  readonly root: Uint8Array;
  /** Opaque extension lines (not recommended by the spec). */
  readonly extensions?: readonly string[];
}

function isCheckpointLine(line: string): boolean {
  return typeof line === 'string' && line.length > 0 && !line.includes('\n') && isNoteSafe(line);
}

/** The checkpoint note text: origin, decimal size, base64 root, extension lines, each ending in "\n". */
export function formatCheckpoint(checkpoint: Checkpoint): string {
  const { origin, size, root, extensions = [] } = checkpoint;
  if (!isCheckpointLine(origin)) throw new TypeError('checkpoint origin must be a non-empty line without control characters');
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`checkpoint size must be a non-negative safe integer, got ${size}`);
  if (root.length !== 32) throw new RangeError('checkpoint root must be 32 bytes');
  for (const line of extensions) if (!isCheckpointLine(line)) throw new TypeError('checkpoint extension lines must be non-empty lines without control characters');
  return [origin, String(size), Buffer.from(root).toString('base64'), ...extensions].map((line) => `${line}\n`).join('');
}

export interface ParsedCheckpoint {
  readonly origin: string;
  readonly size: number;
  readonly root: Buffer;
  readonly extensions: string[];
}

/**
 * Parses checkpoint text (a note's text, signatures removed) strictly: at least three non-empty
 * lines each ending in "\n", size in decimal without leading zeros (and at most 2^53 - 1), root
 * exactly 32 bytes in canonical padded base64, no control characters. Else undefined.
 */
export function parseCheckpoint(text: string): ParsedCheckpoint | undefined {
  if (typeof text !== 'string' || !text.endsWith('\n') || !isNoteSafe(text)) return undefined;
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3 || lines.some((line) => line.length === 0)) return undefined;
  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string, ...string[]];
  if (!/^(?:0|[1-9][0-9]{0,15})$/.test(sizeText)) return undefined;
  const size = Number(sizeText);
  if (!Number.isSafeInteger(size)) return undefined;
  const root = decodeBase64Strict(rootText);
  if (root === undefined || root.length !== 32) return undefined;
  return { origin, size, root, extensions };
}

// ---------------------------------------------------------------------------------------------
// Cosignatures

export interface Cosigner {
  /** The witness's key name. */
  readonly name: string;
  readonly privateKey: KeyObject;
  /** When the cosignature is made, Unix seconds. */
  readonly time: number;
}

/** The exact bytes a cosignature/v1 signs. */
export function cosignatureSignedMessage(checkpointText: string, time: number): Buffer {
  if (!Number.isSafeInteger(time) || time < 0) throw new RangeError(`cosignature time must be a non-negative safe integer of seconds, got ${time}`);
  return cosignatureMessage(time, checkpointText);
}

/**
 * A cosignature/v1 signature line (ending in "\n") over a checkpoint's text: key hash of type
 * 0x04 ‖ time (uint64 big-endian) ‖ Ed25519 signature of "cosignature/v1\ntime <t>\n" ‖ text.
 * Append it to the signed checkpoint note.
 */
export function cosign(checkpointText: string, cosigner: Cosigner): string {
  const { name, privateKey, time } = cosigner;
  checkName(name);
  if (parseCheckpoint(checkpointText) === undefined) throw new MalformedNoteError('not a checkpoint text');
  const message = cosignatureSignedMessage(checkpointText, time);
  const stamp = Buffer.alloc(8);
  stamp.writeBigUInt64BE(BigInt(time));
  const keyHash = noteKeyHash(name, KEY_TYPE_COSIGNATURE_V1, rawPublicKey(privateKey));
  return signatureLine(name, Buffer.concat([keyHash, stamp, crypto.sign(null, message, privateKey)]));
}

/**
 * The time a cosignature/v1 line claims (Unix seconds), read without verifying anything: for
 * display or for choosing a witness key. Undefined when the payload is not 4 + 8 + 64 bytes.
 */
export function cosignatureTime(line: string): number | undefined {
  const parsed = parseSignatureLine(line);
  if (parsed === undefined || parsed.signature.length !== COSIGNATURE_PAYLOAD_SIZE - 4) return undefined;
  const time = parsed.signature.readBigUInt64BE(0);
  return time <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(time) : undefined;
}

/**
 * Verifies one cosignature line (with or without its final newline) over a checkpoint's text with
 * a witness key of type 0x04: returns the cosignature's time, or undefined when the line is not
 * this witness's valid cosignature of this checkpoint.
 */
export function verifyCosignature(checkpointText: string, line: string, witness: NoteVerifierKey): { time: number } | undefined {
  if (witness.type !== KEY_TYPE_COSIGNATURE_V1 || parseCheckpoint(checkpointText) === undefined) return undefined;
  const parsed = parseSignatureLine(line);
  if (parsed === undefined || parsed.name !== witness.name || !parsed.keyHash.equals(witness.keyHash)) return undefined;
  const { verified, time } = verifyWith(witness, checkpointText, parsed.signature);
  return verified && time !== undefined ? { time } : undefined;
}
