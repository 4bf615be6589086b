/**
 * The console's only way to the gateway: its public API, same origin. The access token lives in
 * this module's memory only; the refresh token is the HttpOnly `__Host-authtrail_refresh` cookie,
 * which page scripts never see. Refreshes run one at a time across tabs (a Web Lock), because two
 * uses of one refresh token would revoke the session as a replay.
 */

export type Role = 'user' | 'security' | 'admin' | 'auditor';

export interface Claims {
  sub: string;
  sid: string;
  exp: number;
  amr: string[];
  roles: Role[];
  auth_time?: number;
}

export interface Session {
  token: string;
  claims: Claims;
  username: string | null;
}

/** A problem+json answer (RFC 9457) or a network failure. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const USERNAME_KEY = 'authtrail.console.username';
let session: Session | null = null;
let refreshTimer: number | undefined;
let refreshing: Promise<boolean> | null = null;
const listeners = new Set<(s: Session | null) => void>();

export const currentSession = (): Session | null => session;

export function onSessionChange(listener: (s: Session | null) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function decodeClaims(token: string): Claims {
  const part = token.split('.')[1] ?? '';
  const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
  return JSON.parse(json) as Claims;
}

function setSession(next: Session | null): void {
  session = next;
  window.clearTimeout(refreshTimer);
  if (next) {
    // Renew a minute before expiry (or at 80 % of a shorter lifetime), silently.
    const left = next.claims.exp * 1000 - Date.now();
    const wait = Math.max(5_000, Math.min(left - 60_000, left * 0.8));
    refreshTimer = window.setTimeout(() => void refresh(), wait);
  }
  for (const listener of listeners) listener(next);
}

async function problemOf(res: Response): Promise<ApiError> {
  let body: Record<string, unknown> = {};
  try {
    body = (await res.json()) as Record<string, unknown>;
  } catch {
    // not JSON: keep the status
  }
  const code = typeof body.code === 'string' ? body.code : `http_${res.status}`;
  const message = typeof body.detail === 'string' ? body.detail : typeof body.title === 'string' ? body.title : `HTTP ${res.status}`;
  return new ApiError(res.status, code, message, body);
}

async function post(path: string, body?: unknown, token?: string): Promise<Response> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  return fetch(path, { method: 'POST', headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin', cache: 'no-store' });
}

function startSession(tokens: { access_token: string }, username: string | null): Session {
  if (username !== null) localStorage.setItem(USERNAME_KEY, username);
  const s: Session = { token: tokens.access_token, claims: decodeClaims(tokens.access_token), username: username ?? localStorage.getItem(USERNAME_KEY) };
  setSession(s);
  return s;
}

/** Rotates the refresh cookie for a new access token; false (and signed out) when there is no valid session. */
export function refresh(): Promise<boolean> {
  refreshing ??= (async () => {
    const run = async (): Promise<boolean> => {
      const res = await post('/refresh');
      if (!res.ok) {
        setSession(null);
        return false;
      }
      startSession((await res.json()) as { access_token: string }, null);
      return true;
    };
    try {
      return navigator.locks ? await navigator.locks.request('authtrail-console-refresh', run) : await run();
    } catch {
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

export type LoginResult = { kind: 'signed_in'; session: Session } | { kind: 'mfa'; mfaToken: string };

/** `POST /login`: tokens, or the `mfa_token` of a two-step login. */
export async function login(username: string, password: string): Promise<LoginResult> {
  const res = await post('/login', { username, password });
  if (res.ok) return { kind: 'signed_in', session: startSession((await res.json()) as { access_token: string }, username) };
  const problem = await problemOf(res);
  if (problem.code === 'mfa_required' && typeof problem.body.mfa_token === 'string') return { kind: 'mfa', mfaToken: problem.body.mfa_token };
  throw problem;
}

/** `POST /login/mfa` with a TOTP code or a recovery code. */
export async function loginMfa(mfaToken: string, code: { otp: string } | { recovery_code: string }, username: string): Promise<Session> {
  const res = await post('/login/mfa', { mfa_token: mfaToken, ...code });
  if (!res.ok) throw await problemOf(res);
  return startSession((await res.json()) as { access_token: string }, username);
}

/** `POST /logout` (the cookie): the session is revoked; the access token is forgotten here. */
export async function logout(): Promise<void> {
  try {
    await post('/logout');
  } finally {
    setSession(null);
  }
}

/** `POST /setup`: the first administrator, with the token of the setup link. */
export async function createFirstAdmin(setupToken: string, username: string, password: string): Promise<void> {
  const res = await post('/setup', { setup_token: setupToken, username, password });
  if (!res.ok) throw await problemOf(res);
}

type Query = Record<string, string | number | undefined | null>;

export function withQuery(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

/** A call with the access token; one silent refresh and retry when the token was refused. */
export async function call(method: string, path: string, options: { query?: Query; body?: unknown; accept?: string } = {}): Promise<Response> {
  const send = (token: string | undefined) => {
    const headers: Record<string, string> = { accept: options.accept ?? 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    return fetch(withQuery(path, options.query), {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  };
  let res = await send(session?.token);
  if (res.status === 401 && (await refresh())) res = await send(session?.token);
  if (!res.ok) throw await problemOf(res);
  return res;
}

export async function getJson<T>(path: string, query?: Query): Promise<T> {
  return (await (await call('GET', path, { query })).json()) as T;
}

export async function send<T = unknown>(method: string, path: string, body?: unknown): Promise<T | undefined> {
  const res = await call(method, path, { body });
  return res.status === 204 ? undefined : ((await res.json()) as T);
}
