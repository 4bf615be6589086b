import { setTimeout as sleep } from 'node:timers/promises';
import type { Queryable } from '../db/database.js';
import { exportLineHash, readExportFile, streamCheckpointTable, type ExportLine } from './checkpoints.js';

/** Every line of the files, in the order given (a rotated file's predecessors first). */
async function readFiles(files: readonly string[]): Promise<ExportLine[]> {
  const lines: ExportLine[] = [];
  for (const file of files) lines.push(...(await readExportFile(file)));
  return lines;
}

/** What the export-file check found wrong (docs/audit-chain.md, "Verification"). */
export type ExportProblem = 'export_chain_broken' | 'export_truncated';

export interface ExportResult {
  valid: boolean;
  /** Lines read, and of those the chained (note) lines. */
  lines: number;
  chained_lines: number;
  /** Note checkpoints of the table that the file was required to hold. */
  table_checkpoints_checked: number;
  first_invalid_seq?: number;
  problem?: ExportProblem;
  detail?: string;
}

interface Finding {
  seq: number;
  problem: ExportProblem;
  detail: string;
}

/**
 * Breaks in the line chain: a note line whose `prev` is not the hash of the line before it. The
 * first line links to the last line of the file before it (rotation), or to 64 zeros:
 * nothing here can tell which, so it is not checked.
 */
function chainFindings(lines: readonly ExportLine[]): Finding[] {
  const findings: Finding[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.prev === undefined) continue; // a legacy line carries no link
    const expected = exportLineHash(lines[i - 1]!.text);
    if (line.prev !== expected) {
      findings.push({
        seq: line.checkpoint.seq,
        problem: 'export_chain_broken',
        detail: `line ${line.line} (checkpoint ${line.checkpoint.seq}) does not follow the line before it: lines were deleted, inserted or edited there`,
      });
    }
  }
  return findings;
}

/** Note checkpoints of the table from the file's first note line on that the file lacks. */
async function missingFromFile(db: Pick<Queryable, 'query'>, lines: readonly ExportLine[]): Promise<{ missing: number[]; checked: number }> {
  const inFile = new Map<number, string>();
  for (const line of lines) if (line.checkpoint.note !== undefined) inFile.set(line.checkpoint.seq, line.checkpoint.note);
  const firstChained = lines.find((l) => l.prev !== undefined)?.checkpoint.seq;
  // From its first note line on; a file of legacy lines only must hold every note after its last line.
  const after = firstChained !== undefined ? firstChained - 1 : (lines.at(-1)?.checkpoint.seq ?? 0);
  const missing: number[] = [];
  let checked = 0;
  for await (const page of streamCheckpointTable(db, after)) {
    for (const cp of page) {
      if (cp.note === undefined) continue;
      checked += 1;
      if (inFile.get(cp.seq) !== cp.note) missing.push(cp.seq);
    }
  }
  return { missing, checked };
}

/**
 * Checks the checkpoint export file (or a file and those it was rotated from, oldest first, read as
 * one) against itself and the table: every note line must carry the hash of the line before it (a
 * line deleted, inserted or edited in the middle breaks that), and every note checkpoint of the
 * table from the first note line on must be in the file (a deleted tail leaves the table ahead). A file that lags only by its newest
 * checkpoints is read again after `settleMs`: a gateway writes its line just after the row commits,
 * and copies those of the other instances at its next checkpoint or timer tick.
 */
export async function verifyExportFile(db: Pick<Queryable, 'query'>, file: string | readonly string[], options: { settleMs?: number } = {}): Promise<ExportResult> {
  const files = typeof file === 'string' ? [file] : file;
  let lines = await readFiles(files);
  let { missing, checked } = await missingFromFile(db, lines);
  const lastInFile = lines.at(-1)?.checkpoint.seq ?? 0;
  if (missing.length > 0 && missing.every((seq) => seq > lastInFile)) {
    await sleep(options.settleMs ?? 1000);
    lines = await readFiles(files);
    ({ missing, checked } = await missingFromFile(db, lines));
  }
  const findings = chainFindings(lines);
  if (missing.length > 0) {
    // Missing before the file's last line: a line was taken out of the middle; after it: the tail was cut.
    const seq = missing[0]!;
    const inside = seq < (lines.at(-1)?.checkpoint.seq ?? 0);
    findings.push({
      seq,
      problem: inside ? 'export_chain_broken' : 'export_truncated',
      detail: inside
        ? `the checkpoint of tree size ${seq} is in the table but its line is missing from the export file`
        : `the checkpoint of tree size ${seq} is in the table but not in the export file: its newest lines were deleted`,
    });
  }
  const first = findings.sort((a, b) => a.seq - b.seq)[0];
  const result: ExportResult = {
    valid: !first,
    lines: lines.length,
    chained_lines: lines.filter((l) => l.prev !== undefined).length,
    table_checkpoints_checked: checked,
  };
  if (first) Object.assign(result, { first_invalid_seq: first.seq, problem: first.problem, detail: first.detail });
  return result;
}
