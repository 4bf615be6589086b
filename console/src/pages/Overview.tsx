import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { ApiError, call, getJson } from '../api';
import { AttemptsChart } from '../chart';
import { formatNumber, Time } from '../format';
import { Link } from '../router';
import type { Alert, Checkpoint, Lockout, Page, Summary, VerifyResult } from '../types';
import { Card, ErrorNote, Outcome, Table, useLoad } from '../ui';

const RANGES = {
  '24h': { hours: 24, bucket: 'hour', label: 'Last 24 hours, by hour' },
  '7d': { hours: 24 * 7, bucket: 'hour', label: 'Last 7 days, by hour' },
  '30d': { hours: 24 * 30, bucket: 'day', label: 'Last 30 days, by day' },
} as const;
type RangeKey = keyof typeof RANGES;

/** The signature lines of a signed note: the log's own, then each witness's cosignature. */
function signatures(note: string): { origin: string; names: string[] } {
  const [body = '', sigs = ''] = note.split('\n\n');
  const origin = body.split('\n')[0] ?? '';
  const names = sigs
    .split('\n')
    .filter((l) => l.startsWith('\u2014 '))
    .map((l) => l.slice(2).split(' ')[0] ?? '');
  return { origin, names };
}

function Integrity(): JSX.Element {
  // Read separately, so a long first verification never holds the rest of the page.
  const checkpoint = useLoad(async () => {
    const [list, note] = await Promise.all([
      getJson<{ items: Checkpoint[] }>('/admin/audit/checkpoints', { limit: 1 }),
      (async () => {
        try {
          return await (await call('GET', '/audit-log/checkpoint', { accept: 'text/plain' })).text();
        } catch (e) {
          if (e instanceof ApiError && e.status === 404) return null;
          throw e;
        }
      })(),
    ]);
    return { latest: list.items[0], note };
  }, []);
  const verify = useLoad(() => getJson<VerifyResult>('/admin/audit/verify'), []);
  const sigs = checkpoint.data?.note ? signatures(checkpoint.data.note) : undefined;
  const cosigners = sigs ? sigs.names.filter((n) => n !== sigs.origin) : [];
  return (
    <Card title="Integrity" id="integrity">
      <dl class="facts">
        <dt>Chain verification</dt>
        <dd data-testid="verify-status">
          {verify.loading ? (
            'verifying…'
          ) : verify.data ? (
            verify.data.valid ? (
              <span class="badge ok">intact</span>
            ) : (
              <span class="badge bad">
                invalid at seq {verify.data.first_invalid_seq}: {verify.data.problem}
              </span>
            )
          ) : (
            <ErrorNote error={verify.error} />
          )}
          {verify.data ? (
            <span class="muted">
              {' '}
              checked {formatNumber(verify.data.checked)} records from seq {verify.data.from_seq}; head {formatNumber(verify.data.head_seq)}
            </span>
          ) : null}
        </dd>
        <dt>Latest checkpoint</dt>
        <dd data-testid="latest-checkpoint">
          {checkpoint.data?.latest ? (
            <>
              tree size {formatNumber(checkpoint.data.latest.seq)}, signed <Time iso={checkpoint.data.latest.signed_at} />
            </>
          ) : checkpoint.loading ? (
            'loading…'
          ) : (
            'none signed yet'
          )}
          <ErrorNote error={checkpoint.error} />
        </dd>
        <dt>Cosignatures</dt>
        <dd data-testid="cosignatures">{checkpoint.data?.note ? (cosigners.length > 0 ? cosigners.join(', ') : 'none (no witness configured or none answered yet)') : '—'}</dd>
      </dl>
    </Card>
  );
}

