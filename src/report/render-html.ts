import { html, type HtmlValue, type SafeHtml } from './html.js';
import type { Actor, CheckpointEvidence, Listing, ReportData } from './model.js';

/**
 * report.html: the same data as report.json, as one self-contained page an auditor can read and
 * print. No script and no external resource (a Content-Security-Policy forbids both, should a
 * value ever escape), inline CSS only; every value from the log goes through the escaping `html`
 * tag.
 */

const STYLE = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111; margin: 2em auto; max-width: 70em; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 2px solid #333; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
table { border-collapse: collapse; width: 100%; margin: .5em 0 1em; page-break-inside: auto; }
caption { text-align: left; font-weight: 600; padding: .3em 0; }
th, td { border: 1px solid #bbb; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #eee; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr { page-break-inside: avoid; } thead { display: table-header-group; }
code, .mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .9em; overflow-wrap: anywhere; }
.none { color: #555; font-style: italic; }
.verdict { padding: .6em 1em; border: 2px solid; font-weight: 600; margin: 1em 0; }
.ok { border-color: #1a7f37; background: #e6f4ea; } .bad { border-color: #b42318; background: #fdecea; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; } dl.meta dt { font-weight: 600; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f6f6; padding: .5em; border: 1px solid #ddd; }
@media print { body { margin: 0; max-width: none; font-size: 11px; } h2 { page-break-after: avoid; } .verdict { border-width: 3px; } }
`;

const dash = (value: string | number | null | undefined): HtmlValue => (value === null || value === undefined || value === '' ? '—' : value);

function table(headers: readonly string[], rows: readonly HtmlValue[][], options: { caption?: string; numeric?: readonly number[] } = {}): SafeHtml {
  if (rows.length === 0) return html`${options.caption ? html`<h3>${options.caption}</h3>` : ''}<p class="none">none</p>`;
  const numeric = new Set(options.numeric ?? []);
  return html`<table>${options.caption ? html`<caption>${options.caption}</caption>` : ''}
<thead><tr>${headers.map((h) => html`<th>${h}</th>`)}</tr></thead>
<tbody>${rows.map((row) => html`<tr>${row.map((cell, i) => (numeric.has(i) ? html`<td class="n">${cell}</td>` : html`<td>${cell}</td>`))}</tr>\n`)}</tbody></table>`;
}

/** `n` and the noun, plural unless n is 1. */
const count = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? '' : 's'}`;

function listingNote<T>(listing: Listing<T>, noun = 'record'): SafeHtml {
  return listing.truncated
    ? html`<p>${count(listing.count, noun)}; the first ${listing.rows.length} by seq are listed (<code>--max-rows</code>).</p>`
    : html`<p>${count(listing.count, noun)}.</p>`;
}

const actor = (row: Actor): HtmlValue =>
  row.actor_id === null ? '—' : row.actor === null ? html`<span class="mono">${row.actor_id}</span>` : html`${row.actor} <span class="mono">(${row.actor_id})</span>`;

const roles = (list: string[] | null): HtmlValue => (list === null ? '—' : list.join(', ') || '(none)');

function checkpointRows(checkpoints: readonly CheckpointEvidence[]): HtmlValue[][] {
  return checkpoints.map((cp) => [
    cp.tree_size,
    html`<span class="mono">${dash(cp.root)}</span>`,
    cp.signed_at,
    cp.signature,
    cp.cosignatures.length === 0 ? html`<span class="none">none</span>` : cp.cosignatures.map((c) => html`${c.witness} (${dash(c.cosigned_at)})<br>`),
  ]);
}

function verificationRows(data: ReportData): HtmlValue[][] {
  const { chain, tree, export_file: file } = data.integrity;
  const problem = (p: { valid: boolean; first_invalid_seq?: number; problem?: string; detail?: string }): HtmlValue =>
    p.valid ? 'intact' : html`<strong>NOT INTACT</strong> at seq ${dash(p.first_invalid_seq)}: ${dash(p.problem)} — ${dash(p.detail)}`;
  const archive = data.integrity.archive;
  return [
    ...(archive
      ? [['archived records', problem(archive), `records 1 to ${archive.last_seq} in ${count(archive.segments, 'segment')}: the signed manifests recorded in the database checked, the records themselves are in the archive (npm run audit:verify -- --archive DIR)`] as HtmlValue[]]
      : []),
    ['hash chain', problem(chain), `${count(chain.checked, 'record')} recomputed, head seq ${chain.head_seq}, ${count(chain.checkpoints_checked, 'signed checkpoint')} matched`],
    ['Merkle tree', problem(tree), `${tree.tree_size} ${tree.tree_size === 1 ? 'leaf' : 'leaves'}, ${count(tree.tiles_checked, 'tile')} and ${count(tree.roots_checked, 'checkpoint root')} recomputed; root ${tree.root ?? '—'}`],
    file
      ? ['checkpoint export file', problem(file), `${count(file.lines, 'line')} (${file.chained_lines} chained): ${file.files.join(', ')}`]
      : ['checkpoint export file', 'not checked', 'no export file was given'],
  ];
}

export function renderHtml(data: ReportData): string {
  const { integrity: ig, login_attempts: la } = data;
  const body = html`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Audit report ${data.period.from} to ${data.period.to}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>Authentication audit report</h1>
<dl class="meta">
<dt>Log</dt><dd class="mono">${data.log_origin}</dd>
<dt>Period</dt><dd>from ${data.period.from} (inclusive) to ${data.period.to} (exclusive), UTC</dd>
<dt>Generated</dt><dd>${data.generated_at} UTC</dd>
<dt>Records in the period</dt><dd>${data.records.count}${data.records.first_seq === null ? '' : html` (seq ${data.records.first_seq} to ${data.records.last_seq})`}</dd>
<dt>Format</dt><dd class="mono">${data.format}</dd>
</dl>
${
    data.records.complete
      ? ''
      : html`<div class="verdict bad">Part of this period is archived: records 1 to ${data.records.archived!.through_seq} (the last written at ${data.records.archived!.through_occurred_at} UTC) left the database before this report was made. The counts and lists below cover only the records still in the database; the archived ones are in the archive segments.</div>`
  }
<div class="verdict ${ig.valid ? 'ok' : 'bad'}">${
    ig.valid
      ? html`Log verified intact at ${ig.verified_at}: ${count(ig.chain.checked, 'record')}, ${count(ig.chain.checkpoints_checked, 'signed checkpoint')}.`
      : html`The log FAILED verification at ${ig.verified_at}; see "Integrity evidence".`
  } ${ig.covering_checkpoint ? html`The period is covered by the signed checkpoint of tree size ${ig.covering_checkpoint.tree_size}.` : html`No signed checkpoint covers the end of the period yet.`}</div>

<h2>Sign-in attempts</h2>
<p>Records of types ${la.event_types.join(', ')}: ${la.total} attempts, ${la.success} succeeded, ${la.failure} failed.</p>
${table(['outcome', 'attempts'], [['success', la.success], ['failure', la.failure], ['total', la.total]], { caption: 'By outcome', numeric: [1] })}
${table(['MFA method', 'success', 'failure'], la.by_mfa_method.map((r) => [dash(r.mfa_method), r.success, r.failure]), { caption: 'By MFA method', numeric: [1, 2] })}
${table(['event type', 'success', 'failure', 'total'], la.by_event_type.map((r) => [r.event_type, r.success, r.failure, r.total]), { caption: 'By event type', numeric: [1, 2, 3] })}
${table(['reason', 'failures'], la.failure_reasons.map((r) => [dash(r.reason), r.count]), { caption: 'Failures by reason', numeric: [1] })}

<h2>All records by event type</h2>
${table(['event type', 'success', 'failure', 'total'], data.events.map((r) => [r.event_type, r.success, r.failure, r.total]), { numeric: [1, 2, 3] })}

<h2>Lockouts</h2>
<h3>Started</h3>
${listingNote(data.lockouts.started)}
${table(['seq', 'time (UTC)', 'username', 'IP', 'failures', 'lock count', 'locked until'], data.lockouts.started.rows.map((r) => [r.seq, r.occurred_at, dash(r.username), dash(r.ip), dash(r.failures), dash(r.lock_count), dash(r.locked_until)]), { numeric: [0] })}
<h3>Cleared (unlocks)</h3>
${listingNote(data.lockouts.cleared)}
${table(['seq', 'time (UTC)', 'username', 'by', 'was locked', 'via'], data.lockouts.cleared.rows.map((r) => [r.seq, r.occurred_at, dash(r.username), actor(r), dash(r.was_locked), dash(r.via)]), { numeric: [0] })}

<h2>User and role changes</h2>
${listingNote(data.user_changes)}
${table(
    ['seq', 'time (UTC)', 'change', 'user', 'by', 'roles', 'via'],
    data.user_changes.rows.map((r) => [
      r.seq,
      r.occurred_at,
      html`${r.event_type}${r.reason ? html` (${r.reason})` : ''}`,
      dash(r.username),
      actor(r),
      r.roles_from !== null || r.roles_to !== null ? html`${roles(r.roles_from)} → ${roles(r.roles_to)}` : roles(r.roles),
      dash(r.via),
    ]),
    { numeric: [0] },
  )}

<h2>Reads of the log</h2>
${listingNote(data.log_reads)}
${table(
    ['seq', 'time (UTC)', 'event', 'by', 'IP', 'resource', 'filters', 'rows', 'via'],
    data.log_reads.rows.map((r) => [r.seq, r.occurred_at, r.event_type, actor(r), dash(r.ip), dash(r.resource), html`<span class="mono">${dash(r.filters)}</span>`, dash(r.returned), dash(r.via)]),
    { numeric: [0] },
  )}

<h2>Alerts</h2>
${listingNote(data.alerts)}
${table(['seq', 'time (UTC)', 'outcome', 'reason', 'username', 'IP'], data.alerts.rows.map((r) => [r.seq, r.occurred_at, r.outcome, dash(r.reason), dash(r.username), dash(r.ip)]), { numeric: [0] })}

<h2>Integrity evidence</h2>
<p>The full verification (every record's hash, the Merkle tree recomputed from the records, every signed checkpoint) ran at ${ig.verified_at}.</p>
${table(['check', 'result', 'what was checked'], verificationRows(data))}
<h3>Checkpoint covering the period</h3>
${
    ig.covering_checkpoint
      ? html`${table(['tree size', 'root (base64)', 'signed at (UTC)', 'signature', 'witness cosignatures'], checkpointRows([ig.covering_checkpoint]))}
<pre>${ig.covering_checkpoint.note ?? ''}${ig.covering_checkpoint.cosignatures.map((c) => `${c.line}\n`)}</pre>`
      : html`<p class="none">none yet: no signed checkpoint of a tree of ${data.records.head_seq_at_end} or more records</p>`
  }
<h3>Checkpoints inside the period</h3>
<p>Signed checkpoints of tree sizes from the period's first record up to the covering one.</p>
${listingNote(ig.checkpoints_in_period, 'checkpoint')}
${table(['tree size', 'root (base64)', 'signed at (UTC)', 'signature', 'witness cosignatures'], checkpointRows(ig.checkpoints_in_period.rows), { numeric: [0] })}

<h2>This report</h2>
<p>Generating this report was recorded in the log as <code>audit.queried</code> record seq ${data.recorded_as.seq} (${data.recorded_as.occurred_at}); it is not counted above.
<code>report.note</code> beside this file is a signed note, by the log's checkpoint key, over the SHA-256 of this file and of <code>report.json</code>.
Check it with <code>npm run audit:report -- --verify DIR --trusted-key KEY</code>, KEY being the log's note verifier key (<code>npm run audit:key</code>, <code>GET /audit-log/key</code>).</p>
</body>
</html>
`;
  return body.text;
}
