import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { AUDIT_EVENT_TYPES, AUDIT_REASONS } from '../../src/audit/vocabulary.js';
import { HttpError, PROBLEMS, type ProblemCode } from '../../src/http/errors.js';

const API = fs.readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');

/** The rows of the markdown table that starts with `header`. */
function tableRows(header: string): string[][] {
  const lines = API.split('\n');
  const start = lines.findIndex((l) => l.startsWith(header));
  assert.ok(start >= 0, `docs/api.md has a table starting ${header}`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim()));
  }
  return rows;
}

const codesIn = (cell: string): string[] => [...cell.matchAll(/`([a-z_.]+)`/g)].map((m) => m[1]!);

describe('closed catalogues, and docs/api.md that lists them', () => {
  it('when a problem is thrown, then its status and title are the catalogue\'s, whatever the call site', () => {
    for (const [code, { status, title }] of Object.entries(PROBLEMS)) {
      const err = new HttpError(code as ProblemCode, { detail: 'site-specific' });
      assert.deepEqual([err.status, err.title, err.detail], [status, title, 'site-specific']);
    }
  });

  it('when docs/api.md lists the problems, then it names every code with its status and title, and no other', () => {
    const documented = tableRows('| `code` | status | title |').map(([code, status, title]) => [codesIn(code!)[0], Number(status), title]);
    const catalogue = Object.entries(PROBLEMS).map(([code, p]) => [code, p.status, p.title]);
    assert.deepEqual(documented, catalogue);
  });

  it('when docs/api.md lists audit events, then it names every event type and reason of the vocabulary, and no other', () => {
    const rows = tableRows('| `event_type` | `outcome` | `reason` | notes |');
    const types = new Set(rows.flatMap((r) => codesIn(r[0]!)));
    assert.deepEqual([...types].sort(), [...AUDIT_EVENT_TYPES].sort());
    const reasons = new Set(rows.flatMap((r) => codesIn(r[2]!)));
    const problemReasons = Object.entries(PROBLEMS).filter(([, p]) => p.status < 500 || p.status === 503).map(([code]) => code);
    // A row may say "or a problem code": those are the table at the top; every other reason is named.
    for (const reason of AUDIT_REASONS) {
      assert.ok(reasons.has(reason) || problemReasons.includes(reason), `docs/api.md names reason ${reason}`);
    }
    for (const reason of reasons) assert.ok((AUDIT_REASONS as readonly string[]).includes(reason), `${reason} is in the vocabulary`);
  });
});
