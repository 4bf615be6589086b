import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { checkpointVerifierKey, loadSigningKey, DEFAULT_LOG_ORIGIN } from '../audit/checkpoints.js';
import { isValidKeyName } from '../audit/note.js';

const USAGE = `usage: npm run audit:key -- [--key FILE] [--origin NAME]

Prints the note verifier key of the checkpoint key: one line <origin>+<hex key hash>+<base64>,
what GET /audit-log/key serves and what auditors and witnesses pass as a trusted key.
  --key FILE     the checkpoint signing key (PKCS#8 PEM); default AUDIT_SIGNING_KEY_FILE
  --origin NAME  the log's origin, the key's name; default AUDIT_LOG_ORIGIN, else ${DEFAULT_LOG_ORIGIN}`;

/** `npm run audit:key`: the verifier key line on stdout; exit 2 when the key cannot be read. */
function run(): number {
  const { values } = parseArgs({ options: { key: { type: 'string' }, origin: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const file = values.key ?? (process.env.AUDIT_SIGNING_KEY_FILE?.trim() || undefined);
  if (!file) throw new Error('no key: give --key FILE or set AUDIT_SIGNING_KEY_FILE');
  if (!fs.existsSync(file)) throw new Error(`${file} does not exist`);
  const origin = values.origin ?? (process.env.AUDIT_LOG_ORIGIN?.trim() || DEFAULT_LOG_ORIGIN);
  if (!isValidKeyName(origin)) throw new Error('the origin must be non-empty, without spaces, + or control characters');
  const key = loadSigningKey(file, { generate: false });
  console.log(checkpointVerifierKey(origin, key.publicKey));
  return 0;
}

try {
  process.exitCode = run();
} catch (err) {
  console.error(`audit:key could not run: ${(err as Error).message}\n\n${USAGE}`);
  process.exitCode = 2;
}
