import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { GENESIS_HASH, chainHash, recordLeafHash, type ChainRecord } from '../../src/audit/canonical.js';
import { FIRST_LINE_PREV, checkpointToLine, checkpointVerifierKey, exportLineHash, signCheckpointNote, type SigningKey } from '../../src/audit/checkpoints.js';
import { sqlTimestamp } from '../../src/audit/clock.js';
import { rootOf } from '../../src/audit/merkle.js';
import { appendLeaves } from '../../src/audit/tiles.js';
import { CANONICAL_SELECT } from '../../src/audit/tree.js';
import { generateTokenKeyFile } from '../../src/tokens/keys.js';
import { normalizeUsername } from '../../src/users/usernames.js';
import { tempSigningKey } from '../helpers/audit.js';
import { makeRecords, startGateway, waitFor } from '../helpers/gateway.js';
import { createTestDatabase, urlFor, type TestDatabase } from '../helpers/postgres.js';
import { runTs } from '../helpers/processes.js';
import { startWitness, type RunningWitness } from '../helpers/witness.js';

/**
 * Every tampering an attacker with superuser access to PostgreSQL (and, where said, the checkpoint
 * key and the export file) can do, each on its own copy (CREATE DATABASE … TEMPLATE) of one state
 * written by a real gateway process and cosigned by two real witness processes; each must make
 * `npm run audit:verify` exit 1 and name the problem. docs/trust-model.md explains the table.
 */

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ORIGIN = 'authtrail.test/tamper-matrix';
const W1 = 'w1.tamper.test/witness';
const W2 = 'w2.tamper.test/witness';

/** A superuser session on `database` with every trigger of the audit tables switched off, as an attacker would. */
async function attacker<T>(database: string, work: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: urlFor(database) });
  await c.connect();
  try {
    for (const table of ['audit_log', 'audit_tiles', 'audit_checkpoints', 'audit_cosignatures']) await c.query(`ALTER TABLE ${table} DISABLE TRIGGER ALL`);
    return await work(c);
  } finally {
    await c.end();
  }
}

async function readRecords(c: pg.Client): Promise<ChainRecord[]> {
  const { rows } = await c.query<ChainRecord>(CANONICAL_SELECT, [0, 1_000_000]);
  return rows.map((r) => ({ ...r, seq: Number(r.seq) }));
}

/** Moves every row from `seq` on by `by` (through a far offset, so the primary key never collides). */
async function shiftSeq(c: pg.Client, from: number, by: number): Promise<void> {
  await c.query('UPDATE audit_log SET seq = seq + 1000000 WHERE seq >= $1', [from]);
  await c.query('UPDATE audit_log SET seq = seq - 1000000 + $2 WHERE seq >= $1', [1000000 + from, by]);
}

interface Rewrite {
  /** The first seq whose row is replaced. */
  from: number;
  /** Changes the records (seq is renumbered afterwards by position). */
  edit: (records: ChainRecord[]) => ChainRecord[];
  /** Recompute and replace every tile from the new records. */
  retile?: boolean;
  /** Re-sign every checkpoint note with this key, drop the cosignatures that no longer verify, and write a fresh export file. */
  resign?: { key: SigningKey; file: string };
}

/**
 * The attacker's rewrite with the project's own public encoders: records re-hashed from genesis
 * (canonical.ts), rows from `from` on replaced, optionally the tiles (tiles.ts) and the checkpoint
 * notes (merkle.ts roots, checkpoints.ts/note.ts signing) and the export file's line chain.
 */