export function Overview(): JSX.Element {
  const [range, setRange] = useState<RangeKey>('24h');
  const summary = useLoad(() => {
    const to = new Date();
    const from = new Date(to.getTime() - RANGES[range].hours * 3600_000);
    return getJson<Summary>('/admin/login-events/summary', { from: from.toISOString(), to: to.toISOString(), bucket: RANGES[range].bucket, top: 10 });
  }, [range]);
  const lockouts = useLoad(() => getJson<{ items: Lockout[]; degraded: boolean }>('/admin/lockouts'), []);
  const alerts = useLoad(() => getJson<Page<Alert>>('/admin/alerts', { status: 'open', limit: 20 }), []);
  const s = summary.data;
  const totals = s ? s.buckets.reduce((t, b) => ({ success: t.success + b.success, failure: t.failure + b.failure }), { success: 0, failure: 0 }) : undefined;

  return (
    <div class="page" data-ready={s && lockouts.data && alerts.data ? 'true' : undefined}>
      <div class="page-head">
        <h1>Overview</h1>
        <label class="inline">
          <span class="label">Range</span>
          <select value={range} onChange={(e) => setRange((e.currentTarget).value as RangeKey)}>
            {Object.entries(RANGES).map(([k, r]) => (
              <option value={k} key={k}>
                {r.label}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorNote error={summary.error} />
      <div class="stats">
        <div class="stat">
          <span class="stat-label">Successful logins</span>
          <span class="stat-value" data-testid="total-success">{totals ? formatNumber(totals.success) : '…'}</span>
        </div>
        <div class="stat">
          <span class="stat-label">Failed logins</span>
          <span class="stat-value" data-testid="total-failure">{totals ? formatNumber(totals.failure) : '…'}</span>
        </div>
        <div class="stat">
          <span class="stat-label">Current lockouts</span>
          <span class="stat-value" data-testid="total-lockouts">{lockouts.data ? formatNumber(lockouts.data.items.length) : '…'}</span>
        </div>
        <div class="stat">
          <span class="stat-label">Open alerts</span>
          <span class="stat-value" data-testid="total-alerts">{alerts.data ? formatNumber(alerts.data.items.length) + (alerts.data.next_cursor ? '+' : '') : '…'}</span>
        </div>
      </div>
      <Card title="Login attempts by outcome" class="wide">
        {s && totals ? <AttemptsChart buckets={s.buckets} from={s.from} to={s.to} bucket={s.bucket} label={`${RANGES[range].label}: ${totals.success} successful and ${totals.failure} failed logins`} /> : <p class="muted">loading…</p>}
      </Card>
      <div class="grid">
        <Card title="Records by event type and outcome">
          <Table caption="Records by event type and outcome" head={['Event type', 'Outcome', 'Count']} empty={s?.by_event_type.length === 0} testId="by-event-type">
            {s?.by_event_type.map((r) => (
              <tr key={`${r.event_type}/${r.outcome}`}>
                <td>
                  <Link href={`/history?event_type=${encodeURIComponent(r.event_type)}&outcome=${r.outcome}`}>{r.event_type}</Link>
                </td>
                <td>
                  <Outcome outcome={r.outcome} />
                </td>
                <td class="num">{formatNumber(r.count)}</td>
              </tr>
            ))}
          </Table>
        </Card>
        <Card title="Top failing addresses">
          <Table caption="Addresses with the most failed logins" head={['Address', 'Failures']} empty={s?.top_failing_ips.length === 0} testId="top-failing-ips">
            {s?.top_failing_ips.map((r) => (
              <tr key={r.ip}>
                <td>
                  <Link href={`/history?ip=${encodeURIComponent(r.ip)}`}>{r.ip}</Link>
                </td>
                <td class="num">{formatNumber(r.failures)}</td>
              </tr>
            ))}
          </Table>
        </Card>
        <Card title="Password spraying suspects">
          <Table caption="Addresses that tried the most distinct accounts" head={['Address', 'Accounts tried', 'Failures']} empty={s?.spraying_ips.length === 0}>
            {s?.spraying_ips.map((r) => (
              <tr key={r.ip}>
                <td>
                  <Link href={`/history?ip=${encodeURIComponent(r.ip)}`}>{r.ip}</Link>
                </td>
                <td class="num">{formatNumber(r.distinct_usernames)}</td>
                <td class="num">{formatNumber(r.failures)}</td>
              </tr>
            ))}
          </Table>
        </Card>
        <Card title="Credential stuffing targets">
          <Table caption="Accounts attacked from the most distinct addresses" head={['Account', 'Addresses', 'Failures']} empty={s?.most_targeted_usernames.length === 0}>
            {s?.most_targeted_usernames.map((r) => (
              <tr key={r.username}>
                <td>
                  <Link href={`/history?username=${encodeURIComponent(r.username)}`}>{r.username}</Link>
                </td>
                <td class="num">{formatNumber(r.distinct_ips)}</td>
                <td class="num">{formatNumber(r.failures)}</td>
              </tr>
            ))}
          </Table>
        </Card>
        <Card title="Current lockouts">
          <ErrorNote error={lockouts.error} />
          {lockouts.data?.degraded ? <p class="warning">The lockout store is degraded: counts are this instance's only.</p> : null}
          <Table caption="Accounts locked now" head={['Account', 'Until']} empty={lockouts.data?.items.length === 0}>
            {lockouts.data?.items.slice(0, 10).map((l) => (
              <tr key={l.username}>
                <td>{l.username}</td>
                <td>
                  <Time iso={l.locked_until} />
                </td>
              </tr>
            ))}
          </Table>
          <p>
            <Link href="/lockouts">All lockouts</Link>
          </p>
        </Card>
        <Card title="Open alerts">
          <ErrorNote error={alerts.error} />
          <Table caption="Open alerts" head={['Raised', 'Rule', 'Severity', 'About']} empty={alerts.data?.items.length === 0} testId="open-alerts">
            {alerts.data?.items.map((a) => (
              <tr key={a.id}>
                <td>
                  <Time iso={a.raised_at} />
                </td>
                <td>{a.rule}</td>
                <td>
                  <span class={`badge sev-${a.severity}`}>{a.severity}</span>
                </td>
                <td>{a.key}</td>
              </tr>
            ))}
          </Table>
        </Card>
        <Integrity />
      </div>
    </div>
  );
}
