import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { getJson, send } from '../api';
import { formatNumber, Time } from '../format';
import { Link } from '../router';
import type { Lockout } from '../types';
import { ErrorNote, Table, useLoad } from '../ui';

/** Current lockouts; admins unlock (recorded as lockout.cleared with them as actor). */
export function Lockouts(props: { isAdmin: boolean }): JSX.Element {
  const list = useLoad(() => getJson<{ items: Lockout[]; degraded: boolean }>('/admin/lockouts'), []);
  const [status, setStatus] = useState<string>('');
  const [error, setError] = useState<unknown>(undefined);

  const unlock = (username: string) => {
    if (!window.confirm(`Unlock ${username}? This is recorded with you as the actor.`)) return;
    setError(undefined);
    send('DELETE', `/admin/lockouts/${encodeURIComponent(username)}`).then(
      () => {
        setStatus(`${username} unlocked.`);
        list.reload();
      },
      (e: unknown) => setError(e),
    );
  };

  return (
    <div class="page" data-ready={list.data ? 'true' : undefined}>
      <div class="page-head">
        <h1>Lockouts</h1>
        <button type="button" class="secondary" onClick={list.reload}>
          Refresh
        </button>
      </div>
      <p class="status" role="status">
        {status}
      </p>
      <ErrorNote error={error ?? list.error} />
      {list.data?.degraded ? <p class="warning">The lockout store is degraded: this list holds this instance's locks only.</p> : null}
      <Table
        caption="Accounts locked now"
        head={['Account', 'Failures', 'Locked since', 'Locked until', 'Locks in 24 h', ...(props.isAdmin ? ['Action'] : [])]}
        empty={list.data?.items.length === 0}
        testId="lockouts"
      >
        {list.data?.items.map((l) => (
          <tr key={l.username} data-username={l.username}>
            <td>
              <Link href={`/history?username=${encodeURIComponent(l.username)}`}>{l.username}</Link>
            </td>
            <td class="num">{formatNumber(l.failures)}</td>
            <td>
              <Time iso={l.locked_since} />
            </td>
            <td>
              <Time iso={l.locked_until} />
            </td>
            <td class="num">{formatNumber(l.lock_count)}</td>
            {props.isAdmin ? (
              <td>
                <button type="button" data-admin-control onClick={() => unlock(l.username)} aria-label={`Unlock ${l.username}`}>
                  Unlock
                </button>
              </td>
            ) : null}
          </tr>
        ))}
      </Table>
    </div>
  );
}
