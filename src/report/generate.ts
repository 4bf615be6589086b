import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createChainWriter, type CommittedRecord } from '../audit/chain-writer.js';
import type { SigningKey } from '../audit/checkpoints.js';
import { formatMicros } from '../audit/clock.js';
import type { Database } from '../db/database.js';
import { collectActivity, normalizePeriod } from './collect.js';
import { collectIntegrity } from './integrity.js';
import { REPORT_FORMAT, type ReportData } from './model.js';
import { renderHtml } from './render-html.js';
import { NOTE_FILE, REPORT_FILES, signReport } from './signed-note.js';

/**
 * `npm run audit:report`: reads the period's activity (one consistent snapshot), runs the full
 * verification, records the read in the log through the chain writer, then writes report.json,
 * report.html and the signed note report.note. Fail closed: when the read cannot be recorded, no
 * file is written.
 */

export interface GenerateOptions {
  db: Database;
  /** RFC 3339, already validated; the period is [from, to). */
  from: string;
  to: string;
  outDir: string;
  key: SigningKey;
  /** Keys trusted to have signed the log's checkpoints: the signing key's public half and any retired ones. */
  trustedKeys: ReadonlyMap<string, KeyObject>;
  origin: string;
  checkpointFiles: readonly string[];
  maxRows: number;
}

/** The report could not be made from these inputs (exit 2); nothing was written. */
export class ReportInputError extends Error {}

function checkOutDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o750 });
  const present = [...REPORT_FILES, NOTE_FILE].filter((name) => fs.existsSync(path.join(dir, name)));
  if (present.length > 0) throw new ReportInputError(`${dir} already holds ${present.join(', ')}: a report is never overwritten; choose another --out`);
}

/** Writes a file under a temporary name and renames it, so a reader never sees half of one. */
function writeWhole(dir: string, name: string, bytes: Uint8Array): void {
  const temp = path.join(dir, `.${name}.${process.pid}.tmp`);
  fs.writeFileSync(temp, bytes, { mode: 0o640, flag: 'wx' });
  fs.renameSync(temp, path.join(dir, name));
}

export async function generateReport(options: GenerateOptions): Promise<{ data: ReportData; dir: string }> {
  const { db } = options;
  let period: { from: string; to: string };
  try {
    period = await normalizePeriod(db, options.from, options.to);
  } catch (err) {
    if (err instanceof TypeError) throw new ReportInputError(err.message);
    throw err;
  }
  if (Date.parse(period.to) > Date.now()) throw new ReportInputError('--to is in the future: a report covers a period that has ended');
  const dir = path.resolve(options.outDir);
  checkOutDir(dir);

  // One snapshot for every count and list, so they agree with each other.
  const activity = await db.transaction(async (tx) => {
    await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    return collectActivity(tx, period, options.maxRows);
  });
  const integrity = await collectIntegrity(db, {
    trustedKeys: options.trustedKeys,
    origin: options.origin,
    checkpointFiles: options.checkpointFiles,
    firstSeq: activity.records.first_seq,
    headSeqAtEnd: activity.records.head_seq_at_end,
    maxRows: options.maxRows,
  });

  const recorded = await recordRead(db, period, activity.records.count);
  const data: ReportData = {
    format: REPORT_FORMAT,
    log_origin: options.origin,
    generated_at: formatMicros(BigInt(Date.now()) * 1000n),
    ...activity,
    integrity,
    recorded_as: { seq: recorded.seq, event_id: recorded.eventId, occurred_at: recorded.occurredAt },
  };
  const files = {
    'report.json': Buffer.from(`${JSON.stringify(data, null, 2)}\n`, 'utf8'),
    'report.html': Buffer.from(renderHtml(data), 'utf8'),
  };
  const note = signReport(files, { origin: options.origin, from: period.from, to: period.to, generatedAt: data.generated_at }, options.key.privateKey);
  for (const name of REPORT_FILES) writeWhole(dir, name, files[name]);
  writeWhole(dir, NOTE_FILE, Buffer.from(note, 'utf8'));
  return { data, dir };
}

/** The report is a read of the log: one `audit.queried` record, as the security API records its reads (`details.via`: no actor id on the command line). */
async function recordRead(db: Database, period: { from: string; to: string }, returned: number): Promise<CommittedRecord> {
  const writer = createChainWriter(db, { batchMax: 1, writeTimeoutMs: 10_000 });
  try {
    return await writer.recordEvent(
      { eventType: 'audit.queried', outcome: 'success', details: { resource: 'report', via: 'cli', filters: { from: period.from, to: period.to }, returned } },
      { signal: null },
    );
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    throw new ReportInputError(
      `the report's read could not be recorded in the audit log, so no report was written (the database login needs INSERT on audit_log and audit_tiles)${cause ? `: SQLSTATE ${cause}` : ''}`,
    );
  } finally {
    await writer.close();
  }
}
