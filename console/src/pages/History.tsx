import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { call, getJson } from '../api';
import { isoToLocalInput, localInputToIso, Time } from '../format';
import { Link, navigate } from '../router';
import { EVENT_TYPES, type AuditRecord, type Page } from '../types';
import { describeError, ErrorNote, Field, formText, Outcome, Table, useLoad } from '../ui';

/** Records seen on history pages, so a record's page can show it without another query. */
export const seenRecords = new Map<number, AuditRecord>();

const FILTERS = ['username', 'ip', 'device_id', 'event_type', 'outcome', 'from', 'to'] as const;
type Filters = Partial<Record<(typeof FILTERS)[number], string>>;

function filtersOf(search: URLSearchParams): Filters {
  const f: Filters = {};
  for (const k of FILTERS) {
    const v = search.get(k);
    if (v) f[k] = v;
  }
  return f;
}

function FilterForm(props: { filters: Filters }): JSX.Element {
  const f = props.filters;
  const onSubmit = (e: Event) => {
    e.preventDefault();
    const data = new FormData(e.currentTarget as HTMLFormElement);
    const params = new URLSearchParams();
    for (const k of FILTERS) {
      const raw = formText(data, k).trim();
      const value = k === 'from' || k === 'to' ? localInputToIso(raw) : raw;
      if (value) params.set(k, value);
    }
    const qs = params.toString();
    navigate(`/history${qs ? `?${qs}` : ''}`);
  };
  return (
    <form class="filters" onSubmit={onSubmit} aria-label="Filter the login history">
      <Field label="Username">
        <input name="username" defaultValue={f.username ?? ''} autoComplete="off" />
      </Field>
      <Field label="IP address or CIDR block">
        <input name="ip" defaultValue={f.ip ?? ''} placeholder="10.0.0.0/8" autoComplete="off" />
      </Field>
      <Field label="Device id">
        <input name="device_id" defaultValue={f.device_id ?? ''} autoComplete="off" />
      </Field>
      <Field label="Event type">
        <select name="event_type" defaultValue={f.event_type ?? ''}>
          <option value="">any</option>
          {EVENT_TYPES.map((t) => (
            <option value={t} key={t}>
              {t}
            </option>
          ))}
        </select>
      </Field>
      <Field label="Outcome">
        <select name="outcome" defaultValue={f.outcome ?? ''}>
          <option value="">any</option>
          <option value="success">success</option>
          <option value="failure">failure</option>
        </select>
      </Field>
      <Field label="From (your time)">
        <input type="datetime-local" name="from" defaultValue={isoToLocalInput(f.from ?? null)} />
      </Field>
      <Field label="To (your time)">
        <input type="datetime-local" name="to" defaultValue={isoToLocalInput(f.to ?? null)} />
      </Field>
      <div class="actions">
        <button type="submit">Apply filters</button>
        <button type="button" class="secondary" onClick={() => navigate('/history')}>
          Clear
        </button>
      </div>
    </form>
  );
}

async function download(filters: Filters, format: 'csv' | 'ndjson'): Promise<void> {
  const res = await call('GET', '/admin/login-events', { query: filters, accept: format === 'csv' ? 'text/csv' : 'application/x-ndjson' });
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = `login-events.${format}`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function History(props: { search: URLSearchParams }): JSX.Element {
  const filters = filtersOf(props.search);
  const key = JSON.stringify(filters);
  // Keyset pages: the cursors that led here, to go back (the caller remounts this on new filters).
  const [cursors, setCursors] = useState<string[]>([]);
  const [exportError, setExportError] = useState<unknown>(undefined);
  const [exporting, setExporting] = useState(false);
  const cursor = cursors.at(-1);
  const page = useLoad(async () => {
    const result = await getJson<Page<AuditRecord>>('/admin/login-events', { ...filters, cursor, limit: 50 });
    for (const r of result.items) seenRecords.set(r.seq, r);
    return result;
  }, [key, cursor]);

  const runExport = (format: 'csv' | 'ndjson') => {
    setExporting(true);
    setExportError(undefined);
    download(filters, format).then(
      () => setExporting(false),
      (e: unknown) => {
        setExporting(false);
        setExportError(e);
      },
    );
  };

  return (
    <div class="page" data-ready={page.data ? 'true' : undefined}>
      <div class="page-head">
        <h1>Login history</h1>
        <div class="actions">
          <button type="button" class="secondary" disabled={exporting} onClick={() => runExport('csv')}>
            Export CSV
          </button>
          <button type="button" class="secondary" disabled={exporting} onClick={() => runExport('ndjson')}>
            Export NDJSON
          </button>
        </div>
      </div>
      {exportError ? <p class="error" role="alert">Export failed: {describeError(exportError)}</p> : null}
      <FilterForm filters={filters} key={key} />
      <ErrorNote error={page.error} />
      <p class="muted" aria-live="polite">
        {page.loading ? 'loading…' : page.data ? `${page.data.items.length} records on this page, newest first` : ''}
      </p>
      <Table caption="Audit records" head={['Time', 'Seq', 'Event', 'Outcome', 'Reason', 'Username', 'IP', 'Device']} empty={page.data?.items.length === 0} testId="history">
        {page.data?.items.map((r) => (
          <tr key={r.seq} data-seq={r.seq}>
            <td>
              <Time iso={r.occurred_at} />
            </td>
            <td class="num">
              <Link href={`/records/${r.seq}`}>{r.seq}</Link>
            </td>
            <td>{r.event_type}</td>
            <td>
              <Outcome outcome={r.outcome} />
            </td>
            <td>{r.reason ?? ''}</td>
            <td>{r.username ?? ''}</td>
            <td>{r.ip ?? ''}</td>
            <td>{r.device_id ?? ''}</td>
          </tr>
        ))}
      </Table>
      <nav class="pager" aria-label="Pages">
        <button type="button" class="secondary" disabled={cursors.length === 0} onClick={() => setCursors((c) => c.slice(0, -1))}>
          Newer
        </button>
        <button type="button" class="secondary" disabled={!page.data?.next_cursor} onClick={() => page.data?.next_cursor && setCursors((c) => [...c, page.data!.next_cursor!])}>
          Older
        </button>
      </nav>
    </div>
  );
}
