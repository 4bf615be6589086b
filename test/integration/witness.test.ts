import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { checkpointVerifierKey } from '../../src/audit/checkpoints.js';
import { KEY_TYPE_COSIGNATURE_V1, formatCheckpoint, parseVerifierKey, signNote, verifierKey, verifyCosignature } from '../../src/audit/note.js';
import { storedRoot } from '../../src/audit/tree.js';
import { generateTokenKeyFile } from '../../src/tokens/keys.js';
import { formatAddCheckpoint, SIZE_CONTENT_TYPE } from '../../src/witness/protocol.js';
import { tempSigningKey } from '../helpers/audit.js';
import { makeRecords, startGateway, waitFor, type RunningGateway } from '../helpers/gateway.js';
import { adminQuery, createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { runTs } from '../helpers/processes.js';
import { startWitness, type RunningWitness } from '../helpers/witness.js';

const run = promisify(execFile);
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ORIGIN = 'authtrail.test/witnessed-log';
const ADMIN = 'witness-admin@example.com';
const ADMIN_PASSWORD = 'witness admin password';

describe('witnesses: npm run witness processes cosigning a gateway process\'s checkpoints', () => {
  let t: TestDatabase;
  let dir: string;
  let key: ReturnType<typeof tempSigningKey>;
  let logVkey: string;
  let env: Record<string, string>;
  let checkpointFile: string;
  const witnesses: RunningWitness[] = [];
  const gateways: RunningGateway[] = [];
  let w1: RunningWitness;
  let w2: RunningWitness;

  const db = () => t.db;
  const latestCheckpoint = async (): Promise<number> => (await db().query<{ n: number | null }>('SELECT max(seq) AS n FROM audit_checkpoints')).rows[0]!.n ?? 0;
  const cosignersOf = async (size: number): Promise<string[]> =>
    (await db().query<{ witness: string }>('SELECT witness FROM audit_cosignatures WHERE tree_size = $1 ORDER BY witness', [size])).rows.map((r) => r.witness);
  /** The latest checkpoint once it is larger than `than` and cosigned by every witness named. */
  const cosignedBeyond = (than: number, names: string[]) =>
    waitFor(`a checkpoint beyond ${than} cosigned by ${names.join(', ')}`, async () => {
      const size = await latestCheckpoint();
      if (size <= than) return undefined;
      const cosigners = await cosignersOf(size);
      return names.every((n) => cosigners.includes(n)) ? size : undefined;
    });
  const gateway = async (extra: Record<string, string> = {}) => {
    const gw = await startGateway({ ...env, ...extra });
    gateways.push(gw);
    return gw;
  };
  const witness = async (name: string, options: { logs?: string[]; port?: number; sub?: string } = {}) => {
    const w = await startWitness({ dir: path.join(dir, options.sub ?? name), name, logs: options.logs ?? [logVkey], ...(options.port ? { port: options.port } : {}) });
    witnesses.push(w);
    return w;
  };
  const witnessStatus = async (w: RunningWitness) =>
    (await (await fetch(`${w.url}/`)).json()) as { verifier_key: string; logs: Array<{ origin: string; size: number; refusals: number }> };
  /** A checkpoint note of this log, signed with the gateway's checkpoint key. */
  const signedNote = (size: number, root: Buffer) => signNote(formatCheckpoint({ origin: ORIGIN, size, root }), [{ name: ORIGIN, privateKey: key.privateKey }]);
  const addCheckpoint = (w: RunningWitness, oldSize: number, proof: Buffer[], note: string) =>
    fetch(`${w.url}/add-checkpoint`, { method: 'POST', body: formatAddCheckpoint({ oldSize, proof, checkpoint: note }) });
  const verify = (args: string[]) =>
    runTs('src/cli/audit-verify.ts', ['--database-url', t.url, '--trusted-key', logVkey, '--checkpoint-file', checkpointFile, ...args]);

  before(async () => {
    t = await createTestDatabase();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-witness-'));
    key = tempSigningKey();
    logVkey = checkpointVerifierKey(ORIGIN, key.publicKey);
    const jwtKey = path.join(dir, 'jwt.pem');
    generateTokenKeyFile(jwtKey, 'ES256');
    const mfaKey = path.join(dir, 'mfa.key');
    fs.writeFileSync(mfaKey, crypto.randomBytes(32).toString('base64'));
    checkpointFile = path.join(dir, 'checkpoints.jsonl');
    [w1, w2] = [await witness('w1.test/witness'), await witness('w2.test/witness')];
    env = {
      // Its own Redis keys, so no other run's per-address failures count against these refused logins.
      DATABASE_URL: t.url, REDIS_URL, REDIS_KEY_PREFIX: `authtrail-test-${crypto.randomBytes(6).toString('hex')}`, AUDIT_SIGNING_KEY_FILE: key.file, AUDIT_CHECKPOINT_FILE: checkpointFile,
      AUDIT_CHECKPOINT_EVERY_SECONDS: '1', AUDIT_CHECKPOINT_EVERY_RECORDS: '100000', AUDIT_LOG_ORIGIN: ORIGIN, AUDIT_LOG_PUBLIC: 'true',
      AUDIT_WITNESSES: `${w1.url}|${w1.verifierKey},${w2.url}|${w2.verifierKey}`, AUDIT_WITNESS_TIMEOUT_MS: '3000', AUDIT_WITNESS_RETRIES: '1',
      JWT_KEY_FILES: jwtKey, MFA_ENCRYPTION_KEY_FILE: mfaKey, BCRYPT_COST: '4', ADMIN_REQUIRE_MFA: 'false',
      BOOTSTRAP_ADMIN_USERNAME: ADMIN, BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
    };
  });

  after(async () => {
    for (const gw of gateways) await gw.stop('SIGKILL').catch(() => {});
    for (const w of witnesses) await w.stop('SIGKILL').catch(() => {});
    await t.drop();
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(key.dir, { recursive: true, force: true });
  });

  it('when the gateway signs checkpoints, then both witnesses cosign each one, and the checkpoint, the witnesses, /readyz, /metrics and the security API show it', async () => {
    const gw = await gateway();
    try {
      await makeRecords(gw, 3);
      const first = await cosignedBeyond(0, ['w1.test/witness', 'w2.test/witness']);
      await makeRecords(gw, 4);
      const size = await cosignedBeyond(first, ['w1.test/witness', 'w2.test/witness']);

      const note = await (await fetch(`${gw.url}/audit-log/checkpoint`)).text();
      assert.ok(note.startsWith(`${ORIGIN}\n${size}\n`), note);
      const text = note.slice(0, note.lastIndexOf('\n\n') + 1);
      for (const w of [w1, w2]) {
        const line = note.split('\n').find((l) => l.startsWith(`\u2014 ${parseVerifierKey(w.verifierKey)!.name} `));
        assert.ok(line && verifyCosignature(text, line, parseVerifierKey(w.verifierKey)!), `${w.verifierKey} cosigned the served checkpoint`);
        const status = await witnessStatus(w);
        assert.equal(status.verifier_key, w.verifierKey);
        assert.equal(status.logs.find((l) => l.origin === ORIGIN)?.size, size);
      }

      const ready = (await (await fetch(`${gw.url}/readyz`)).json()) as { status: string; witnesses: { quorum_met: boolean; quorum: number; cosigned: Record<string, number> } };
      assert.equal(ready.status, 'ready');
      assert.deepEqual([ready.witnesses.quorum_met, ready.witnesses.quorum], [true, 2]);
      assert.deepEqual(ready.witnesses.cosigned, { 'w1.test/witness': size, 'w2.test/witness': size });
      const metrics = await (await fetch(`${gw.url}/metrics`)).text();
      assert.match(metrics, new RegExp(`authtrail_witness_cosigned_size\\{witness="w1.test/witness"\\} ${size}\\n`));
      assert.match(metrics, /authtrail_witness_refusals_total\{witness="w2.test\/witness",reason="witness_rollback"\} 0\n/);

      const login = await fetch(`${gw.url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: ADMIN, password: ADMIN_PASSWORD }) });
      const { access_token: token } = (await login.json()) as { access_token: string };
      const api = await fetch(`${gw.url}/admin/audit/witnesses`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(api.status, 200);
      const report = (await api.json()) as { witnesses: Array<{ name: string; cosigned_size: number; last_refusal: unknown }>; quorum: { met: boolean; required: number } };
      assert.deepEqual(report.witnesses.map((w) => [w.name, w.cosigned_size >= size, w.last_refusal]), [['w1.test/witness', true, null], ['w2.test/witness', true, null]]);
      assert.equal(report.quorum.required, 2);
      assert.equal((await fetch(`${gw.url}/admin/audit/witnesses`)).status, 401);
    } finally {
      assert.equal(await gw.stop(), 0, gw.stderr());
    }
  });

  it('when a witness is offered a smaller tree or another root at its size, then it refuses (409 rollback, 400, 422 fork and inconsistent) and its state stays', async () => {
    const size = (await witnessStatus(w1)).logs.find((l) => l.origin === ORIGIN)!.size;
    assert.ok(size > 2);
    const smaller = signedNote(size - 2, await storedRoot(db(), size - 2));
    const rollback = await addCheckpoint(w1, size - 2, [], smaller);
    assert.deepEqual([rollback.status, rollback.headers.get('content-type'), await rollback.text()], [409, SIZE_CONTENT_TYPE, `${size}\n`]);
    assert.equal((await addCheckpoint(w1, size, [], smaller)).status, 400, 'old size above the checkpoint size (tlog-witness: 400)');

    const fork = await addCheckpoint(w1, size, [], signedNote(size, crypto.randomBytes(32)));
    assert.equal(fork.status, 422, 'same size, another root');
    const made = Array.from({ length: 3 }, () => crypto.randomBytes(32));
    const inconsistent = await addCheckpoint(w1, size, made, signedNote(size + 5, crypto.randomBytes(32)));
    assert.equal(inconsistent.status, 422, 'a consistency proof that does not verify');

    const status = (await witnessStatus(w1)).logs.find((l) => l.origin === ORIGIN)!;
    assert.equal(status.size, size);
    assert.ok(status.refusals >= 4, `refusals counted: ${status.refusals}`);
    await waitFor('the alarm log lines', () => Promise.resolve(w1.lines.some((l) => l.includes('"level":50') && l.includes('refused a checkpoint: fork')) || undefined));
  });

  it('when a witness restarts, then its state survives: it refuses what it refused, cosigns what extends it, and will not start without its state', async () => {
    const before = (await witnessStatus(w1)).logs.find((l) => l.origin === ORIGIN)!;
    assert.equal(await w1.stop(), 0);
    w1 = await witness('w1.test/witness', { port: w1.port });
    const after = (await witnessStatus(w1)).logs.find((l) => l.origin === ORIGIN)!;
    assert.deepEqual([after.size, after.refusals], [before.size, before.refusals]);
    const rollback = await addCheckpoint(w1, 1, [], signedNote(1, await storedRoot(db(), 1)));
    assert.deepEqual([rollback.status, await rollback.text()], [409, `${before.size}\n`]);

    const gw = await gateway();
    try {
      await makeRecords(gw, 2);
      await cosignedBeyond(before.size, ['w1.test/witness', 'w2.test/witness']);
    } finally {
      assert.equal(await gw.stop(), 0, gw.stderr());
    }

    const lost = path.join(dir, 'lost-state');
    fs.mkdirSync(lost);
    fs.copyFileSync(w1.keyFile, path.join(lost, 'witness-ed25519.pem'));
    await assert.rejects(startWitness({ dir: lost, name: 'w1.test/witness', logs: [logVkey] }), /forgot its state would cosign a rollback/);
  });

  it('when database, checkpoints and export file are rolled back together, then audit:verify passes without witnesses but exits 1 naming the rollback with --witness or --witness-state, and the gateway records audit.witness_refused', async () => {
    const witnessArgs = ['--witness', w1.url, '--witness-state', w2.stateFile];
    const intact = await verify(witnessArgs);
    assert.equal(intact.code, 0, intact.stdout + intact.stderr);

    // The administrators' snapshot: the whole database, and the export file as it was.
    const dump = path.join(dir, 'snapshot.dump');
    await run('pg_dump', ['--format=custom', `--file=${dump}`, t.url]);
    const savedExport = path.join(dir, 'snapshot.jsonl');
    fs.copyFileSync(checkpointFile, savedExport);
    const snapshotSize = await latestCheckpoint();

    const gw = await gateway();
    let witnessed: number;
    try {
      await makeRecords(gw, 6);
      witnessed = await cosignedBeyond(snapshotSize, ['w1.test/witness', 'w2.test/witness']);
    } finally {
      assert.equal(await gw.stop(), 0, gw.stderr());
    }
    const later = await verify(witnessArgs);
    assert.equal(later.code, 0, `before the rollback it passes: ${later.stdout}${later.stderr}`);

    // Restore the snapshot: log, tiles, checkpoints, cosignatures and the export file, all consistent.
    await adminQuery(`DROP DATABASE ${t.name} WITH (FORCE)`);
    await adminQuery(`CREATE DATABASE ${t.name}`);
    await run('pg_restore', ['--no-owner', `--dbname=${t.url}`, dump]);
    fs.copyFileSync(savedExport, checkpointFile);
    assert.ok((await latestCheckpoint()) < witnessed);

    const blind = await verify([]);
    assert.equal(blind.code, 0, `the chain and its checkpoints cannot see a rollback: ${blind.stdout}${blind.stderr}`);
    for (const args of [['--witness', w1.url], ['--witness-state', w2.stateFile]]) {
      const caught = await verify(args);
      assert.equal(caught.code, 1, caught.stdout + caught.stderr);
      assert.match(caught.stdout, /witness_rollback/);
      assert.match(caught.stdout, new RegExp(`rollback: the database's tree holds \\d+ records, but .* cosigned a checkpoint of this log at ${witnessed}`));
    }
    const asJson = JSON.parse((await verify([...witnessArgs, '--json'])).stdout) as { valid: boolean; problem: string; witnesses: { evidence: Array<{ verdict: string }> } };
    assert.deepEqual([asJson.valid, asJson.problem, asJson.witnesses.evidence.map((e) => e.verdict)], [false, 'witness_rollback', ['witness_rollback', 'witness_rollback']]);

    // The gateway on the restored database: its next checkpoint is smaller than what the witnesses hold.
    const restored = await gateway();
    try {
      await makeRecords(restored, 1);
      const refusals = await waitFor('audit.witness_refused for a rollback from both witnesses', async () => {
        const { rows } = await db().query<{ reason: string; details: { witness: string; witness_size: number; status: number } }>(
          "SELECT reason, details::jsonb AS details FROM audit_log WHERE event_type = 'audit.witness_refused' ORDER BY seq",
        );
        return rows.length >= 2 ? rows : undefined;
      });
      assert.deepEqual(
        refusals.map((r) => [r.reason, r.details.witness, r.details.status, r.details.witness_size]).sort(),
        [['witness_rollback', 'w1.test/witness', 409, witnessed], ['witness_rollback', 'w2.test/witness', 409, witnessed]],
      );
      assert.ok(restored.lines.some((l) => l.includes('"level":50') && l.includes('refused the checkpoint: rollback')));

      // Grown past the witnessed size on the forked history: the proof from the witnessed size fails.
      const size = await latestCheckpoint();
      await makeRecords(restored, witnessed - size + 2);
      await waitFor('audit.witness_refused for an inconsistent proof', async () => {
        const { rows } = await db().query("SELECT 1 FROM audit_log WHERE event_type = 'audit.witness_refused' AND reason = 'witness_inconsistent'");
        return rows.length >= 2 ? true : undefined;
      });
      const metrics = await (await fetch(`${restored.url}/metrics`)).text();
      assert.match(metrics, /authtrail_witness_refusals_total\{witness="w1.test\/witness",reason="witness_inconsistent"\} [1-9]/);
      const ready = (await (await fetch(`${restored.url}/readyz`)).json()) as { status: string; witnesses: { quorum_met: boolean } };
      assert.deepEqual([ready.status, ready.witnesses.quorum_met], ['ready', false], 'refusing witnesses take no login away');
      assert.equal((await fetch(`${restored.url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: ADMIN, password: ADMIN_PASSWORD }) })).status, 200);
    } finally {
      assert.equal(await restored.stop(), 0, restored.stderr());
    }
  });

  it('when the configured witness key does not match the witness, then the gateway refuses its cosignatures and stores none', async () => {
    const t2 = await createTestDatabase();
    const origin = 'authtrail.test/other-log';
    const w3 = await witness('w3.test/witness', { logs: [checkpointVerifierKey(origin, key.publicKey)] });
    const impostor = verifierKey('w3.test/witness', crypto.generateKeyPairSync('ed25519').publicKey, KEY_TYPE_COSIGNATURE_V1);
    const gw = await gateway({ DATABASE_URL: t2.url, AUDIT_LOG_ORIGIN: origin, AUDIT_WITNESSES: `${w3.url}|${impostor}`, AUDIT_CHECKPOINT_FILE: path.join(dir, 'other.jsonl') });
    try {
      await makeRecords(gw, 2);
      await waitFor('the witness cosigned', async () => ((await witnessStatus(w3)).logs.find((l) => l.origin === origin)?.size ?? 0) > 0 || undefined);
      await waitFor('the refused cosignature', () => Promise.resolve(gw.lines.some((l) => l.includes('answered no cosignature that verifies')) || undefined));
      assert.deepEqual((await t2.db.query('SELECT * FROM audit_cosignatures')).rows, []);
      const metrics = await (await fetch(`${gw.url}/metrics`)).text();
      assert.match(metrics, /authtrail_witness_refusals_total\{witness="w3.test\/witness",reason="invalid_cosignature"\} [1-9]/);
      assert.match(metrics, /authtrail_witness_cosigned_size\{witness="w3.test\/witness"\} 0\n/);
    } finally {
      assert.equal(await gw.stop(), 0, gw.stderr());
      await t2.drop();
    }
  });
});
