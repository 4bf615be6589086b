import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { spawnTs } from './processes.js';

export interface RunningWitness {
  child: ChildProcess;
  url: string;
  port: number;
  verifierKey: string;
  keyFile: string;
  stateFile: string;
  /** Every stdout line so far (JSON log lines). */
  lines: string[];
  stderr: () => string;
  /** Sends SIGTERM (or `signal`) and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts `npm run witness` (src/witness/main.ts) as its own process with its key and state under
 * `dir`, accepting the logs given as verifier keys, and waits until it listens.
 */
export async function startWitness(options: { dir: string; name: string; logs: string[]; port?: number; args?: string[] }, timeoutMs = 20_000): Promise<RunningWitness> {
  const keyFile = path.join(options.dir, 'witness-ed25519.pem');
  const stateFile = path.join(options.dir, 'state.json');
  const args = [
    '--name', options.name, '--key-file', keyFile, '--state-file', stateFile, '--generate-key', '--port', String(options.port ?? 0),
    ...options.logs.flatMap((l) => ['--log', l]), ...(options.args ?? []),
  ];
  const child = spawnTs('src/witness/main.ts', args, { LOG_LEVEL: 'info' });
  const lines: string[] = [];
  let stderr = '';
  let buffered = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const started = await new Promise<{ port: number; verifier_key: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`witness did not start: ${stderr}`)), timeoutMs);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`witness exited with ${code}: ${stderr}`));
    });
    child.stdout?.on('data', (d: Buffer) => {
      buffered += d.toString();
      const parts = buffered.split('\n');
      buffered = parts.pop() ?? '';
      for (const line of parts) {
        lines.push(line);
        if (!line.includes('"msg":"witness listening"')) continue;
        clearTimeout(timer);
        resolve(JSON.parse(line) as { port: number; verifier_key: string });
      }
    });
  });
  return {
    child,
    url: `http://127.0.0.1:${started.port}`,
    port: started.port,
    verifierKey: started.verifier_key,
    keyFile,
    stateFile,
    lines,
    stderr: () => stderr,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
