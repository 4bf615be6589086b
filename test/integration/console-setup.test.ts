import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { ScureBase32Plugin } from 'otplib';
import type { Browser, Page } from 'playwright-core';
import { totpCode } from '../../src/mfa/totp.js';
import { buildConsole, consoleContext, launchBrowser, screenshot, signIn, watch, type PageProblems } from '../helpers/console.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { auditRows, sharedSetup, type SharedSetup } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';
const USERNAME = 'first-admin@example.com';
const base32 = new ScureBase32Plugin();
const now = () => Math.floor(Date.now() / 1000);

describe('console: first run, TOTP enrollment and sign-in in a real browser', () => {
  let t: TestDatabase;
  let setup: SharedSetup;
  let gw: RunningGateway;
  let browser: Browser;
  let page: Page;
  let problems: PageProblems;
  let setupUrl: string;
  let secret: Uint8Array;

  before(async () => {
    const [consoleDir, db] = await Promise.all([buildConsole(), createTestDatabase()]);
    t = db;
    setup = sharedSetup(t, { ADMIN_REQUIRE_MFA: 'true', CONSOLE_DIR: consoleDir });
    gw = await startGateway(setup.env);
    browser = await launchBrowser();
    page = await (await consoleContext(browser)).newPage();
    page.setDefaultTimeout(10_000);
    problems = watch(page);
  });
  after(async () => {
    await browser?.close();
    await gw?.stop();
    await t?.drop();
    if (setup) fs.rmSync(setup.dir, { recursive: true, force: true });
  });

  it('when the gateway starts with no user, then it prints one setup link with the token in its fragment', () => {
    const lines = gw.lines.filter((l) => l.includes('setup_url'));
    assert.equal(lines.length, 1, gw.lines.join('\n'));
    setupUrl = (JSON.parse(lines[0]!) as { setup_url: string }).setup_url;
    assert.match(setupUrl, /^http:\/\/localhost:\d+\/console\/setup#[A-Za-z0-9_-]{43}$/);
  });

  it('when / is opened, then it redirects to the console with the console\'s strict CSP', async () => {
    const origin = new URL(setupUrl).origin;
    const res = await fetch(`${origin}/`, { redirect: 'manual' });
    assert.equal(res.status, 302);
    assert.equal(res.headers.get('location'), '/console/');
    const html = await fetch(`${origin}/console/history`);
    assert.equal(html.status, 200);
    const csp = html.headers.get('content-security-policy') ?? '';
    for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"]) assert.ok(csp.includes(directive), csp);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https:/);
    assert.doesNotMatch(await html.text(), /style=|<script>(?!<)/, 'no inline style or script in the page');
    const missing = await fetch(`${origin}/console/assets/missing.js`);
    assert.equal(missing.status, 404);
  });

  it('when the setup link is followed, then the first admin is created, TOTP enrolled with a QR code, and recovery codes shown', async () => {
    await page.goto(setupUrl);
    await page.getByLabel('Username').fill(USERNAME);
    assert.equal(new URL(page.url()).hash, '', 'the token leaves the address bar');
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByLabel('Password again').fill(PASSWORD);
    await screenshot(page, 'setup');
    await page.getByRole('button', { name: 'Create administrator' }).click();
    const qr = page.getByRole('img', { name: /QR code/ });
    await qr.waitFor();
    assert.match((await qr.getAttribute('src')) ?? '', /^data:image\/svg\+xml/);
    const width = await qr.evaluate((img: { naturalWidth: number; decode(): Promise<void> }) => img.decode().then(() => img.naturalWidth));
    assert.ok(width > 0, 'the QR code renders');
    await screenshot(page, 'setup-totp');
    secret = base32.decode((await page.getByTestId('totp-secret').textContent())!.trim());
    await page.getByLabel('Six-digit code').fill(totpCode(secret, now() - 30));
    await page.getByRole('button', { name: 'Turn on two-factor authentication' }).click();
    const codes = page.getByTestId('recovery-codes').locator('li');
    await codes.first().waitFor();
    assert.equal(await codes.count(), 10);
    await screenshot(page, 'setup-recovery-codes');

    const created = await auditRows(t, { eventType: 'user.created' });
    assert.equal(created.length, 1);
    assert.equal(created[0]!.reason, 'bootstrap');
    assert.equal((await auditRows(t, { eventType: 'mfa.enabled' })).length, 1);
  });

  it('when the codes are saved, then the admin signs in again with password and TOTP and sees the overview', async () => {
    await page.getByLabel('I have saved these codes').check();
    await page.getByRole('button', { name: 'Continue: sign in with a code' }).click();
    await page.getByText('Two-factor authentication is on').waitFor();
    assert.equal(await page.getByLabel('Username').inputValue(), USERNAME);
    await screenshot(page, 'sign-in');
    await signIn(page, USERNAME, PASSWORD, totpCode(secret, now()));
    await page.locator('[data-ready="true"]').waitFor();
    assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Overview');
    const logins = await auditRows(t, { eventType: 'login.succeeded' });
    assert.deepEqual(logins.at(-1)!.details?.amr, ['pwd', 'otp']);
  });

  it('when the page is reloaded, then the session continues through the refresh cookie, with no token in storage', async () => {
    const cookies = await page.context().cookies();
    const refresh = cookies.find((c) => c.name === '__Host-authtrail_refresh');
    assert.ok(refresh, 'the refresh token is a __Host- cookie');
    assert.ok(refresh.httpOnly && refresh.secure && refresh.sameSite === 'Strict');
    await page.reload();
    await page.locator('[data-ready="true"]').waitFor();
    const stored = await page.evaluate<string>('JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie');
    assert.doesNotMatch(stored, /eyJ/, 'no token in web storage or script-visible cookies');
    assert.ok((await auditRows(t, { eventType: 'token.refreshed' })).length >= 1);
  });

  it('when the admin signs out and in again with a TOTP code, then the session is revoked and a new one starts', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.equal((await auditRows(t, { eventType: 'logout' })).at(-1)!.outcome, 'success');
    await signIn(page, USERNAME, PASSWORD, totpCode(secret, now() + 30));
    await page.locator('[data-ready="true"]').waitFor();
  });

  it('when the setup link is opened again, then it is refused: the first admin exists', async () => {
    const other = await page.context().newPage();
    const otherProblems = watch(other);
    await other.goto(setupUrl);
    await other.getByLabel('Username').fill('second@example.com');
    await other.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await other.getByLabel('Password again').fill(PASSWORD);
    await other.getByRole('button', { name: 'Create administrator' }).click();
    await other.getByText('sign in instead').waitFor();
    assert.deepEqual(await otherProblems.csp(), []);
    await other.close();
    const refused = await auditRows(t, { eventType: 'setup.failed' });
    assert.deepEqual(refused.map((r) => r.reason), ['setup_completed']);
  });

  it('when all of it ran, then no CSP violation and no page error happened', async () => {
    assert.deepEqual(await problems.csp(), []);
    assert.deepEqual(problems.errors, []);
  });
});
