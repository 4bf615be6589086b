import type { JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import QRCode from 'qrcode';
import { ApiError, createFirstAdmin, login, loginMfa, logout, send } from '../api';
import { navigate } from '../router';
import { describeError, ErrorNote, Field, formText } from '../ui';

/** Sign-in with the gateway's own flow: password, then a TOTP or recovery code when asked. */
export function SignIn(props: { username?: string; notice?: string }): JSX.Element {
  const [step, setStep] = useState<{ kind: 'password' } | { kind: 'code'; mfaToken: string; username: string }>({ kind: 'password' });
  const [useRecovery, setUseRecovery] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const codeInput = useRef<HTMLInputElement>(null);
  useEffect(() => codeInput.current?.focus(), [step, useRecovery]);

  const finish = () => {
    if (location.pathname.replace(/\/+$/, '').endsWith('/signin')) navigate('/', true);
  };

  const onPassword = (e: Event) => {
    e.preventDefault();
    const data = new FormData(e.currentTarget as HTMLFormElement);
    const username = formText(data, 'username');
    setBusy(true);
    setError(undefined);
    login(username, formText(data, 'password')).then(
      (result) => {
        setBusy(false);
        if (result.kind === 'mfa') setStep({ kind: 'code', mfaToken: result.mfaToken, username });
        else finish();
      },
      (err: unknown) => {
        setBusy(false);
        setError(err);
      },
    );
  };

  const onCode = (e: Event) => {
    e.preventDefault();
    if (step.kind !== 'code') return;
    const value = formText(new FormData(e.currentTarget as HTMLFormElement), 'code').trim();
    setBusy(true);
    setError(undefined);
    loginMfa(step.mfaToken, useRecovery ? { recovery_code: value } : { otp: value }, step.username).then(
      () => {
        setBusy(false);
        finish();
      },
      (err: unknown) => {
        setBusy(false);
        // Each mfa_token works once: a wrong code means the password again.
        setStep({ kind: 'password' });
        setError(err);
      },
    );
  };

  return (
    <main class="auth" id="main">
      <h1>authtrail console</h1>
      {props.notice ? (
        <p class="notice" role="status">
          {props.notice}
        </p>
      ) : null}
      {step.kind === 'password' ? (
        <form onSubmit={onPassword} aria-label="Sign in" class="card">
          <h2>Sign in</h2>
          <Field label="Username">
            <input name="username" autoComplete="username" required defaultValue={props.username ?? ''} />
          </Field>
          <Field label="Password">
            <input name="password" type="password" autoComplete="current-password" required />
          </Field>
          <ErrorNote error={error} />
          <button type="submit" disabled={busy}>
            Continue
          </button>
        </form>
      ) : (
        <form onSubmit={onCode} aria-label="Second factor" class="card">
          <h2>Second factor</h2>
          <Field label={useRecovery ? 'Recovery code' : 'Code from your authenticator app'}>
            <input
              ref={codeInput}
              name="code"
              required
              autoComplete="one-time-code"
              inputMode={useRecovery ? 'text' : 'numeric'}
              pattern={useRecovery ? undefined : '[0-9]{6}'}
              key={useRecovery ? 'recovery' : 'otp'}
            />
          </Field>
          <ErrorNote error={error} />
          <button type="submit" disabled={busy}>
            Sign in
          </button>
          <button type="button" class="link" onClick={() => setUseRecovery(!useRecovery)}>
            {useRecovery ? 'Use a code from the app instead' : 'Use a recovery code instead'}
          </button>
        </form>
      )}
    </main>
  );
}

/** TOTP enrollment through POST /mfa/totp/enroll and /confirm, then the recovery codes to save. */
export function TotpEnrollment(props: { username: string; onFinished: () => void }): JSX.Element {
  const [enrollment, setEnrollment] = useState<{ secret: string; otpauth_uri: string; qr: string } | undefined>(undefined);
  const [codes, setCodes] = useState<string[] | undefined>(undefined);
  const [saved, setSaved] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  const started = useRef(false);

  useEffect(() => {
    if (started.current) return;
    started.current = true;
    send<{ secret: string; otpauth_uri: string }>('POST', '/mfa/totp/enroll', {})
      .then(async (e) => {
        if (!e) throw new Error('no enrollment returned');
        const svg = await QRCode.toString(e.otpauth_uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
        setEnrollment({ ...e, qr: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}` });
      })
      .catch((err: unknown) => setError(err));
  }, []);

  const onConfirm = (e: Event) => {
    e.preventDefault();
    const otp = formText(new FormData(e.currentTarget as HTMLFormElement), 'otp').trim();
    setError(undefined);
    send<{ recovery_codes: string[] }>('POST', '/mfa/totp/confirm', { otp }).then(
      (r) => setCodes(r?.recovery_codes ?? []),
      (err: unknown) => setError(err),
    );
  };

  const downloadCodes = () => {
    const blob = new Blob([`authtrail recovery codes for ${props.username}\n\n${(codes ?? []).join('\n')}\n`], { type: 'text/plain' });
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = 'authtrail-recovery-codes.txt';
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  };

  if (codes) {
    return (
      <section class="card" aria-labelledby="codes-title">
        <h2 id="codes-title">Save your recovery codes</h2>
        <p>Each code signs you in once if you lose your authenticator. They are shown only now.</p>
        <ol class="codes mono" data-testid="recovery-codes">
          {codes.map((c) => (
            <li key={c}>{c}</li>
          ))}
        </ol>
        <div class="actions">
          <button type="button" class="secondary" onClick={downloadCodes}>
            Download as text
          </button>
        </div>
        <label class="check">
          <input type="checkbox" checked={saved} onChange={(e) => setSaved((e.currentTarget).checked)} />I have saved these codes
        </label>
        <button type="button" disabled={!saved} onClick={props.onFinished}>
          Continue: sign in with a code
        </button>
      </section>
    );
  }
  return (
    <section class="card" aria-labelledby="enroll-title">
      <h2 id="enroll-title">Set up two-factor authentication</h2>
      <ErrorNote error={error} />
      {enrollment ? (
        <>
          <ol class="steps">
            <li>Scan this code with an authenticator app (or type the secret below).</li>
            <li>Enter the six-digit code it shows.</li>
          </ol>
          <img class="qr" src={enrollment.qr} alt={`QR code of the authenticator setup for ${props.username}`} width={220} height={220} />
          <p>
            Secret: <code class="secret" data-testid="totp-secret">{enrollment.secret}</code>
          </p>
          <form onSubmit={onConfirm} aria-label="Confirm the authenticator">
            <Field label="Six-digit code">
              <input name="otp" required inputMode="numeric" pattern="[0-9]{6}" autoComplete="one-time-code" />
            </Field>
            <button type="submit">Turn on two-factor authentication</button>
          </form>
        </>
      ) : error ? null : (
        <p class="muted">Preparing…</p>
      )}
    </section>
  );
}

/** After enrollment: the session has no second factor in it; sign out and in again with a code. */
async function signInAgain(username: string): Promise<void> {
  await logout().catch(() => undefined);
  navigate(`/signin?username=${encodeURIComponent(username)}&enrolled=1`);
}

/** A signed-in user without a second factor: admin and security routes need one. */
export function Enroll(props: { username: string }): JSX.Element {
  return (
    <main class="auth" id="main">
      <h1>authtrail console</h1>
      <p class="notice">The console needs a login with a second factor. Set one up now; you will then sign in again with a code.</p>
      <TotpEnrollment username={props.username} onFinished={() => void signInAgain(props.username)} />
      <button type="button" class="link" onClick={() => void logout()}>
        Sign out
      </button>
    </main>
  );
}

/** The first run: create the first administrator with the setup link's token, then enroll TOTP. */
export function Setup(): JSX.Element {
  const [token] = useState(() => decodeURIComponent(location.hash.slice(1)));
  const [step, setStep] = useState<'account' | 'mfa'>('account');
  const [username, setUsername] = useState('');
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    // The token stays in memory only, not in the address bar or the history.
    if (location.hash) history.replaceState(null, '', location.pathname);
  }, []);

  const onSubmit = (e: Event) => {
    e.preventDefault();
    const data = new FormData(e.currentTarget as HTMLFormElement);
    const name = formText(data, 'username').trim();
    const password = formText(data, 'password');
    if (password !== formText(data, 'confirm')) {
      setError(new Error('The two passwords differ.'));
      return;
    }
    setBusy(true);
    setError(undefined);
    createFirstAdmin(token, name, password)
      .then(() => login(name, password))
      .then(
        (result) => {
          setBusy(false);
          setUsername(name);
          if (result.kind === 'signed_in') setStep('mfa');
          else navigate(`/signin?username=${encodeURIComponent(name)}`);
        },
        (err: unknown) => {
          setBusy(false);
          setError(err);
        },
      );
  };

  if (!token) {
    return (
      <main class="auth" id="main">
        <h1>First-run setup</h1>
        <p class="error" role="alert">
          Open the setup link the gateway printed at start (it ends with <code>#</code> and a token).
        </p>
      </main>
    );
  }
  const done = error instanceof ApiError && error.code === 'setup_completed';
  return (
    <main class="auth" id="main">
      <h1>First-run setup</h1>
      {step === 'account' ? (
        <form onSubmit={onSubmit} class="card" aria-label="Create the first administrator">
          <h2>Create the first administrator</h2>
          <p>This account gets the roles admin and security. The link works once.</p>
          <Field label="Username">
            <input name="username" autoComplete="username" required />
          </Field>
          <Field label="Password" hint="At least 12 characters; not the username.">
            <input name="password" type="password" autoComplete="new-password" required minLength={12} />
          </Field>
          <Field label="Password again">
            <input name="confirm" type="password" autoComplete="new-password" required minLength={12} />
          </Field>
          {error ? (
            <p class="error" role="alert">
              {describeError(error)}
              {done ? ' — the first administrator exists: sign in instead.' : ''}
            </p>
          ) : null}
          <button type="submit" disabled={busy}>
            Create administrator
          </button>
          {done ? (
            <button type="button" class="link" onClick={() => navigate('/signin')}>
              Go to sign-in
            </button>
          ) : null}
        </form>
      ) : (
        <TotpEnrollment username={username} onFinished={() => void signInAgain(username)} />
      )}
    </main>
  );
}
