import { parseArgs } from 'node:util';
import { loadTrustedKeys } from '../audit/checkpoints.js';
import { verifyChain } from '../audit/verify-chain.js';
import { verifyChainParallel } from '../audit/verify-parallel.js';
import { loadConfig } from '../config.js';
import { openDatabase, trustedKeyFiles } from '../runtime.js';

const USAGE = `usage: npm run audit:verify -- [--public-key FILE]... [--checkpoint-file FILE] [--json]

Verifies the whole audit chain and its signed checkpoints.
Exit status: 0 intact, 1 tampered (first bad seq and problem printed), 2 could not run.`;

/** `npm run audit:verify`: exit 0 when intact, 1 with the first bad seq when not, 2 when it could not run. */
async function run(): Promise<number> {
  const { values } = parseArgs({
    options: {
      'public-key': { type: 'string', multiple: true },
      'checkpoint-file': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const config = loadConfig(process.env, { requireSigningKeys: false });
  // Trust the configured signing key's public half, plus any retired or external keys named.
  const keyFiles = [...trustedKeyFiles(config), ...(values['public-key'] ?? [])];
  const trustedKeys = loadTrustedKeys(keyFiles);
  const db = await openDatabase(config, 'authtrail-verify');
  try {
    const started = performance.now();
    const options = { trustedKeys, checkpointFile: values['checkpoint-file'] ?? config.audit.checkpointFile };
    // On PostgreSQL the chain is cut into ranges checked on every core; PGlite serves one connection.
    const result = config.database.url ? await verifyChainParallel(db, { ...options, url: config.database.url }) : await verifyChain(db, options);
    const seconds = (performance.now() - started) / 1000;
    if (values.json) {
      console.log(JSON.stringify(result));
    } else if (result.valid) {
      console.log(
        `audit chain intact: ${result.checked} records, head seq ${result.head_seq}, ${result.checkpoints_checked} signed checkpoints matched (${seconds.toFixed(2)} s)`,
      );
    } else {
      console.log(`audit chain INVALID at seq ${result.first_invalid_seq}: ${result.problem} — ${result.detail}`);
    }
    return result.valid ? 0 : 1;
  } finally {
    await db.close();
  }
}

run().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`audit:verify could not run: ${(err as Error).message}`);
    process.exit(2);
  },
);
