import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_LOG_ORIGIN, keyIdOf, loadSigningKey, loadTrustedKeys } from '../audit/checkpoints.js';
import { isValidKeyName } from '../audit/note.js';
import { createEmbeddedDatabase, createPostgresDatabase, VERIFIER_SEARCH_PATH, type Database } from '../db/database.js';
import { timestamp } from '../http/input.js';
import { generateReport, ReportInputError } from './generate.js';
import { loadReportKey, ReportCheckError, verifyReportDir } from './signed-note.js';
import { checkLogSchema } from '../audit/schema-guard.js';

/**
 * The command line of `npm run audit:report` (src/cli/audit-report.ts runs it): flags in, an
 * exit status out, every message through `io`, the environment passed in. Errors never print a
 * stack or a row: one line naming what could not be used.
 */

const USAGE = `usage: npm run audit:report -- --from TIME --to TIME --out DIR (--database-url URL | --data-dir DIR)
                            [--key FILE] [--origin NAME] [--checkpoint-file FILE]... [--max-rows N]
       npm run audit:report -- --verify DIR --trusted-key KEY [--trusted-key KEY]...

Writes the compliance report of the period [--from, --to) (RFC 3339 date-times with an offset, e.g.
2026-03-01T00:00:00Z; the period must have ended) into DIR: report.html, report.json (the same data)
and report.note, a signed note by the log's checkpoint key over the SHA-256 of both
(docs/report.md). Generating it is recorded in the log as one audit.queried record.

  --database-url URL      the log's PostgreSQL database (default: DATABASE_URL)
  --data-dir DIR          or the embedded database of a stopped gateway (its DATA_DIR)
  --key FILE              the checkpoint signing key (PKCS#8 PEM); default AUDIT_SIGNING_KEY_FILE,
                          else DIR/keys/audit-ed25519.pem with --data-dir
  --origin NAME           the log's origin, the signature's name; default AUDIT_LOG_ORIGIN, else ${DEFAULT_LOG_ORIGIN}
  --checkpoint-file FILE  the checkpoint export file to verify too, repeatable (default
                          AUDIT_CHECKPOINT_FILE, else DIR/audit-checkpoints.jsonl with --data-dir, when present)
  --max-rows N            most rows listed per table (counts stay exact); default 1000

  --verify DIR            check a report directory instead: the note's signature by a trusted key
                          and each file's SHA-256
  --trusted-key KEY       the log's note verifier key (npm run audit:key, GET /audit-log/key), or a
                          file holding it or a PEM public key

Keys trusted for the log's checkpoints: the signing key and AUDIT_TRUSTED_KEY_FILES (comma-separated).

Exit status: 0 report written and the log intact (--verify: the report is intact), 1 report written
but the log failed verification (--verify: a file or the signature does not match), 2 could not run
(a bad flag, a key or the database unusable, DIR already holding a report, the read not recorded).`;

/** The command line could not be used: printed with the usage, exit 2. */
class UsageError extends Error {}