async function rewrite(c: pg.Client, plan: Rewrite): Promise<void> {
  const records = plan.edit((await readRecords(c)).map((r) => ({ ...r }))).map((r, i) => ({ ...r, seq: i + 1 }));
  const hashes: Buffer[] = [];
  let prev = GENESIS_HASH;
  for (const r of records) hashes.push((prev = chainHash(prev, r)));
  await c.query('DELETE FROM audit_log WHERE seq >= $1', [plan.from]);
  for (const r of records.slice(plan.from - 1)) {
    await c.query(
      `INSERT INTO audit_log (seq, event_id, occurred_at, event_type, outcome, reason, username, user_id, ip, user_agent, device_id, mfa_method,
                              session_id, request_id, actor_id, details, prev_hash, hash, account)
       VALUES ($1, $2, $3::timestamptz, $4, $5, $6, $7, $8, $9::inet, $10, $11, $12, $13, $14, $15, $16::json, $17, $18, $19)`,
      [r.seq, r.event_id, r.occurred_at, r.event_type, r.outcome, r.reason, r.username, r.user_id, r.ip, r.user_agent, r.device_id, r.mfa_method,
        r.session_id, r.request_id, r.actor_id, r.details, r.seq === 1 ? GENESIS_HASH : hashes[r.seq - 2], hashes[r.seq - 1], r.username === null ? null : normalizeUsername(r.username)],
    );
  }
  const leaves = records.map((r) => recordLeafHash(r));
  if (plan.retile || plan.resign) {
    const tiles = await appendLeaves(0, leaves, () => Promise.reject(new Error('a tree grown from size 0 reads no tile')));
    await c.query('DELETE FROM audit_tiles');
    for (const tile of tiles) await c.query('INSERT INTO audit_tiles (level, idx, hashes) VALUES ($1, $2, $3)', [tile.level, tile.index, tile.data]);
  }
  if (plan.resign) {
    const { key, file } = plan.resign;
    const { rows } = await c.query<{ seq: string; signed_at: string }>(`SELECT seq, ${sqlTimestamp('signed_at')} AS signed_at FROM audit_checkpoints WHERE note IS NOT NULL ORDER BY seq`);
    let prevLine = FIRST_LINE_PREV;
    const lines: string[] = [];
    for (const row of rows) {
      const size = Number(row.seq);
      const cp = signCheckpointNote(key, ORIGIN, { size, root: rootOf(leaves.slice(0, size)), chainHead: hashes[size - 1]! }, row.signed_at);
      await c.query('UPDATE audit_checkpoints SET hash = $2, root_hash = $3, note = $4, signature = $5, key_id = $6 WHERE seq = $1', [size, cp.hash, cp.root, cp.note, cp.signature, cp.keyId]);
      const line = checkpointToLine(cp, prevLine);
      lines.push(line);
      prevLine = exportLineHash(line);
    }
    await c.query('DELETE FROM audit_cosignatures');
    fs.writeFileSync(file, lines.map((l) => `${l}\n`).join(''));
  }
}

interface VerifyOutput {
  code: number | null;
  problem?: string;
  first_invalid_seq?: number;
  /** Which check's result holds the reported problem. */
  caughtBy?: string;
  raw: string;
}

