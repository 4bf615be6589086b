/**
 * The wire format of C2SP tlog-witness `add-checkpoint`, shared by the witness (which parses
 * requests) and the gateway (which sends them): body = `old <size>\n`, zero to 63 consistency
 * proof lines (one base64 hash each), an empty line, then the signed checkpoint note.
 */

/** Content type of a 409 answer: the witness's latest cosigned size in decimal, then a newline. */
export const SIZE_CONTENT_TYPE = 'text/x.tlog.size';

/** The most consistency proof lines a client may send (tlog-witness). */
export const MAX_PROOF_LINES = 63;

export interface AddCheckpointRequest {
  /** The size of the checkpoint the client believes the witness cosigned last (0: none). */
  readonly oldSize: number;
  /** RFC 6962 consistency proof from `oldSize` to the checkpoint's size, 32-byte hashes. */
  readonly proof: readonly Buffer[];
  /** The signed checkpoint note, verbatim. */
  readonly checkpoint: string;
}

export class WitnessProtocolError extends Error {
  readonly code = 'ERR_WITNESS_PROTOCOL';
}

const DECIMAL = /^(0|[1-9][0-9]{0,15})$/;

/** A decimal with no leading zeroes that is a safe integer, else undefined. */
export function parseSize(text: string): number | undefined {
  if (!DECIMAL.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Standard base64 of exactly 32 bytes, in its one canonical spelling. */
export function parseHash(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]{43}=$/.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.length === 32 && bytes.toString('base64') === text ? bytes : undefined;
}

/** Builds the request body. */
export function formatAddCheckpoint(request: AddCheckpointRequest): string {
  const proof = request.proof.map((h) => `${h.toString('base64')}\n`).join('');
  return `old ${request.oldSize}\n${proof}\n${request.checkpoint}`;
}

/** Parses a request body; throws {@link WitnessProtocolError} (answered 400) when it is not one. */
export function parseAddCheckpoint(body: string): AddCheckpointRequest {
  const end = body.indexOf('\n\n');
  if (end < 0) throw new WitnessProtocolError('the body has no empty line before the checkpoint');
  const lines = body.slice(0, end).split('\n');
  const old = /^old (.*)$/.exec(lines[0]!);
  const oldSize = old ? parseSize(old[1]!) : undefined;
  if (oldSize === undefined) throw new WitnessProtocolError('the first line must be "old <size>" in decimal');
  const proofLines = lines.slice(1);
  if (proofLines.length > MAX_PROOF_LINES) throw new WitnessProtocolError(`more than ${MAX_PROOF_LINES} consistency proof lines`);
  const proof = proofLines.map((line, i) => {
    const hash = parseHash(line);
    if (!hash) throw new WitnessProtocolError(`consistency proof line ${i + 1} is not a base64 SHA-256 hash`);
    return hash;
  });
  return { oldSize, proof, checkpoint: body.slice(end + 2) };
}

/** Parses a 409 body: the witness's size and a newline. */
export function parseSizeBody(body: string): number | undefined {
  return body.endsWith('\n') ? parseSize(body.slice(0, -1)) : undefined;
}

/** The signature lines of a 200 answer (each `— <name> <base64>`), or undefined when the body is not only such lines. */
export function parseSignatureLines(body: string): string[] | undefined {
  if (!body.endsWith('\n')) return undefined;
  const lines = body.slice(0, -1).split('\n');
  return lines.length > 0 && lines.every((l) => /^\u2014 [^\s+]+ [A-Za-z0-9+/]+=*$/.test(l)) ? lines : undefined;
}