const OPTIONS = {
  from: { type: 'string' },
  to: { type: 'string' },
  out: { type: 'string' },
  'database-url': { type: 'string' },
  'data-dir': { type: 'string' },
  key: { type: 'string' },
  origin: { type: 'string' },
  'checkpoint-file': { type: 'string', multiple: true },
  'max-rows': { type: 'string' },
  verify: { type: 'string' },
  'trusted-key': { type: 'string', multiple: true },
  help: { type: 'boolean' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values'];

/** Where the command line writes, and the environment it reads its defaults from. */
export interface CliIo {
  env: NodeJS.ProcessEnv;
  out(line: string): void;
  err(line: string): void;
}

/** A variable of `io.env`, trimmed; empty counts as unset. */
const envOf = (io: CliIo) => (name: string): string | undefined => io.env[name]?.trim() || undefined;

function runVerify(values: Values, io: CliIo): number {
  const generateOnly = (['from', 'to', 'out', 'database-url', 'data-dir', 'key', 'checkpoint-file', 'max-rows'] as const).filter((f) => values[f] !== undefined);
  if (generateOnly.length > 0) throw new UsageError(`--verify takes only --trusted-key, not --${generateOnly.join(', --')}`);
  const keyArgs = values['trusted-key'] ?? [];
  if (keyArgs.length === 0) throw new UsageError('--verify needs at least one --trusted-key: a signature proves nothing unless its key is trusted');
  const keys = keyArgs.map(loadReportKey);
  const verdict = verifyReportDir(values.verify!, keys);
  if (verdict.ok) {
    io.out(`report intact: ${verdict.origin}, period ${verdict.from} to ${verdict.to}, generated ${verdict.generatedAt}; signature and SHA-256 of report.html and report.json verified`);
    return 0;
  }
  io.out(`report NOT intact: ${verdict.problem}`);
  return 1;
}

function timeFlag(values: Values, name: 'from' | 'to'): string {
  const value = values[name];
  if (value === undefined) throw new UsageError(`--${name} is required`);
  if (!timestamp.safeParse(value).success) throw new UsageError(`--${name} must be an RFC 3339 date-time with an offset, like 2026-03-01T00:00:00Z`);
  return value;
}

function maxRowsFlag(value: string | undefined): number {
  if (value === undefined) return 1000;
  if (!/^[1-9][0-9]{0,5}$/.test(value) || Number(value) > 100_000) throw new UsageError('--max-rows must be a whole number from 1 to 100000');
  return Number(value);
}

/**
 * The log's database: embedded under DIR/pgdata, or PostgreSQL at `url` (both checked before),
 * every session with `search_path` pinned to the built-ins, as for audit:verify (docs/trust-model.md).
 */
async function openDatabase(target: { dataDir?: string | undefined; url?: string | undefined }): Promise<Database> {
  if (target.dataDir !== undefined) return createEmbeddedDatabase(path.join(target.dataDir, 'pgdata'), { searchPath: VERIFIER_SEARCH_PATH });
  return createPostgresDatabase({
    url: target.url!, poolMax: 4, statementTimeoutMs: 600_000, connectTimeoutMs: 5000, applicationName: 'authtrail-report', searchPath: VERIFIER_SEARCH_PATH,
  });
}

async function runGenerate(values: Values, io: CliIo): Promise<number> {
  const env = envOf(io);
  if (values['trusted-key'] !== undefined) throw new UsageError('--trusted-key belongs to --verify; the report is signed with --key');
  const from = timeFlag(values, 'from');
  const to = timeFlag(values, 'to');
  if (values.out === undefined) throw new UsageError('--out DIR is required');
  const maxRows = maxRowsFlag(values['max-rows']);
  const origin = values.origin ?? env('AUDIT_LOG_ORIGIN') ?? DEFAULT_LOG_ORIGIN;
  if (!isValidKeyName(origin)) throw new UsageError('the origin must be non-empty, without spaces, + or control characters');
  if (values['database-url'] !== undefined && values['data-dir'] !== undefined) throw new UsageError('give one of --database-url and --data-dir, not both');
  const dataDir = values['data-dir'] === undefined ? undefined : path.resolve(values['data-dir']);
  // PGlite would create an empty database where none is: a report of nothing would look valid.
  if (dataDir !== undefined && !fs.existsSync(path.join(dataDir, 'pgdata'))) throw new ReportInputError(`--data-dir ${dataDir}: no embedded database there (no pgdata directory)`);
  const url = dataDir === undefined ? (values['database-url'] ?? env('DATABASE_URL')) : undefined;
  if (dataDir === undefined && url === undefined) throw new UsageError('no database: give --database-url URL or --data-dir DIR (or set DATABASE_URL)');
  if (url !== undefined && !/^postgres(ql)?:\/\//.test(url)) throw new UsageError('--database-url must be a postgres:// or postgresql:// URL');
  const keyFile = values.key ?? env('AUDIT_SIGNING_KEY_FILE') ?? (dataDir ? path.join(dataDir, 'keys', 'audit-ed25519.pem') : undefined);
  if (keyFile === undefined) throw new UsageError('no signing key: give --key FILE or set AUDIT_SIGNING_KEY_FILE');
  let key;
  let trustedKeys;
  try {
    key = loadSigningKey(keyFile, { generate: false });
    const retired = (env('AUDIT_TRUSTED_KEY_FILES') ?? '').split(',').map((p) => p.trim()).filter((p) => p !== '');
    trustedKeys = new Map([[keyIdOf(key.publicKey), key.publicKey], ...loadTrustedKeys(retired)]);
  } catch (err) {
    throw new ReportInputError(`the signing key: ${(err as Error).message}`);
  }
  const defaultFile = env('AUDIT_CHECKPOINT_FILE') ?? (dataDir ? path.join(dataDir, 'audit-checkpoints.jsonl') : undefined);
  const checkpointFiles = values['checkpoint-file'] ?? (defaultFile !== undefined && fs.existsSync(defaultFile) ? [defaultFile] : []);
  for (const file of checkpointFiles) if (!fs.existsSync(file)) throw new ReportInputError(`--checkpoint-file ${file} does not exist`);

  const db = await openDatabase({ dataDir, url });
  try {
    await checkLogSchema(db);
    const { data, dir } = await generateReport({ db, from, to, outDir: values.out, key, trustedKeys, origin, checkpointFiles, maxRows });
    const ig = data.integrity;
    io.out(
      `report written to ${dir} (report.html, report.json, report.note): ${data.records.count} records from ${data.period.from} to ${data.period.to}; ` +
        (data.records.complete ? '' : `PERIOD PARTLY ARCHIVED: records up to seq ${data.records.archived!.through_seq} are in the archive, not counted; `) +
        (ig.valid ? `log intact (${ig.chain.checked} records, ${ig.chain.checkpoints_checked} signed checkpoints matched)` : `LOG NOT INTACT at seq ${Math.min(...[ig.archive, ig.chain, ig.tree, ig.export_file].map((c) => c?.first_invalid_seq ?? Infinity))}`) +
        `; ${ig.covering_checkpoint ? `covered by the checkpoint of tree size ${ig.covering_checkpoint.tree_size}` : 'no checkpoint covers the period\'s end yet'}` +
        `; recorded as seq ${data.recorded_as.seq}`,
    );
    return ig.valid ? 0 : 1;
  } finally {
    await db.close();
  }
}

/** Runs the command line; resolves with the exit status (0, 1, or 2 when it could not run). */
export async function auditReportCli(args: string[], io: CliIo): Promise<number> {
  try {
    const { values } = parseArgs({ args, options: OPTIONS, allowPositionals: false });
    if (values.help) {
      io.out(USAGE);
      return 0;
    }
    return values.verify !== undefined ? runVerify(values, io) : await runGenerate(values, io);
  } catch (err) {
    const usage = err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    const known = usage || err instanceof ReportInputError || err instanceof ReportCheckError;
    io.err(`audit:report could not run: ${known ? (err as Error).message : describe(err)}${usage ? `\n\n${USAGE}` : ''}`);
    return 2;
  }
}

/** An unexpected error in one line: its message and code, never a stack or row values. */
function describe(err: unknown): string {
  const e = err as { message?: string; code?: string; cause?: { code?: string; message?: string } };
  const cause = e.cause?.code ?? e.cause?.message;
  return `${e.message ?? String(err)}${e.code ? ` (${e.code})` : ''}${cause ? ` (${cause})` : ''}`;
}
