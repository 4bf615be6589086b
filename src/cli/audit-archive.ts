import path from 'node:path';
import { parseArgs } from 'node:util';
import { archivePartitions, type ArchiveSummary } from '../audit/archive.js';
import { loadSigningKey } from '../audit/checkpoints.js';
import { loadConfig } from '../config.js';
import { createEmbeddedDatabase, createPostgresDatabase, type Database } from '../db/database.js';
import { UsageError, runCli } from './run-cli.js';

const USAGE = `usage: npm run audit:archive -- [--database-url URL | --data-dir DIR] [--archive-dir DIR]
       [--hot-days N] [--retention-days N] [--signing-key FILE] [--origin NAME] [--json]

Archives each closed monthly partition of the audit log whose whole month ended more than the hot
window ago: writes a signed, gzip-compressed segment (records file and manifest) into the archive
directory, reads it back and verifies it, records its manifest in audit_archives, and only then
detaches and drops the partition (never a DELETE). Lists the segments past the retention period
(never deletes them). Run it with a database role that owns audit_log; the gateway's runtime role
cannot drop partitions.

  --database-url URL     the PostgreSQL database (default: DATABASE_URL)
  --data-dir DIR         or the embedded database of a stopped gateway (default: DATA_DIR when no
                         DATABASE_URL is set)
  --archive-dir DIR      where segments are written (default: AUDIT_ARCHIVE_DIR, else DATA_DIR/archive)
  --hot-days N           archive months that ended more than N days ago (default: AUDIT_HOT_DAYS, 90)
  --retention-days N     list segments whose last record is older (default: AUDIT_RETENTION_DAYS, 400)
  --signing-key FILE     the checkpoint key, which signs manifests (default: AUDIT_SIGNING_KEY_FILE)
  --origin NAME          the log's origin (default: AUDIT_LOG_ORIGIN)
  --json                 print the summary as JSON

Exit status: 0 done (also when nothing was due), 1 a check failed (a partition's records do not
verify, its seq range is not dense or overlaps another, or a written segment does not read back:
that partition was not dropped), 2 could not run (configuration, key, database, archive directory).`;

/** The environment the configuration is read from, with the flags applied over it. */
function environment(values: Record<string, string | boolean | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  const url = values['database-url'] as string | undefined;
  const dir = values['data-dir'] as string | undefined;
  if (url !== undefined && dir !== undefined) throw new UsageError('give at most one of --database-url and --data-dir');
  if (url !== undefined) {
    env.DATABASE_URL = url;
    delete env.AUTHTRAIL_EMBEDDED;
  }
  if (dir !== undefined) {
    delete env.DATABASE_URL;
    env.DATA_DIR = dir;
    env.AUTHTRAIL_EMBEDDED = 'true';
  }
  const flags: Array<[string, string]> = [
    ['archive-dir', 'AUDIT_ARCHIVE_DIR'],
    ['hot-days', 'AUDIT_HOT_DAYS'],
    ['retention-days', 'AUDIT_RETENTION_DAYS'],
    ['signing-key', 'AUDIT_SIGNING_KEY_FILE'],
    ['origin', 'AUDIT_LOG_ORIGIN'],
  ];
  for (const [flag, variable] of flags) if (values[flag] !== undefined) env[variable] = values[flag] as string;
  return env;
}

function describe(summary: ArchiveSummary): string {
  const lines: string[] = [];
  for (const a of summary.archived) lines.push(`archived ${a.partition}: records ${a.first_seq}..${a.last_seq} (${a.records}) as ${a.segment} (${a.bytes} bytes); partition dropped`);
  for (const name of summary.dropped_empty) lines.push(`dropped ${name}: empty`);
  for (const k of summary.kept) lines.push(`kept ${k.partition}: ${k.reason}`);
  if (summary.archived.length === 0 && summary.dropped_empty.length === 0) lines.push(`nothing to archive (hot window ${summary.hot_days} days)`);
  lines.push(`archived through seq ${summary.archived_through_seq}; archive directory ${summary.archive_dir}`);
  for (const d of summary.due_for_deletion) lines.push(`due for deletion (last record ${d.last_occurred_at}, retention ${summary.retention_days} days): ${d.segment}`);
  if (summary.refused) lines.push(`REFUSED ${summary.refused.partition}: ${summary.refused.detail} (nothing of it was dropped)`);
  return lines.join('\n');
}

/** `npm run audit:archive`: exit 0 done, 1 a check failed (nothing of that partition dropped), 2 could not run. */
async function run(): Promise<number> {
  const { values } = parseArgs({
    options: {
      'database-url': { type: 'string' },
      'data-dir': { type: 'string' },
      'archive-dir': { type: 'string' },
      'hot-days': { type: 'string' },
      'retention-days': { type: 'string' },
      'signing-key': { type: 'string' },
      origin: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const config = loadConfig(environment(values), { requireSigningKeys: false });
  const key = loadSigningKey(config.audit.signingKeyFile, { generate: false });
  const db: Database = config.database.url
    ? createPostgresDatabase({ url: config.database.url, poolMax: 2, statementTimeoutMs: 600_000, connectTimeoutMs: 5000, applicationName: 'authtrail-archive' })
    : await createEmbeddedDatabase(path.join(config.dataDir, 'pgdata'));
  try {
    const { rows } = await db.query<{ ready: boolean }>(`SELECT to_regclass('audit_archives') IS NOT NULL AS ready`);
    if (!rows[0]?.ready) throw new Error('the database has no audit_archives table: run npm run migrate first');
    const owner = await db.query<{ owns: boolean }>(`SELECT pg_has_role(current_user, relowner, 'USAGE') AS owns FROM pg_class WHERE oid = 'audit_log'::regclass`);
    if (!owner.rows[0]?.owns) throw new Error('this database role does not own audit_log: run audit:archive as the owner (the runtime role may not detach or drop partitions)');
    const summary = await archivePartitions(db, {
      dir: config.audit.archive.dir,
      hotDays: config.audit.archive.hotDays,
      retentionDays: config.audit.archive.retentionDays,
      key,
      origin: config.audit.logOrigin,
      onProgress: values.json ? undefined : (line) => console.error(line),
    });
    console.log(values.json ? JSON.stringify(summary) : describe(summary));
    return summary.ok ? 0 : 1;
  } finally {
    await db.close();
  }
}

runCli('audit:archive', USAGE, run);