describe('tamper matrix: a real gateway, two witness processes, every tampering caught by npm run audit:verify', { concurrency: 2 }, () => {
  let base: TestDatabase;
  let snapshot: TestDatabase;
  let dir: string;
  let key: ReturnType<typeof tempSigningKey>;
  let otherKey: ReturnType<typeof tempSigningKey>;
  let logVkey: string;
  let exportFile: string;
  let snapshotExport: string;
  let w1: RunningWitness;
  let w2: RunningWitness;
  /** Records in the base state, and the largest size both witnesses cosigned. */
  let size = 0;
  let cosigned = 0;
  let snapshotSize = 0;
  const copies: TestDatabase[] = [];
  const table: Array<[string, string]> = [];
  let copying: Promise<unknown> = Promise.resolve();
  const started = Date.now();

  const witnessSize = async (w: RunningWitness): Promise<number> =>
    ((await (await fetch(`${w.url}/`)).json()) as { logs: Array<{ origin: string; size: number }> }).logs.find((l) => l.origin === ORIGIN)?.size ?? 0;

  /** Runs the gateway until `n` more records are written and both witnesses cosigned a checkpoint beyond `than`; returns that size. */
  async function gatewayRound(env: Record<string, string>, n: number, than: number): Promise<number> {
    const gw = await startGateway(env);
    try {
      await makeRecords(gw, n);
      return await waitFor('a checkpoint cosigned by both witnesses', async () => {
        const [a, b] = [await witnessSize(w1), await witnessSize(w2)];
        return Math.min(a, b) > than ? Math.min(a, b) : undefined;
      }, 20_000);
    } finally {
      assert.equal(await gw.stop(), 0, gw.stderr());
    }
  }

  /** A copy of the base state (or of the snapshot) and of its export file; copies are made one at a time. */
  async function copyOf(source: TestDatabase, sourceExport: string): Promise<{ copy: TestDatabase; file: string }> {
    const made = copying.then(() => createTestDatabase({ template: source.name }));
    copying = made.catch(() => {});
    const copy = await made;
    copies.push(copy);
    const file = path.join(dir, `${copy.name}.jsonl`);
    fs.copyFileSync(sourceExport, file);
    return { copy, file };
  }

  async function verify(copy: TestDatabase, file: string, extra: string[] = []): Promise<VerifyOutput> {
    const out = await runTs('src/cli/audit-verify.ts', ['--database-url', copy.url, '--trusted-key', logVkey, '--checkpoint-file', file, '--json', ...extra]);
    const raw = out.stdout + out.stderr;
    if (out.code === 2) return { code: out.code, raw };
    const json = JSON.parse(out.stdout) as { problem?: string; first_invalid_seq?: number; tree: { problem?: string }; export?: { problem?: string }; witnesses?: { problem?: string } };
    const caughtBy =
      json.problem === undefined ? undefined
        : json.witnesses?.problem === json.problem ? 'witnesses'
          : json.export?.problem === json.problem ? 'export file'
            : json.tree.problem === json.problem ? 'Merkle tree'
              : /^checkpoint_/.test(json.problem) || json.problem === 'truncated' ? 'chain vs signed checkpoints' : 'hash chain';
    return { code: out.code, raw, ...(json.problem ? { problem: json.problem } : {}), ...(json.first_invalid_seq ? { first_invalid_seq: json.first_invalid_seq } : {}), ...(caughtBy ? { caughtBy } : {}) };
  }

  function caught(name: string, result: VerifyOutput, problems: readonly string[]): void {
    assert.equal(result.code, 1, `${name}: ${result.raw}`);
    assert.ok(problems.includes(result.problem!), `${name}: ${result.problem} not one of ${problems.join(', ')}: ${result.raw}`);
    table.push([name, `${result.problem} at seq ${result.first_invalid_seq} (${result.caughtBy})`]);
  }

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-tamper-matrix-'));
    key = tempSigningKey();
    otherKey = tempSigningKey();
    logVkey = checkpointVerifierKey(ORIGIN, key.publicKey);
    base = await createTestDatabase();
    await base.db.close();
    const jwtKey = path.join(dir, 'jwt.pem');
    generateTokenKeyFile(jwtKey, 'ES256');
    const mfaKey = path.join(dir, 'mfa.key');
    fs.writeFileSync(mfaKey, crypto.randomBytes(32).toString('base64'));
    exportFile = path.join(dir, 'checkpoints.jsonl');
    [w1, w2] = await Promise.all([
      startWitness({ dir: path.join(dir, 'w1'), name: W1, logs: [logVkey] }),
      startWitness({ dir: path.join(dir, 'w2'), name: W2, logs: [logVkey] }),
    ]);
    const env = {
      DATABASE_URL: base.url, REDIS_URL, REDIS_KEY_PREFIX: `authtrail-test-${crypto.randomBytes(6).toString('hex')}`, AUDIT_SIGNING_KEY_FILE: key.file, AUDIT_CHECKPOINT_FILE: exportFile,
      AUDIT_CHECKPOINT_EVERY_SECONDS: '1', AUDIT_CHECKPOINT_EVERY_RECORDS: '4', AUDIT_LOG_ORIGIN: ORIGIN,
      AUDIT_WITNESSES: `${w1.url}|${w1.verifierKey},${w2.url}|${w2.verifierKey}`, AUDIT_WITNESS_TIMEOUT_MS: '3000', AUDIT_WITNESS_RETRIES: '1',
      JWT_KEY_FILES: jwtKey, MFA_ENCRYPTION_KEY_FILE: mfaKey, BCRYPT_COST: '4', ADMIN_REQUIRE_MFA: 'false',
    };
    // The state the administrators will later restore: a database copy and the export file as they were.
    snapshotSize = await gatewayRound(env, 6, 0);
    snapshot = await createTestDatabase({ template: base.name });
    snapshotExport = path.join(dir, 'snapshot.jsonl');
    fs.copyFileSync(exportFile, snapshotExport);
    cosigned = await gatewayRound(env, 10, snapshotSize);
    size = await attacker(base.name, async (c) => Number((await c.query<{ n: string }>('SELECT max(seq) AS n FROM audit_log')).rows[0]!.n));
    assert.ok(cosigned > snapshotSize && size >= cosigned && size >= 16, `size ${size}, cosigned ${cosigned}, snapshot ${snapshotSize}`);
    // CREATE DATABASE … TEMPLATE needs the source idle: attacker() sessions end before any copy.
  });

  after(async () => {
    for (const w of [w1, w2]) await w?.stop('SIGKILL').catch(() => {});
    await Promise.all(copies.map((c) => c.drop()));
    await snapshot?.drop();
    await base?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
    for (const k of [key, otherKey]) if (k) fs.rmSync(k.dir, { recursive: true, force: true });
    const width = Math.max(...table.map(([n]) => n.length));
    console.log(`\ntamper matrix (${((Date.now() - started) / 1000).toFixed(1)} s):\n${table.map(([n, by]) => `  ${n.padEnd(width)}  ${by}`).join('\n')}`);
  });

  it('the untouched copy verifies, with both witnesses', async () => {
    const { copy, file } = await copyOf(base, exportFile);
    const result = await verify(copy, file, ['--witness', `${w1.url}|${w1.verifierKey}`, '--witness-state', w2.stateFile]);
    assert.equal(result.code, 0, result.raw);
  });

  const cases: Array<{ name: string; problems: string[]; tamper: (c: pg.Client, file: string) => Promise<void> }> = [
    {
      name: 'edit a field',
      problems: ['hash_mismatch'],
      tamper: async (c) => void (await c.query("UPDATE audit_log SET username = 'someone-else', account = 'someone-else' WHERE seq = 5")),
    },
    {
      name: 'edit and re-hash everything after',
      problems: ['checkpoint_mismatch'],
      tamper: (c) => rewrite(c, { from: 5, edit: (rs) => rs.map((r) => (r.seq === 5 ? { ...r, username: 'someone-else' } : r)) }),
    },
    {
      name: 'delete a middle record',
      problems: ['seq_gap'],
      tamper: async (c) => void (await c.query('DELETE FROM audit_log WHERE seq = 7')),
    },
    {
      name: 'delete and renumber',
      problems: ['prev_hash_mismatch'],
      tamper: async (c) => {
        await c.query('DELETE FROM audit_log WHERE seq = 7');
        await shiftSeq(c, 8, -1);
      },
    },
    {
      name: 'truncate the tail',
      problems: ['truncated'],
      tamper: async (c) => void (await c.query('DELETE FROM audit_log WHERE seq > 6')),
    },
    {
      name: 'replace the whole chain, re-signed with another key',
      problems: ['checkpoint_unknown_key'],
      tamper: (c, file) => rewrite(c, { from: 1, edit: (rs) => rs.map((r) => ({ ...r, username: r.username && `x-${r.username}` })), resign: { key: otherKey, file } }),
    },
    {
      name: 'swap two records',
      problems: ['prev_hash_mismatch'],
      tamper: async (c) => {
        await c.query('UPDATE audit_log SET seq = 1000000 WHERE seq = 5');
        await c.query('UPDATE audit_log SET seq = 5 WHERE seq = 9');
        await c.query('UPDATE audit_log SET seq = 9 WHERE seq = 1000000');
      },
    },
    {
      name: 'back-dated insert, renumbered, re-hashed and re-tiled',
      problems: ['checkpoint_mismatch'],
      tamper: (c) =>
        rewrite(c, {
          from: 4,
          retile: true,
          edit: (rs) => [
            ...rs.slice(0, 3),
            { ...rs[3]!, event_id: crypto.randomUUID(), occurred_at: '2020-01-01T00:00:00.000000Z', event_type: 'login.succeeded', outcome: 'success', reason: null, username: 'alibi@example.com' },
            ...rs.slice(3),
          ],
        }),
    },
    {
      name: 'checkpoints re-signed with another key',
      problems: ['checkpoint_unknown_key'],
      tamper: (c, file) => rewrite(c, { from: size + 1, edit: (rs) => rs, resign: { key: otherKey, file } }),
    },
  ];

  for (const tc of cases) {
    it(`${tc.name}: audit:verify exits 1`, async () => {
      const { copy, file } = await copyOf(base, exportFile);
      await attacker(copy.name, (c) => tc.tamper(c, file));
      caught(tc.name, await verify(copy, file), tc.problems);
    });
  }

  it('fork: rewritten from seq 3, re-hashed, re-tiled and re-signed with the REAL key, export file rewritten: only the witnesses catch it', async () => {
    const { copy, file } = await copyOf(base, exportFile);
    await attacker(copy.name, (c) => rewrite(c, { from: 3, edit: (rs) => rs.map((r) => (r.seq >= 3 ? { ...r, username: `forged-${r.seq}@example.com` } : r)), resign: { key, file } }));
    const blind = await verify(copy, file);
    assert.equal(blind.code, 0, `without witnesses the forged history is self-consistent: ${blind.raw}`);
    for (const args of [['--witness', `${w1.url}|${w1.verifierKey}`], ['--witness-state', w2.stateFile]]) {
      caught(`fork with the real key (${args[0]})`, await verify(copy, file, args), ['witness_inconsistent']);
    }
  });

  it('roll back database, checkpoints and export file together: only the witnesses catch it', async () => {
    const { copy, file } = await copyOf(snapshot, snapshotExport);
    const blind = await verify(copy, file);
    assert.equal(blind.code, 0, `the restored state is self-consistent: ${blind.raw}`);
    for (const args of [['--witness', `${w1.url}|${w1.verifierKey}`], ['--witness-state', w2.stateFile]]) {
      const result = await verify(copy, file, args);
      caught(`rollback of everything (${args[0]})`, result, ['witness_rollback']);
      assert.ok(result.first_invalid_seq! > snapshotSize && result.first_invalid_seq! <= cosigned, result.raw);
    }
  });
});
