import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import { spawnTs, untilListening } from './processes.js';

export interface RunningGateway {
  child: ChildProcess;
  url: string;
  /** Every stdout line so far. */
  lines: string[];
  stderr: () => string;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `src/main.ts` as a real process on a free port and waits until it listens. */
export async function startGateway(env: NodeJS.ProcessEnv, timeoutMs = 30_000): Promise<RunningGateway> {
  // The 'listening' log line is how the port is learned, so the level is at least info.
  const child = spawnTs('src/main.ts', [], { PORT: '0', HOST: '127.0.0.1', ...env, LOG_LEVEL: 'info' });
  const started = await untilListening<{ port: number }>(child, 'gateway', 'listening', timeoutMs);
  return { child, url: `http://127.0.0.1:${started.listening.port}`, lines: started.lines, stderr: started.stderr, stop: started.stop };
}

/** Polls `check` every 100 ms until it returns a value, for at most `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** `n` refused logins of unknown users on a gateway process: `n` audit records. */
export async function makeRecords(gw: RunningGateway, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${gw.url}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: `nobody-${crypto.randomBytes(4).toString('hex')}`, password: 'wrong password here' }),
    });
    assert.equal(res.status, 401);
  }
}
