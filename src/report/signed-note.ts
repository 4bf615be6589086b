import crypto, { type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { trustedKeyFrom } from '../audit/checkpoints.js';
import { MalformedNoteError, openNote, parseVerifierKey, signNote, verifierKey, type NoteVerifierKey } from '../audit/note.js';
import { REPORT_FORMAT } from './model.js';

/**
 * The report's signature: a detached C2SP signed note, `report.note`, signed by the log's
 * checkpoint key under the log's origin, so the note verifier key that checks checkpoints
 * (`npm run audit:key`, GET /audit-log/key) checks reports too. Its text names the format, the
 * log, the period and the generation time, then one `sha256sum`-style line per file:
 *
 *     authtrail-audit-report/v1
 *     <origin>
 *     period <from> <to>
 *     generated <time>
 *     <sha256 hex>  report.html
 *     <sha256 hex>  report.json
 *
 * The signed lines hold the hashes, not the files, so `sha256sum -c` checks the files against
 * them once the signature is checked (docs/report.md shows how by hand).
 */

export const REPORT_FILES = ['report.html', 'report.json'] as const;
export const NOTE_FILE = 'report.note';

const sha256 = (bytes: Uint8Array): string => crypto.createHash('sha256').update(bytes).digest('hex');

/** The signed note over the two files' bytes. */
export function signReport(
  files: Record<(typeof REPORT_FILES)[number], Uint8Array>,
  meta: { origin: string; from: string; to: string; generatedAt: string },
  privateKey: KeyObject,
): string {
  const text =
    `${REPORT_FORMAT}\n${meta.origin}\nperiod ${meta.from} ${meta.to}\ngenerated ${meta.generatedAt}\n` +
    REPORT_FILES.map((name) => `${sha256(files[name])}  ${name}\n`).join('');
  return signNote(text, [{ name: meta.origin, privateKey }]);
}

/** The report could not be checked at all (a key or directory unusable): exit 2, not a verdict. */
export class ReportCheckError extends Error {}

/**
 * A key trusted to sign reports: a note verifier key (`<origin>+<hex>+<base64>`), or a file holding
 * one or a PEM public (or private) Ed25519 key. A PEM key has no name; it is checked under the
 * name the note's signature line gives.
 */
export function loadReportKey(value: string): { publicKey: KeyObject; name?: string } {
  const vkey = parseVerifierKey(value.trim());
  if (vkey) {
    if (vkey.type !== 0x01) throw new ReportCheckError('--trusted-key: a cosignature (witness) key, not the log\'s checkpoint key');
    return { publicKey: vkey.publicKey, name: vkey.name };
  }
  let text: string;
  try {
    text = fs.readFileSync(value, 'utf8');
  } catch (err) {
    throw new ReportCheckError(`--trusted-key ${value}: neither a note verifier key nor a readable file (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
  try {
    const key = trustedKeyFrom(text);
    return key.origin === undefined ? { publicKey: key.publicKey } : { publicKey: key.publicKey, name: key.origin };
  } catch (err) {
    throw new ReportCheckError(`--trusted-key ${value}: ${(err as Error).message}`);
  }
}

export type ReportVerdict =
  | { ok: true; origin: string; from: string; to: string; generatedAt: string }
  | { ok: false; problem: string };

/**
 * Checks a report directory: `report.note` signed by one of the trusted keys (and by no known key
 * that fails), in the report format, and the SHA-256 of each file equal to its signed line.
 */
export function verifyReportDir(dir: string, keys: ReadonlyArray<{ publicKey: KeyObject; name?: string }>): ReportVerdict {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch {
    throw new ReportCheckError(`${dir} does not exist`);
  }
  if (!stat.isDirectory()) throw new ReportCheckError(`${dir} is not a directory`);
  const read = (name: string): Buffer | undefined => {
    try {
      return fs.readFileSync(path.join(dir, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new ReportCheckError(`${name}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
    }
  };
  const noteBytes = read(NOTE_FILE);
  if (noteBytes === undefined) return { ok: false, problem: `${NOTE_FILE} is missing: the report is not signed` };
  const note = noteBytes.toString('utf8');

  const lines = note.split('\n');
  const origin = lines[1] ?? '';
  const verifiers: NoteVerifierKey[] = [];
  for (const key of keys) {
    const name = key.name ?? origin;
    try {
      verifiers.push(parseVerifierKey(verifierKey(name, key.publicKey))!);
    } catch {
      // A PEM key and a note whose second line is no valid name: nothing to check it under.
    }
  }
  let opened;
  try {
    opened = openNote(note, verifiers);
  } catch (err) {
    if (err instanceof MalformedNoteError) return { ok: false, problem: `${NOTE_FILE} is not a well-formed signed note (${err.message})` };
    throw err;
  }
  const known = opened.signatures.filter((s) => s.known);
  if (known.some((s) => !s.verified)) return { ok: false, problem: `${NOTE_FILE}: a signature of a trusted key does not verify (the note was changed)` };
  if (known.length === 0) return { ok: false, problem: `${NOTE_FILE} is not signed by a trusted key` };

  const text = opened.text.slice(0, -1).split('\n');
  const [format, signedOrigin, period, generated, ...hashLines] = text;
  const periodMatch = /^period (\S+) (\S+)$/.exec(period ?? '');
  const generatedMatch = /^generated (\S+)$/.exec(generated ?? '');
  if (format !== REPORT_FORMAT || !signedOrigin || !periodMatch || !generatedMatch || hashLines.length !== REPORT_FILES.length) {
    return { ok: false, problem: `${NOTE_FILE} is signed but is not a ${REPORT_FORMAT} note` };
  }
  for (const [i, name] of REPORT_FILES.entries()) {
    const match = /^([0-9a-f]{64}) {2}(\S+)$/.exec(hashLines[i]!);
    if (!match || match[2] !== name) return { ok: false, problem: `${NOTE_FILE} is signed but does not list ${name} where expected` };
    const bytes = read(name);
    if (bytes === undefined) return { ok: false, problem: `${name} is missing` };
    if (sha256(bytes) !== match[1]) return { ok: false, problem: `${name} does not match its signed SHA-256: it was changed after signing` };
  }
  return { ok: true, origin: signedOrigin, from: periodMatch[1]!, to: periodMatch[2]!, generatedAt: generatedMatch[1]! };
}
