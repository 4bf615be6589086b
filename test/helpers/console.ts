import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { finished } from './processes.js';
import { spawn } from 'node:child_process';
import { ROOT } from './processes.js';

/** Debian's chromium; the console tests fail (never skip) without it: `apt-get install chromium`. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Set CONSOLE_SCREENSHOTS=1 to write docs/console/*.png while the tests run. */
const SCREENSHOTS = process.env.CONSOLE_SCREENSHOTS === '1';

/** Every file the console build reads, hashed: the build of these sources, shared by every test file. */
function sourceHash(): string {
  const hash = crypto.createHash('sha256');
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(file);
      else hash.update(file).update(fs.readFileSync(file));
    }
  };
  walk(path.join(ROOT, 'console'));
  for (const file of ['src/audit/vocabulary.ts', 'src/problems.ts', 'package-lock.json']) hash.update(fs.readFileSync(path.join(ROOT, file)));
  return hash.digest('hex').slice(0, 16);
}

/**
 * The console built from the current sources into a directory of its own (reused while the
 * sources are unchanged), so tests never depend on, or race over, dist/console.
 */
export async function buildConsole(): Promise<string> {
  const dir = path.join(os.tmpdir(), `authtrail-console-${sourceHash()}`);
  if (fs.existsSync(path.join(dir, 'index.html'))) return dir;
  const tmp = `${dir}.${process.pid}.${crypto.randomBytes(4).toString('hex')}`;
  const child = spawn(process.execPath, [path.join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', '--config', 'console/vite.config.ts', '--outDir', tmp, '--emptyOutDir'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const result = await finished(child);
  assert.equal(result.code, 0, `the console build failed: ${result.stderr}${result.stdout}`);
  try {
    fs.renameSync(tmp, dir);
  } catch {
    // Another test file built the same sources first.
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

export async function launchBrowser(): Promise<Browser> {
  assert.ok(fs.existsSync(CHROMIUM), `chromium is required at ${CHROMIUM} (apt-get install chromium)`);
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
}

/** What the page reported against its Content-Security-Policy, and every console error and page error. */
export interface PageProblems {
  csp(): Promise<string[]>;
  errors: string[];
}

/** A browser context whose pages count CSP violations (from their first script on) and errors. */
export async function consoleContext(browser: Browser, options: { width?: number; height?: number } = {}): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: options.width ?? 1280, height: options.height ?? 900 }, locale: 'en-GB', timezoneId: 'Europe/Berlin' });
  // Browser code, as text: this project's TypeScript has no DOM types.
  await context.addInitScript(`
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile + ':' + e.lineNumber));
  `);
  return context;
}

/** Watches a page for CSP violations and errors; call `csp()` before the page closes. */
export function watch(page: Page, problems: { errors: string[] } = { errors: [] }): PageProblems {
  page.on('console', (msg) => {
    // A refused API call (401 while signed out, 404 of a proof) is logged by Chromium as a failed resource: not an error of the page.
    if (msg.type() === 'error' && !/Failed to load resource: the server responded with a status of (401|404|409)/.test(msg.text())) problems.errors.push(msg.text());
  });
  page.on('pageerror', (err) => problems.errors.push(`pageerror: ${err.message}`));
  return {
    errors: problems.errors,
    csp: async () => await page.evaluate<string[]>('window.__csp'),
  };
}

export async function screenshot(page: Page, name: string): Promise<void> {
  if (!SCREENSHOTS) return;
  const dir = path.join(ROOT, 'docs', 'console');
  fs.mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true });
}

/** Signs in through the console's own form: password, then the TOTP code. */
export async function signIn(page: Page, username: string, password: string, otp: string): Promise<void> {
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByLabel('Code from your authenticator app').fill(otp);
  await page.getByRole('button', { name: 'Sign in' }).click();
}
