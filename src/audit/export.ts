import type { Queryable } from '../db/database.js';
import { EVENT_COLUMNS, streamEvents, type EventFilter, type EventView } from './audit-queries.js';

/** The streamed export formats of `GET /admin/login-events`. */
export type ExportFormat = 'ndjson' | 'csv';

export const EXPORT_CONTENT_TYPES: Readonly<Record<ExportFormat, string>> = {
  ndjson: 'application/x-ndjson',
  csv: 'text/csv; charset=utf-8',
};

/** First characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection"). */
const FORMULA_START = /^[=+\-@\t\r]/;

/**
 * One CSV cell (RFC 4180): always quoted, so no separator a spreadsheet may use (`,` `;` tab,
 * line breaks) ever starts a new cell, and prefixed with `'` when a spreadsheet would read it
 * as a formula. NULL is the empty cell `""`.
 */
export function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '""';
  let text = typeof value === 'string' ? value : typeof value === 'number' ? String(value) : JSON.stringify(value);
  if (FORMULA_START.test(text)) text = `'${text}`;
  return `"${text.replaceAll('"', '""')}"`;
}

const csvLine = (cells: readonly unknown[]): string => `${cells.map(csvCell).join(',')}\r\n`;

/** What precedes the first record: the CSV header row (every cell quoted too); nothing for NDJSON. */
export const exportPreamble = (format: ExportFormat): string => (format === 'csv' ? csvLine(EVENT_COLUMNS) : '');

/** Records in the export's format, one line (CSV row or JSON object) each. */
export const encodeEvents = (events: readonly EventView[], format: ExportFormat): string =>
  events.map((e) => (format === 'csv' ? csvLine(EVENT_COLUMNS.map((c) => e[c])) : `${JSON.stringify(e)}\n`)).join('');

/** Every record matching `filter`, newest first, encoded a page at a time: the result is never held whole. */
export async function* exportEvents(db: Pick<Queryable, 'query'>, filter: EventFilter, format: ExportFormat): AsyncGenerator<{ text: string; rows: number }> {
  for await (const page of streamEvents(db, filter)) yield { text: encodeEvents(page, format), rows: page.length };
}
