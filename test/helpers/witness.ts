import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { spawnTs, untilListening } from './processes.js';

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
  const started = await untilListening<{ port: number; verifier_key: string }>(child, 'witness', 'witness listening', timeoutMs);
  return {
    child,
    url: `http://127.0.0.1:${started.listening.port}`,
    port: started.listening.port,
    verifierKey: started.listening.verifier_key,
    keyFile,
    stateFile,
    lines: started.lines,
    stderr: started.stderr,
    stop: started.stop,
  };
}
