import fs from 'node:fs';
import { ScureBase32Plugin } from 'otplib';
import type { Page } from 'playwright-core';
import { totpCode } from '../src/mfa/totp.js';
import { buildConsole, consoleContext, launchBrowser, signIn } from '../test/helpers/console.js';
import { startGateway } from '../test/helpers/gateway.js';
import { sharedSetup } from '../test/helpers/test-gateway.js';
import { benchDatabase, fmt, seedLoginRecords } from './lib.js';

const ROWS = Number(process.env.BENCH_CONSOLE_ROWS ?? 1_000_000);
const RUNS = 7;
const PASSWORD = 'correct horse battery staple';
const ADMIN = 'bench-admin@example.com';
const TARGET_MS = 1000;

/** Milliseconds from navigation to the page's data rendered (`data-ready`), median and worst of RUNS. */
async function timePage(page: Page, url: string): Promise<{ p50: number; max: number }> {
  const samples: number[] = [];
  for (let i = 0; i <= RUNS; i++) {
    const started = performance.now();
    await page.goto(url);
    await page.locator('[data-ready="true"]').waitFor({ timeout: 60_000 });
    if (i > 0) samples.push(performance.now() - started); // the first run warms caches
  }
  samples.sort((a, b) => a - b);
  return { p50: samples[Math.floor(samples.length / 2)]!, max: samples.at(-1)! };
}

/** The console's pages in headless chromium over a gateway whose log holds `ROWS` records. */
export async function benchConsole(): Promise<void> {
  const bench = await benchDatabase();
  const setup = sharedSetup({ url: bench.url } as Parameters<typeof sharedSetup>[0], {
    ADMIN_REQUIRE_MFA: 'true',
    BOOTSTRAP_ADMIN_USERNAME: ADMIN,
    BOOTSTRAP_ADMIN_PASSWORD: PASSWORD,
    CONSOLE_DIR: await buildConsole(),
    BCRYPT_COST: '4',
  });
  let gateway: Awaited<ReturnType<typeof startGateway>> | undefined;
  const browser = await launchBrowser();
  try {
    const seedStart = performance.now();
    await seedLoginRecords(bench.db, ROWS, `(now() - interval '30 days' - interval '1 minute')`);
    const seeded = (performance.now() - seedStart) / 1000;
    const startStart = performance.now();
    // Start-up builds the Merkle tree of the seeded records (backfill), once.
    const gw = await startGateway(setup.env, 30 * 60_000);
    gateway = gw;
    console.log(`\n## Console pages (${fmt(ROWS)} records seeded in ${seeded.toFixed(0)} s; gateway up in ${((performance.now() - startStart) / 1000).toFixed(0)} s; median and worst of ${RUNS} loads)`);
    const origin = gw.url.replace('127.0.0.1', 'localhost');
    const post = async (path: string, body: unknown, token?: string) => {
      const res = await fetch(`${origin}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) });
      return (await res.json()) as Record<string, string>;
    };
    const now = () => Math.floor(Date.now() / 1000);
    const token = (await post('/login', { username: ADMIN, password: PASSWORD })).access_token!;
    const secret = new ScureBase32Plugin().decode((await post('/mfa/totp/enroll', {}, token)).secret!);
    await post('/mfa/totp/confirm', { otp: totpCode(secret, now() - 30) }, token);

    const page = await (await consoleContext(browser)).newPage();
    await page.goto(`${origin}/console/`);
    await signIn(page, ADMIN, PASSWORD, totpCode(secret, now()));
    await page.locator('[data-ready="true"]').waitFor({ timeout: 60_000 });

    const report = (name: string, r: { p50: number; max: number }) =>
      console.log(`${name.padEnd(34)} p50 ${r.p50.toFixed(0).padStart(5)} ms   max ${r.max.toFixed(0).padStart(5)} ms   (target < ${TARGET_MS} ms)${r.max < TARGET_MS ? '' : '   SLOW'}`);
    report('overview, last 24 h', await timePage(page, `${origin}/console/`));
    await page.getByLabel('Range').selectOption('30d');
    report('history, newest 50', await timePage(page, `${origin}/console/history`));
    report('history, CIDR 10.7.0.0/16', await timePage(page, `${origin}/console/history?ip=${encodeURIComponent('10.7.0.0/16')}`));
    report('history, one username', await timePage(page, `${origin}/console/history?username=user4242%40example.com`));
    report('history, failures of one device', await timePage(page, `${origin}/console/history?device_id=device-777&outcome=failure`));
    // The 30-day overview summarizes every seeded record: the summary's worst case.
    const started = performance.now();
    await page.goto(`${origin}/console/`);
    await page.getByLabel('Range').selectOption('30d');
    await page.getByTestId('total-success').getByText(/\d/).waitFor({ timeout: 120_000 });
    console.log(`${'overview, last 30 days (1 load)'.padEnd(34)} ${(performance.now() - started).toFixed(0).padStart(9)} ms`);
  } finally {
    await browser.close();
    await gateway?.stop();
    await bench.drop();
    fs.rmSync(setup.dir, { recursive: true, force: true });
  }
}
