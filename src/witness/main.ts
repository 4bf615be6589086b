import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from '../logger.js';
import { KEY_TYPE_COSIGNATURE_V1, isValidKeyName, verifierKey } from '../audit/note.js';
import { loadWitnessKey } from './key-file.js';
import { createWitnessServer } from './server.js';
import { readStateFile, writeStateFile, type WitnessState } from './state-file.js';
import { createWitness, parseLogList } from './witness.js';

const USAGE = `usage: npm run witness -- --name NAME --key-file FILE --state-file FILE --log [ORIGIN|]VKEY ... [options]

A C2SP tlog-witness: cosigns a log's checkpoints only when they extend the last one it cosigned.
Every flag has an environment variable; flags win.

  --name NAME            WITNESS_NAME        key name of the witness, e.g. witness.example.com/w1
  --key-file FILE        WITNESS_KEY_FILE    its Ed25519 private key, PKCS#8 PEM
  --generate-key         WITNESS_GENERATE_KEY=true   create the key file when missing (mode 0600)
  --state-file FILE      WITNESS_STATE_FILE  its state (latest cosigned size and root per log), JSON
  --allow-empty-state    WITNESS_ALLOW_EMPTY_STATE=true   start with an empty state although the key exists
  --log [ORIGIN|]VKEY    WITNESS_LOGS (comma-separated)   a log it accepts: the log's note verifier key;
                         the origin defaults to the key's name. Repeat for several logs or keys.
  --port PORT            WITNESS_PORT        default 7380
  --host HOST            WITNESS_HOST        default 127.0.0.1
  --print-key            print the verifier key (name+hex+base64) and exit
Logs are JSON lines on stdout (LOG_LEVEL, default info).`;

class UsageError extends Error {}

interface WitnessSettings {
  name: string;
  keyFile: string;
  stateFile: string;
  generateKey: boolean;
  allowEmptyState: boolean;
  logs: string[];
  port: number;
  host: string;
  printKey: boolean;
}

const truthy = (v: string | undefined): boolean => v === 'true' || v === '1';

function readSettings(argv: string[], env: NodeJS.ProcessEnv): WitnessSettings | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      name: { type: 'string' },
      'key-file': { type: 'string' },
      'generate-key': { type: 'boolean' },
      'state-file': { type: 'string' },
      'allow-empty-state': { type: 'boolean' },
      log: { type: 'string', multiple: true },
      port: { type: 'string' },
      host: { type: 'string' },
      'print-key': { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) return undefined;
  const problems: string[] = [];
  const name = values.name ?? env.WITNESS_NAME ?? '';
  if (!isValidKeyName(name)) problems.push('--name / WITNESS_NAME: required, a key name without spaces or "+" (e.g. witness.example.com/w1)');
  const keyFile = values['key-file'] ?? env.WITNESS_KEY_FILE ?? '';
  if (!keyFile) problems.push('--key-file / WITNESS_KEY_FILE: required');
  const stateFile = values['state-file'] ?? env.WITNESS_STATE_FILE ?? '';
  const printKey = values['print-key'] ?? false;
  if (!stateFile && !printKey) problems.push('--state-file / WITNESS_STATE_FILE: required');
  const logs = values.log ?? (env.WITNESS_LOGS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (logs.length === 0 && !printKey) problems.push('--log / WITNESS_LOGS: at least one log verifier key');
  const portText = values.port ?? env.WITNESS_PORT ?? '7380';
  const port = Number(portText);
  if (!/^\d{1,5}$/.test(portText) || port > 65535) problems.push('--port / WITNESS_PORT: a port number');
  if (problems.length > 0) throw new UsageError(problems.join('\n'));
  return {
    name,
    keyFile: path.resolve(keyFile),
    stateFile: stateFile ? path.resolve(stateFile) : '',
    generateKey: values['generate-key'] ?? truthy(env.WITNESS_GENERATE_KEY),
    allowEmptyState: values['allow-empty-state'] ?? truthy(env.WITNESS_ALLOW_EMPTY_STATE),
    logs,
    port,
    host: values.host ?? env.WITNESS_HOST ?? '127.0.0.1',
    printKey,
  };
}

/**
 * A witness that lost its state would cosign whatever comes next, a rollback included. So a
 * missing state file is accepted only together with a key made on this start, or when asked.
 */
async function openState(settings: WitnessSettings, keyGenerated: boolean): Promise<WitnessState> {
  const existing = readStateFile(settings.stateFile);
  if (existing) return existing;
  if (!keyGenerated && !settings.allowEmptyState) {
    throw new UsageError(
      `state file ${settings.stateFile} does not exist but the key does: a witness that forgot its state would cosign a rollback. ` +
        'Restore the file, or pass --allow-empty-state to start over on purpose.',
    );
  }
  const empty: WitnessState = { logs: {} };
  await writeStateFile(settings.stateFile, empty);
  return empty;
}

async function main(): Promise<number> {
  const settings = readSettings(process.argv.slice(2), process.env);
  if (!settings) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const key = loadWitnessKey(settings.keyFile, { generate: settings.generateKey });
  if (settings.printKey) {
    process.stdout.write(`${verifierKey(settings.name, key.publicKey, KEY_TYPE_COSIGNATURE_V1)}\n`);
    return 0;
  }
  const logger = createLogger(process.env.LOG_LEVEL ?? 'info').child({ component: 'witness', witness: settings.name });
  let logs;
  try {
    logs = parseLogList(settings.logs);
  } catch (err) {
    throw new UsageError(`--log / WITNESS_LOGS: ${(err as Error).message}`);
  }
  const state = await openState(settings, key.generated);
  const witness = createWitness({ name: settings.name, key, logs, state, stateFile: settings.stateFile, logger });
  const server = createWitnessServer(witness, logger);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(settings.port, settings.host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  process.stderr.write(`witness verifier key: ${witness.verifierKey}\n`);
  logger.info(
    { port, host: settings.host, verifier_key: witness.verifierKey, logs: [...logs.keys()], key_generated: key.generated },
    'witness listening',
  );

  return new Promise((resolve) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'witness stopping');
      server.close(() => resolve(0));
      server.closeIdleConnections();
      setTimeout(() => resolve(0), 5000).unref();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`witness failed to start: ${err instanceof UsageError ? err.message : (err as Error).message}\n`);
    if (err instanceof UsageError) process.stderr.write(`\n${USAGE}\n`);
    process.exit(2);
  },
);
