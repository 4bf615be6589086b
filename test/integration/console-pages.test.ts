import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { ScureBase32Plugin } from 'otplib';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { totpCode } from '../../src/mfa/totp.js';
import { buildConsole, consoleContext, launchBrowser, screenshot, signIn, watch, type PageProblems } from '../helpers/console.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { auditRows, sharedSetup, type SharedSetup } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';
const ADMIN = 'admin@example.com';
const base32 = new ScureBase32Plugin();
const now = () => Math.floor(Date.now() / 1000);

describe('console: overview, history, lockouts and users against a real gateway', () => {
  let t: TestDatabase;
  let setup: SharedSetup;
  let gw: RunningGateway;
  let origin: string;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let problems: PageProblems;
  const secrets = new Map<string, Uint8Array>();
  let adminToken: string;

  async function api(method: string, path: string, options: { token?: string; body?: unknown; xff?: string; expect?: number } = {}): Promise<{ status: number; body: Record<string, unknown> }> {
    const headers: Record<string, string> = {};
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (options.xff) headers['x-forwarded-for'] = options.xff;
    const res = await fetch(`${origin}${path}`, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) });
    const text = await res.text();
    if (options.expect !== undefined) assert.equal(res.status, options.expect, `${method} ${path}: ${text}`);
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  }

  /** A user with TOTP enrolled through the API (confirmed with the previous step's code). */
  async function enrolled(username: string): Promise<void> {
    const login = await api('POST', '/login', { body: { username, password: PASSWORD }, expect: 200 });
    const token = login.body.access_token as string;
    const started = await api('POST', '/mfa/totp/enroll', { token, body: {}, expect: 200 });
    const secret = base32.decode(started.body.secret as string);
    await api('POST', '/mfa/totp/confirm', { token, body: { otp: totpCode(secret, now() - 30) }, expect: 200 });
    secrets.set(username, secret);
  }

  const ready = (p: Page = page) => p.locator('[data-ready="true"]').waitFor();

  before(async () => {
    const [consoleDir, db] = await Promise.all([buildConsole(), createTestDatabase()]);
    t = db;
    setup = sharedSetup(t, {
      ADMIN_REQUIRE_MFA: 'true',
      CONSOLE_DIR: consoleDir,
      BOOTSTRAP_ADMIN_USERNAME: ADMIN,
      BOOTSTRAP_ADMIN_PASSWORD: PASSWORD,
      // The seeded logins come from other addresses through the loopback "proxy".
      TRUST_PROXY: 'loopback',
      AUDIT_CHECKPOINT_EVERY_SECONDS: '1',
    });
    gw = await startGateway(setup.env);
    origin = gw.url.replace('127.0.0.1', 'localhost');
    browser = await launchBrowser();
    await enrolled(ADMIN);
    adminToken = (await api('POST', '/login', { body: { username: ADMIN, password: PASSWORD, otp: totpCode(secrets.get(ADMIN)!, now()) }, expect: 200 })).body.access_token as string;
    for (const [name, roles] of [['analyst@example.com', ['security']], ['victim@example.com', ['user']], ['carol@example.com', ['user']]] as const) {
      await api('POST', '/admin/users', { token: adminToken, body: { username: name, password: PASSWORD, roles }, expect: 201 });
    }
    await enrolled('analyst@example.com');
    // Seeded traffic: successes and failures from several networks.
    const seeds: Array<[string, string, string]> = [
      ['carol@example.com', PASSWORD, '10.9.1.1'],
      ['carol@example.com', PASSWORD, '10.9.2.2'],
      ['carol@example.com', 'wrong password one', '10.9.3.3'],
      ['mallory@example.com', 'wrong password two', '10.9.3.3'],
      ['trent@example.com', 'wrong password three', '192.168.7.7'],
      ['carol@example.com', PASSWORD, '172.16.0.5'],
    ];
    for (const [username, password, ip] of seeds) await api('POST', '/login', { body: { username, password }, xff: ip });
    for (let i = 0; i < 5; i++) await api('POST', '/login', { body: { username: 'victim@example.com', password: 'not the password' }, xff: '198.51.100.9' });
    assert.equal((await api('POST', '/login', { body: { username: 'victim@example.com', password: PASSWORD }, xff: '198.51.100.9' })).status, 429, 'victim is locked');

    context = await consoleContext(browser);
    page = await context.newPage();
    page.setDefaultTimeout(10_000);
    problems = watch(page);
    page.on('dialog', (d) => void d.accept());
  });
  after(async () => {
    await browser?.close();
    await gw?.stop();
    await t?.drop();
    if (setup) fs.rmSync(setup.dir, { recursive: true, force: true });
  });

  it('when the admin signs in, then the overview shows the same numbers as the API', async () => {
    await page.goto(`${origin}/console/`);
    await signIn(page, ADMIN, PASSWORD, totpCode(secrets.get(ADMIN)!, now() + 30));
    await ready();
    const summary = (await api('GET', '/admin/login-events/summary', { token: adminToken, expect: 200 })).body as { buckets: Array<{ success: number; failure: number }>; top_failing_ips: Array<{ ip: string; failures: number }> };
    const success = summary.buckets.reduce((n, b) => n + b.success, 0);
    const failure = summary.buckets.reduce((n, b) => n + b.failure, 0);
    assert.ok(success >= 4 && failure >= 8, `seeded: ${success} ${failure}`);
    assert.equal(await page.getByTestId('total-success').textContent(), String(success));
    assert.equal(await page.getByTestId('total-failure').textContent(), String(failure));
    assert.equal(await page.getByTestId('total-lockouts').textContent(), '1');
    const topIps = await page.getByTestId('top-failing-ips').locator('tbody tr').allTextContents();
    assert.deepEqual(topIps, summary.top_failing_ips.map((r) => `${r.ip}${r.failures}`));
    assert.ok(await page.locator('.chart canvas').count() >= 1, 'the chart is drawn');
    await page.getByTestId('verify-status').getByText('intact').waitFor();
    await page.getByTestId('latest-checkpoint').getByText('tree size').waitFor();
    await screenshot(page, 'overview');
  });

  it('when the history is filtered by a CIDR block, then exactly the records of that block are listed, in the viewer\'s zone with UTC on hover', async () => {
    await page.getByRole('link', { name: 'History' }).click();
    await ready();
    await page.getByLabel('IP address or CIDR block').fill('10.9.0.0/16');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.waitForURL(/ip=10\.9\.0\.0%2F16/);
    await ready();
    const api10 = (await api('GET', '/admin/login-events?ip=10.9.0.0/16', { token: adminToken, expect: 200 })).body.items as Array<{ seq: number; ip: string }>;
    assert.equal(api10.length, 4);
    const rows = page.getByTestId('history').locator('tbody tr');
    await rows.first().waitFor();
    const seqs = await Promise.all((await rows.all()).map(async (tr) => Number(await tr.getAttribute('data-seq'))));
    assert.deepEqual(seqs, api10.map((r) => r.seq));
    const ips = await rows.locator('td:nth-child(7)').allTextContents();
    assert.ok(ips.every((ip) => ip.startsWith('10.9.')), ips.join());
    const time = rows.first().locator('time');
    assert.match((await time.getAttribute('title')) ?? '', /UTC$/);
    await screenshot(page, 'history');
  });

  it('when a record is opened, then every field, its leaf hash and its inclusion proof are shown', async () => {
    const first = page.getByTestId('history').locator('tbody tr').first();
    const seq = await first.getAttribute('data-seq');
    await first.getByRole('link', { name: seq! }).click();
    await ready();
    await page.getByTestId('record-fields').getByText('10.9.', { exact: false }).first().waitFor();
    const proof = (await api('GET', `/admin/audit/proof/${seq}`, { token: adminToken, expect: 200 })).body;
    assert.equal(await page.getByTestId('leaf-hash').textContent(), proof.leaf_hash);
    await screenshot(page, 'record');
  });

  it('when the admin unlocks a locked user, then the lock is gone and lockout.cleared is in the history', async () => {
    await page.getByRole('link', { name: 'Lockouts' }).click();
    await ready();
    const row = page.locator('tr[data-username="victim@example.com"]');
    await row.waitFor();
    await screenshot(page, 'lockouts');
    await row.getByRole('button', { name: 'Unlock victim@example.com' }).click();
    await page.getByRole('status').getByText('victim@example.com unlocked.').waitFor();
    await row.waitFor({ state: 'detached' });
    await page.goto(`${origin}/console/history?event_type=lockout.cleared`);
    await ready();
    const cleared = page.getByTestId('history').locator('tbody tr');
    assert.equal(await cleared.count(), 1);
    assert.match((await cleared.first().textContent()) ?? '', /lockout\.cleared.*victim@example\.com/);
    const [record] = await auditRows(t, { eventType: 'lockout.cleared' });
    assert.equal(record!.details?.was_locked, true);
    assert.equal((await api('POST', '/login', { body: { username: 'victim@example.com', password: PASSWORD }, xff: '198.51.100.9' })).status, 200);
  });

  it('when the admin opens Users, then users are listed with their controls', async () => {
    await page.getByRole('link', { name: 'Users' }).click();
    await ready();
    await page.locator('tr[data-username="analyst@example.com"]').waitFor();
    await screenshot(page, 'users');
    assert.ok((await page.locator('[data-admin-control]').count()) > 5);
  });

  it('when the console is used at phone width, then the overview fits the screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${origin}/console/`);
    await ready();
    const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth');
    assert.ok(overflow <= 0, `no sideways scrolling of the page: ${overflow}px`);
    await screenshot(page, 'phone');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('when a security user signs in, then every view is read-only: no admin control, no Users page', async () => {
    // A lock to show: the read-only lockouts view must still list it.
    for (let i = 0; i < 5; i++) await api('POST', '/login', { body: { username: 'carol@example.com', password: 'not the password' }, xff: '203.0.113.4' });
    const ctx = await consoleContext(browser);
    const p = await ctx.newPage();
    p.setDefaultTimeout(10_000);
    const pProblems = watch(p);
    await p.goto(`${origin}/console/lockouts`);
    await signIn(p, 'analyst@example.com', PASSWORD, totpCode(secrets.get('analyst@example.com')!, now()));
    await ready(p);
    await p.locator('tr[data-username="carol@example.com"]').waitFor();
    assert.equal(await p.locator('[data-admin-control]').count(), 0);
    assert.equal(await p.getByRole('button', { name: /Unlock/ }).count(), 0);
    assert.equal(await p.getByRole('link', { name: 'Users' }).count(), 0);
    await p.getByRole('link', { name: 'Overview' }).click();
    await ready(p);
    await p.getByRole('link', { name: 'History' }).click();
    await ready(p);
    assert.equal(await p.locator('[data-admin-control]').count(), 0);
    await p.goto(`${origin}/console/users`);
    await p.getByText('Nothing here').waitFor();
    assert.deepEqual(await pProblems.csp(), []);
    assert.deepEqual(pProblems.errors, []);
    await ctx.close();
  });

  it('when all of it ran, then no CSP violation and no page error happened', async () => {
    assert.deepEqual(await problems.csp(), []);
    assert.deepEqual(problems.errors, []);
  });
});
