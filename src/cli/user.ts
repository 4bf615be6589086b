import readline from 'node:readline';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config.js';
import { createLogger } from '../logger.js';
import { openRuntime } from '../runtime.js';
import { createUserAdmin, type ActorContext } from '../users/user-admin.js';
import { ROLES, type Role } from '../users/user-queries.js';
import { normalizeUsername } from '../users/usernames.js';

const USAGE = `usage: npm run user -- <command> [arguments]

  create <username> [--role user|security|admin]...   password from AUTHTRAIL_PASSWORD or standard input
  disable <username>           revokes every session of the user
  enable <username>
  reset-password <username>    new password from AUTHTRAIL_PASSWORD or standard input; revokes sessions
  reset-mfa <username>         turns MFA off and forgets the secret and recovery codes
  revoke-sessions <username>
  list [--q text]

Works in embedded mode (stop the gateway first: the embedded database serves one process) and
with DATABASE_URL. Every change is recorded in the audit trail with details.via = "cli".`;

/** The password from the environment, or one line of standard input (never from argv, which other users can read). */
async function readPassword(): Promise<string> {
  const fromEnv = process.env.AUTHTRAIL_PASSWORD;
  if (fromEnv) return fromEnv;
  if (process.stdin.isTTY) process.stderr.write('password: ');
  const lines = readline.createInterface({ input: process.stdin, terminal: false });
  for await (const line of lines) {
    lines.close();
    return line;
  }
  throw new Error('no password given (AUTHTRAIL_PASSWORD or standard input)');
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { role: { type: 'string', multiple: true }, q: { type: 'string' }, help: { type: 'boolean' } },
  });
  const [command, username] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  const runtime = await openRuntime(loadConfig(), createLogger('silent'));
  try {
    const admin = createUserAdmin(runtime);
    const actor: ActorContext = { via: 'cli' };
    if (command === 'list') {
      for (const u of await runtime.users.list({ q: values.q, limit: 1000 })) {
        console.log(`${u.id}  ${u.username}  ${u.roles.join(',')}  ${u.status}${u.mfa_enabled ? '  mfa' : ''}`);
      }
      return 0;
    }
    if (!username) throw new Error(`${command} needs a username`);
    if (command === 'create') {
      const roles = (values.role ?? ['user']) as Role[];
      const unknown = roles.filter((r) => !ROLES.includes(r));
      if (unknown.length > 0) throw new Error(`unknown role ${unknown.join(', ')}`);
      const result = await admin.create({ username, password: await readPassword(), roles }, actor);
      if (!result.ok) throw new Error(result.detail);
      console.log(`created ${result.user.username} (${result.user.id}) with roles ${result.user.roles.join(', ')}`);
      return 0;
    }
    const user = await runtime.users.findByNormalizedUsername(normalizeUsername(username));
    if (!user) throw new Error(`no user ${username}`);
    const actions: Record<string, () => Promise<{ ok: true } | { ok: false; detail: string }>> = {
      disable: () => admin.setStatus(user.id, 'disabled', actor),
      enable: () => admin.setStatus(user.id, 'active', actor),
      'reset-mfa': () => admin.resetMfa(user.id, actor),
      'revoke-sessions': () => admin.revokeSessions(user.id, actor),
      'reset-password': async () => admin.resetPassword(user.id, await readPassword(), actor),
    };
    const action = actions[command];
    if (!action) throw new Error(`unknown command ${command}\n${USAGE}`);
    const outcome = await action();
    if (!outcome.ok) throw new Error(outcome.detail);
    console.log(`${command}: done for ${user.username}`);
    return 0;
  } finally {
    await runtime.close();
  }
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof ConfigError ? err.message : `user: ${(err as Error).message}`);
    process.exit(1);
  },
);
