import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a TypeScript file of this repository as its own Node process. */
export function runTs(file: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Finished> {
  const child = spawnTs(file, args, env);
  return finished(child);
}

export function spawnTs(file: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', file, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export function finished(child: ChildProcess): Promise<Finished> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A child process whose stdout lines are kept, started until one of its log lines said it listens. */
export interface ListeningChild<T> {
  child: ChildProcess;
  /** The parsed line that said so. */
  listening: T;
  /** Every stdout line so far. */
  lines: string[];
  stderr: () => string;
  /** Sends `signal` unless the child has already ended; resolves with the exit code. */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/**
 * Waits until `child` writes the JSON log line whose `msg` is `message` (a server's "listening"
 * line, which carries its port), or fails with its stderr when it exits or `timeoutMs` passes.
 */
export async function untilListening<T>(child: ChildProcess, what: string, message: string, timeoutMs: number): Promise<ListeningChild<T>> {
  const lines: string[] = [];
  let stderr = '';
  let buffered = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const marker = `"msg":${JSON.stringify(message)}`;
  const listening = await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start: ${stderr}`)), timeoutMs);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}: ${stderr}`));
    });
    child.stdout?.on('data', (d: Buffer) => {
      buffered += d.toString();
      const parts = buffered.split('\n');
      buffered = parts.pop() ?? '';
      for (const line of parts) {
        lines.push(line);
        if (!line.includes(marker)) continue;
        clearTimeout(timer);
        resolve(JSON.parse(line) as T);
      }
    });
  });
  return {
    child,
    listening,
    lines,
    stderr: () => stderr,
    stop: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
