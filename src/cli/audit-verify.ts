import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { keyIdOf, trustedKeyFrom } from '../audit/checkpoints.js';
import { parseVerifierKey } from '../audit/note.js';
import type { ArchiveResult } from '../audit/verify-archive.js';
import type { VerifyResult } from '../audit/verify-chain.js';
import type { ExportResult } from '../audit/verify-export.js';
import type { TreeResult } from '../audit/verify-tree.js';
import { verifyDatabase } from '../audit/verify-both.js';
import { checkLogSchema } from '../audit/schema-guard.js';
import { checkWitnessFlags, describeWitnessCheck, WITNESS_USAGE, type WitnessCheckResult } from '../audit/witness-check.js';
import { createEmbeddedDatabase, createPostgresDatabase, VERIFIER_SEARCH_PATH, type Database } from '../db/database.js';
import { UsageError, runCli } from './run-cli.js';

const USAGE = `usage: npm run audit:verify -- (--database-url URL | --data-dir DIR) --trusted-key KEY... [--checkpoint-file FILE]
       [--archive DIR]... [--origin NAME] [--json]

Verifies the audit log: the hash chain, the Merkle tree (every tile recomputed from the records,
the root of every signed checkpoint), the signed checkpoints, and the checkpoint export file.
Every input is a flag: nothing is read from the environment or the gateway's configuration.

  --database-url URL      the PostgreSQL database of the log (a read-only login is enough)
  --data-dir DIR          or the embedded database of a stopped gateway (its DATA_DIR)
  --trusted-key KEY       a key trusted to sign checkpoints, repeatable, at least one: a note
                          verifier key (<name>+<hex>+<base64>, from GET /audit-log/key or
                          npm run audit:key), or a file holding one or a PEM public or private key
  --public-key FILE       the same as --trusted-key (earlier name)
  --checkpoint-file FILE  the JSON-lines export (AUDIT_CHECKPOINT_FILE): its checkpoints count like
                          the table's, its line chain is checked, and that it holds every checkpoint
                          of the table from its first line on. Repeat it for a rotated file, oldest
                          first: the files are read as one
  --archive DIR           an archive directory of npm run audit:archive (repeatable): every segment's
                          signed manifest, records file and records are verified from the genesis on,
                          chained to each other and to the log in the database. Without it, a log
                          whose prefix was archived is verified from the last recorded manifest on
                          (the manifests are checked, the archived records are not)
  --origin NAME           checkpoint notes must name this log (a verifier key sets it too)
  --json                  print the result as JSON
${WITNESS_USAGE}

Exit status: 0 intact, 1 tampered (the first bad seq and the problem printed), 2 could not run
(no trusted key, a key or file unreadable, the database unreachable).`;

type Problem = NonNullable<VerifyResult['problem'] | TreeResult['problem'] | ExportResult['problem'] | WitnessCheckResult['problem'] | ArchiveResult['problem']>;

/** What `--json` prints: the chain's result with the first problem of all checks, and each check's own. */
interface AuditVerifyResult extends Omit<VerifyResult, 'problem'> {
  problem?: Problem;
  tree: TreeResult;
  /** When a prefix of the log is archived, or `--archive` was given: what was checked of it. */
  archive?: ArchiveResult;
  export?: ExportResult;
  witnesses?: WitnessCheckResult;
}

interface TrustedKeys {
  keys: Map<string, KeyObject>;
  /** Fixed by `--origin` or by the verifier keys given. */
  origin: string | undefined;
}

