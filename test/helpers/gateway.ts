import type { ChildProcess } from 'node:child_process';
import { spawnTs } from './processes.js';

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
  const lines: string[] = [];
  let stderr = '';
  let buffered = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start: ${stderr}`)), timeoutMs);
    void exited.then((code) => reject(new Error(`gateway exited with ${code}: ${stderr}`)));
    child.stdout?.on('data', (d: Buffer) => {
      buffered += d.toString();
      const parts = buffered.split('\n');
      buffered = parts.pop() ?? '';
      for (const line of parts) {
        lines.push(line);
        if (!line.includes('"msg":"listening"')) continue;
        const entry = JSON.parse(line) as { port?: number };
        clearTimeout(timer);
        resolve(entry.port!);
      }
    });
  });
  return {
    child,
    url: `http://127.0.0.1:${port}`,
    lines,
    stderr: () => stderr,
    async stop(signal = 'SIGTERM') {
      child.kill(signal);
      return exited;
    },
  };
}
