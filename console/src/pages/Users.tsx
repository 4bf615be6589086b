import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { getJson, send, type Role } from '../api';
import { Time } from '../format';
import type { Page, UserSummary } from '../types';
import { ErrorNote, Field, formText, Table, useLoad } from '../ui';

const ROLES: Role[] = ['user', 'security', 'auditor', 'admin'];

function RoleChecks(props: { name: string; value: Role[]; onChange: (roles: Role[]) => void; idPrefix: string }): JSX.Element {
  return (
    <fieldset class="roles">
      <legend>{props.name}</legend>
      {ROLES.map((r) => (
        <label key={r} class="check">
          <input
            type="checkbox"
            id={`${props.idPrefix}-${r}`}
            checked={props.value.includes(r)}
            onChange={(e) => {
              const on = (e.currentTarget).checked;
              props.onChange(on ? [...props.value, r] : props.value.filter((x) => x !== r));
            }}
          />
          {r}
        </label>
      ))}
    </fieldset>
  );
}

function CreateUser(props: { onCreated: (message: string) => void }): JSX.Element {
  const [roles, setRoles] = useState<Role[]>(['user']);
  const [error, setError] = useState<unknown>(undefined);
  const onSubmit = (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const data = new FormData(form);
    setError(undefined);
    send<{ username: string }>('POST', '/admin/users', { username: formText(data, 'username'), password: formText(data, 'password'), roles }).then(
      (created) => {
        form.reset();
        setRoles(['user']);
        props.onCreated(`${created?.username ?? 'The user'} created.`);
      },
      (err: unknown) => setError(err),
    );
  };
  return (
    <form class="card create" onSubmit={onSubmit} aria-labelledby="create-user-title">
      <h2 id="create-user-title">Create a user</h2>
      <Field label="Username">
        <input name="username" required autoComplete="off" />
      </Field>
      <Field label="Initial password" hint="At least 12 characters; not the username.">
        <input name="password" type="password" required autoComplete="new-password" />
      </Field>
      <RoleChecks name="Roles" value={roles} onChange={setRoles} idPrefix="new-role" />
      <ErrorNote error={error} />
      <button type="submit" data-admin-control>
        Create user
      </button>
    </form>
  );
}

function UserRow(props: { user: UserSummary; onDone: (message: string) => void; onError: (e: unknown) => void }): JSX.Element {
  const u = props.user;
  const [editing, setEditing] = useState<'roles' | 'password' | null>(null);
  const [roles, setRoles] = useState<Role[]>(u.roles);
  const [password, setPassword] = useState('');
  const act = (method: string, path: string, message: string, body?: unknown, confirmText?: string) => {
    if (confirmText && !window.confirm(confirmText)) return;
    send(method, `/admin/users/${u.id}${path}`, body).then(
      () => {
        setEditing(null);
        setPassword('');
        props.onDone(message);
      },
      props.onError,
    );
  };
  return (
    <tr data-username={u.username}>
      <td>{u.username}</td>
      <td>{u.roles.join(', ') || '—'}</td>
      <td>
        <span class={`badge ${u.status === 'active' ? 'ok' : 'bad'}`}>{u.status}</span>
      </td>
      <td>{u.mfa_enabled ? 'TOTP' : 'none'}</td>
      <td>
        <Time iso={u.created_at} />
      </td>
      <td class="row-actions">
        {u.status === 'active' ? (
          <button type="button" class="secondary" data-admin-control onClick={() => act('POST', '/disable', `${u.username} disabled; sessions revoked.`, undefined, `Disable ${u.username}? Every session of the user is revoked.`)}>
            Disable
          </button>
        ) : (
          <button type="button" class="secondary" data-admin-control onClick={() => act('POST', '/enable', `${u.username} enabled.`)}>
            Enable
          </button>
        )}
        <button type="button" class="secondary" data-admin-control aria-expanded={editing === 'roles'} onClick={() => setEditing(editing === 'roles' ? null : 'roles')}>
          Roles
        </button>
        <button type="button" class="secondary" data-admin-control aria-expanded={editing === 'password'} onClick={() => setEditing(editing === 'password' ? null : 'password')}>
          Reset password
        </button>
        <button type="button" class="secondary" data-admin-control onClick={() => act('POST', '/mfa/reset', `MFA of ${u.username} reset.`, undefined, `Turn MFA off for ${u.username}? Their sessions are revoked.`)}>
          Reset MFA
        </button>
        <button type="button" class="secondary" data-admin-control onClick={() => act('POST', '/sessions/revoke', `Sessions of ${u.username} revoked.`, undefined, `Revoke every session of ${u.username}?`)}>
          Revoke sessions
        </button>
        {editing === 'roles' ? (
          <form
            class="inline-form"
            onSubmit={(e) => {
              e.preventDefault();
              act('PUT', '/roles', `Roles of ${u.username} set.`, { roles });
            }}
          >
            <RoleChecks name={`Roles of ${u.username}`} value={roles} onChange={setRoles} idPrefix={`roles-${u.id}`} />
            <button type="submit" data-admin-control>
              Save roles
            </button>
          </form>
        ) : null}
        {editing === 'password' ? (
          <form
            class="inline-form"
            onSubmit={(e) => {
              e.preventDefault();
              act('POST', '/password', `Password of ${u.username} reset; sessions revoked.`, { password });
            }}
          >
            <Field label={`New password for ${u.username}`}>
              <input type="password" autoComplete="new-password" value={password} onInput={(e) => setPassword((e.currentTarget).value)} required />
            </Field>
            <button type="submit" data-admin-control>
              Set password
            </button>
          </form>
        ) : null}
      </td>
    </tr>
  );
}