/** `--trusted-key` values: a verifier key string, or a file with a verifier key or a PEM key. */
function loadKeys(values: readonly string[], origin: string | undefined): TrustedKeys {
  const keys = new Map<string, KeyObject>();
  const origins = new Set<string>(origin === undefined ? [] : [origin]);
  for (const value of values) {
    let key: { publicKey: KeyObject; origin?: string };
    const vkey = parseVerifierKey(value.trim());
    if (vkey) {
      if (vkey.type !== 0x01) throw new UsageError(`--trusted-key ${value}: a cosignature (witness) key, not a checkpoint key`);
      key = { publicKey: vkey.publicKey, origin: vkey.name };
    } else {
      let text: string;
      try {
        text = fs.readFileSync(value, 'utf8');
      } catch (err) {
        throw new UsageError(`--trusted-key ${value}: neither a note verifier key nor a readable file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
      try {
        key = trustedKeyFrom(text);
      } catch (err) {
        throw new UsageError(`--trusted-key ${value}: ${(err as Error).message}`);
      }
    }
    keys.set(keyIdOf(key.publicKey), key.publicKey);
    if (key.origin !== undefined) origins.add(key.origin);
  }
  if (origins.size > 1) throw new UsageError(`the trusted keys and --origin name different logs: ${[...origins].join(', ')}`);
  return { keys, origin: [...origins][0] };
}

/**
 * The database, every session with `search_path` pinned to the built-ins: a schema or function a
 * database administrator puts first on the login's path cannot stand in for the log (docs/trust-model.md).
 */
function openDatabase(values: { 'database-url'?: string | undefined; 'data-dir'?: string | undefined }): Promise<Database> {
  const url = values['database-url'];
  const dir = values['data-dir'];
  if ((url === undefined) === (dir === undefined)) throw new UsageError('give exactly one of --database-url and --data-dir');
  if (url !== undefined) {
    if (!/^postgres(ql)?:\/\//.test(url)) throw new UsageError('--database-url must be a postgres:// or postgresql:// URL');
    return Promise.resolve(
      createPostgresDatabase({ url, poolMax: 4, statementTimeoutMs: 600_000, connectTimeoutMs: 5000, applicationName: 'authtrail-verify', searchPath: VERIFIER_SEARCH_PATH }),
    );
  }
  return createEmbeddedDatabase(path.join(path.resolve(dir!), 'pgdata'), { searchPath: VERIFIER_SEARCH_PATH });
}

/** The lowest bad seq of all checks; on a tie the archive's problem, then the chain's, the tree's, the export file's. */
function firstProblem(parts: ReadonlyArray<{ first_invalid_seq?: number; problem?: Problem; detail?: string } | undefined>) {
  let first: { first_invalid_seq: number; problem: Problem; detail: string | undefined } | undefined;
  for (const part of parts) {
    if (part?.first_invalid_seq === undefined || part.problem === undefined) continue;
    if (!first || part.first_invalid_seq < first.first_invalid_seq) first = { first_invalid_seq: part.first_invalid_seq, problem: part.problem, detail: part.detail };
  }
  return first;
}

function describeArchive(a: ArchiveResult): string {
  if (a.last_seq === 0) return 'archive: none';
  return a.records_checked
    ? `archive: ${a.segments} segments, records 1..${a.last_seq} rehashed from the files (${a.checkpoints_checked} checkpoints inside)`
    : `archive: records 1..${a.last_seq} archived in ${a.segments} segments, manifests checked, records not (give --archive DIR)`;
}

/** `npm run audit:verify`: exit 0 when intact, 1 with the first bad seq when not, 2 when it could not run. */
async function run(): Promise<number> {
  const { values } = parseArgs({
    options: {
      'database-url': { type: 'string' },
      'data-dir': { type: 'string' },
      'trusted-key': { type: 'string', multiple: true },
      'public-key': { type: 'string', multiple: true },
      'checkpoint-file': { type: 'string', multiple: true },
      origin: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean' },
      witness: { type: 'string', multiple: true },
      'witness-state': { type: 'string', multiple: true },
      archive: { type: 'string', multiple: true },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const keyArgs = [...(values['trusted-key'] ?? []), ...(values['public-key'] ?? [])];
  if (keyArgs.length === 0) throw new UsageError('no trusted key: give at least one --trusted-key (a checkpoint proves nothing unless its key is trusted)');
  const trusted = loadKeys(keyArgs, values.origin);
  const checkpointFiles = values['checkpoint-file'] ?? [];
  for (const file of checkpointFiles) if (!fs.existsSync(file)) throw new UsageError(`--checkpoint-file ${file} does not exist`);
  const archiveDirs = values.archive ?? [];
  for (const dir of archiveDirs) if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new UsageError(`--archive ${dir} is not a directory`);

  const db = await openDatabase(values);
  try {
    await checkLogSchema(db);
    const started = performance.now();
    const { chain, tree, exported, archive } = await verifyDatabase(db, {
      trustedKeys: trusted.keys,
      origin: trusted.origin,
      checkpointFiles,
      archiveDirs,
    });
    const witnessed = await checkWitnessFlags(db, values, trusted);
    const first = firstProblem([archive, chain, tree, exported, witnessed]);
    const result: AuditVerifyResult = {
      ...chain,
      valid: first === undefined,
      first_invalid_seq: undefined,
      problem: undefined,
      detail: undefined,
      ...(first ?? {}),
      tree,
      ...(archive ? { archive } : {}),
      ...(exported ? { export: exported } : {}),
      ...(witnessed ? { witnesses: witnessed } : {}),
    };
    if (first) delete result.last_verified_checkpoint;
    for (const key of ['first_invalid_seq', 'problem', 'detail'] as const) if (result[key] === undefined) delete result[key];
    const seconds = (performance.now() - started) / 1000;
    if (values.json) {
      console.log(JSON.stringify(result));
    } else if (result.valid) {
      console.log(
        `audit chain intact: ${chain.checked} records, head seq ${chain.head_seq}, ${chain.checkpoints_checked} signed checkpoints matched; ` +
          `Merkle tree of ${tree.tree_size} leaves recomputed (${tree.tiles_checked} tiles, ${tree.roots_checked} checkpoint roots, root ${tree.root ?? '-'})` +
          (archive ? `; ${describeArchive(archive)}` : '') +
          (exported ? `; export file: ${exported.lines} lines, ${exported.chained_lines} chained, none missing` : '; no export file given') +
          (witnessed ? `; ${describeWitnessCheck(witnessed)}` : '') +
          ` (${seconds.toFixed(2)} s)`,
      );
    } else {
      console.log(`audit chain INVALID at seq ${result.first_invalid_seq}: ${result.problem} — ${result.detail}`);
    }
    return result.valid ? 0 : 1;
  } finally {
    await db.close();
  }
}

runCli('audit:verify', USAGE, run);
