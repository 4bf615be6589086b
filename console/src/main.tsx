import type { JSX } from 'preact';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { currentSession, logout, onSessionChange, refresh, type Role, type Session } from './api';
import { Enroll, Setup, SignIn } from './pages/Auth';
import { History } from './pages/History';
import { Lockouts } from './pages/Lockouts';
import { Overview } from './pages/Overview';
import { RecordPage } from './pages/Record';
import { Users } from './pages/Users';
import { Link, navigate, useLocation } from './router';
import './styles.css';

const READERS: Role[] = ['security', 'auditor', 'admin'];

function Shell(props: { session: Session; path: string; search: URLSearchParams }): JSX.Element {
  const { session, path } = props;
  const isAdmin = session.claims.roles.includes('admin');
  const nav: Array<[string, string]> = [
    ['/', 'Overview'],
    ['/history', 'History'],
    ['/lockouts', 'Lockouts'],
    ...(isAdmin ? ([['/users', 'Users']] as Array<[string, string]>) : []),
  ];
  const section = path === '/' ? '/' : `/${path.split('/')[1] ?? ''}`;
  const record = /^\/records\/([1-9]\d{0,15})$/.exec(path);
  let page: JSX.Element;
  if (path === '/') page = <Overview />;
  else if (path === '/history') page = <History search={props.search} key={props.search.toString()} />;
  else if (record) page = <RecordPage seq={Number(record[1])} key={record[1]} />;
  else if (path === '/lockouts') page = <Lockouts isAdmin={isAdmin} />;
  else if (path === '/users' && isAdmin) page = <Users />;
  else page = <p class="page">Nothing here. <Link href="/">Overview</Link></p>;
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">authtrail</span>
        <nav aria-label="Console">
          <ul>
            {nav.map(([href, label]) => (
              <li key={href}>
                <Link href={href} current={section === href || (href === '/history' && section === '/records')}>
                  {label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span data-testid="who">
            {session.username ?? 'signed in'} <span class="muted">({session.claims.roles.join(', ')})</span>
          </span>
          <button type="button" class="secondary" onClick={() => void logout().then(() => navigate('/signin'))}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {page}
      </main>
    </>
  );
}

function App(): JSX.Element {
  const { path, search } = useLocation();
  const [session, setSession] = useState<Session | null>(currentSession());
  const [booting, setBooting] = useState(path !== '/setup');
  useEffect(() => onSessionChange(setSession), []);
  useEffect(() => {
    // A reload keeps no token: the refresh cookie gets a new one, silently.
    if (path !== '/setup') void refresh().finally(() => setBooting(false));
  }, []);
  const signedInOnSignIn = session !== null && path === '/signin';
  useEffect(() => {
    if (signedInOnSignIn) navigate('/', true);
  }, [signedInOnSignIn]);

  if (path === '/setup') return <Setup />;
  if (booting) return <p class="page muted">Loading…</p>;
  if (!session) {
    const enrolled = search.get('enrolled') === '1';
    return <SignIn username={search.get('username') ?? undefined} notice={enrolled ? 'Two-factor authentication is on. Sign in again with a code from your app.' : undefined} key={path} />;
  }
  if (signedInOnSignIn) return <p class="page muted">Loading…</p>;
  if (!session.claims.amr.includes('otp')) return <Enroll username={session.username ?? ''} />;
  if (!session.claims.roles.some((r) => READERS.includes(r))) {
    return (
      <main class="auth" id="main">
        <h1>authtrail console</h1>
        <p>The console is for the security team: roles security, auditor or admin.</p>
        <button type="button" onClick={() => void logout()}>
          Sign out
        </button>
      </main>
    );
  }
  return <Shell session={session} path={path} search={search} />;
}

render(<App />, document.getElementById('app')!);