/** User management (role admin): every action is recorded with the admin as actor. */
export function Users(): JSX.Element {
  const [filters, setFilters] = useState<{ q: string; status: string; role: string }>({ q: '', status: '', role: '' });
  const [cursors, setCursors] = useState<string[]>([]);
  const [message, setMessage] = useState('');
  const [error, setError] = useState<unknown>(undefined);
  const list = useLoad(() => getJson<Page<UserSummary>>('/admin/users', { ...filters, cursor: cursors.at(-1), limit: 50 }), [JSON.stringify(filters), cursors.at(-1)]);
  const done = (m: string) => {
    setError(undefined);
    setMessage(m);
    list.reload();
  };
  return (
    <div class="page" data-ready={list.data ? 'true' : undefined}>
      <div class="page-head">
        <h1>Users</h1>
      </div>
      <p class="status" role="status">
        {message}
      </p>
      <ErrorNote error={error} />
      <div class="grid users-grid">
        <CreateUser onCreated={done} />
        <form
          class="card filters"
          aria-labelledby="user-search-title"
          onSubmit={(e) => {
            e.preventDefault();
            const data = new FormData(e.currentTarget);
            setCursors([]);
            setFilters({ q: formText(data, 'q'), status: formText(data, 'status'), role: formText(data, 'role') });
          }}
        >
          <h2 id="user-search-title">Search</h2>
          <Field label="Username contains">
            <input name="q" autoComplete="off" />
          </Field>
          <Field label="Status">
            <select name="status">
              <option value="">any</option>
              <option value="active">active</option>
              <option value="disabled">disabled</option>
            </select>
          </Field>
          <Field label="Role">
            <select name="role">
              <option value="">any</option>
              {ROLES.map((r) => (
                <option value={r} key={r}>
                  {r}
                </option>
              ))}
            </select>
          </Field>
          <button type="submit">Search</button>
        </form>
      </div>
      <ErrorNote error={list.error} />
      <Table caption="Users" head={['Username', 'Roles', 'Status', 'MFA', 'Created', 'Actions']} empty={list.data?.items.length === 0} testId="users">
        {list.data?.items.map((u) => (
          <UserRow key={`${u.id}-${u.roles.join()}-${u.status}`} user={u} onDone={done} onError={setError} />
        ))}
      </Table>
      <nav class="pager" aria-label="Pages">
        <button type="button" class="secondary" disabled={cursors.length === 0} onClick={() => setCursors((c) => c.slice(0, -1))}>
          Previous
        </button>
        <button type="button" class="secondary" disabled={!list.data?.next_cursor} onClick={() => list.data?.next_cursor && setCursors((c) => [...c, list.data!.next_cursor!])}>
          Next
        </button>
      </nav>
    </div>
  );
}
