import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { loadTrustedKeys } from '../../src/audit/checkpoints.js';
import { verifyChain } from '../../src/audit/verify-chain.js';
import { AUDIT_CHAIN_LOCK } from '../../src/db/advisory-locks.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { createTestGateway, sharedSetup, uniqueName, type SharedSetup, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';
/** What "a stopped peer must not hold the cluster for more than about 2 s" allows a login on a healthy peer. */
const HEALTHY_LOGIN_BOUND_MS = 2500;

async function post(url: string, body?: unknown): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  const res = await fetch(url, {
    method: 'POST',
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(20_000),
  });
  await res.arrayBuffer();
  return { status: res.status, ms: Math.round(performance.now() - started) };
}

/** The backend holding the chain's advisory lock in this database, if any, and its state. */
async function chainLockHolder(t: TestDatabase): Promise<{ pid: number; state: string } | undefined> {
  const { rows } = await t.db.query<{ pid: number; state: string }>(
    `SELECT a.pid, a.state FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.classid = $1::int8::oid AND l.objid = $2::int8::oid AND l.granted
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [...AUDIT_CHAIN_LOCK],
  );
  return rows[0];
}

/** Keeps `concurrency` requests in flight against `url`: each `POST /logout` appends one audit record. */
function driveLoad(url: string, concurrency: number): { stop(): Promise<number> } {
  let running = true;
  let done = 0;
  const aborter = new AbortController();
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) {
      try {
        const res = await fetch(`${url}/logout`, { method: 'POST', signal: aborter.signal });
        await res.arrayBuffer();
        done += 1;
      } catch {
        // aborted at the end, or refused while the process is stopped
      }
    }
  });
  return {
    async stop() {
      running = false;
      aborter.abort();
      await Promise.all(loops);
      return done;
    },
  };
}

/**
 * Stops `gw` (SIGSTOP) at a moment its audit writer holds the chain's advisory lock: polls the lock
 * while the gateway is busy writing, stops it, and keeps it stopped only if the lock is still held
 * by a session that is now idle in its transaction (that is, by the stopped process). Only the
 * writer's slow path (the head moved: the other gateway wrote) holds the lock across round trips;
 * its usual append is one statement the server commits on its own.
 */
async function stopWhileHoldingChainLock(gw: RunningGateway, t: TestDatabase): Promise<number> {
  const until = Date.now() + 20_000;
  for (let tries = 1; Date.now() < until; tries++) {
    if (!(await chainLockHolder(t))) continue;
    gw.child.kill('SIGSTOP');
    await delay(100);
    const holder = await chainLockHolder(t);
    if (holder?.state.startsWith('idle in transaction')) return tries;
    gw.child.kill('SIGCONT');
    await delay(20);
  }
  throw new Error('could not stop the gateway while its writer held the chain lock');
}

describe('a gateway stopped while it holds the audit chain lock', () => {
  let t: TestDatabase;
  let setup: SharedSetup;
  let admin: TestGateway;
  let gateways: RunningGateway[] = [];
  before(async () => {
    t = await createTestDatabase();
    admin = await createTestGateway({ t });
    setup = sharedSetup(t);
    gateways = await Promise.all([startGateway(setup.env), startGateway(setup.env)]);
  });
  after(async () => {
    for (const g of gateways) g.child.kill('SIGCONT');
    await Promise.all(gateways.map((g) => g.stop('SIGKILL')));
    await admin.close();
    await t.drop();
    fs.rmSync(setup.dir, { recursive: true, force: true });
  });

  it('when one of two gateways is SIGSTOPped mid-transaction, twice, then logins on the other complete within 2.5 s each, the stopped one recovers after SIGCONT, and the chain verifies', async () => {
    const [stopped, healthy] = gateways as [RunningGateway, RunningGateway];
    const username = uniqueName('peer');
    await admin.addUser(username, PASSWORD);
    assert.equal((await post(`${healthy.url}/login`, { username, password: PASSWORD })).status, 200);

    const timings: number[] = [];
    for (let round = 0; round < 2; round++) {
      const load = driveLoad(stopped.url, 8);
      // Writes from the other gateway too, so the stopped one's batches keep finding the head
      // moved and take the slow path, the one that holds the lock across round trips.
      const peerLoad = driveLoad(healthy.url, 4);
      let tries: number;
      try {
        await delay(200);
        tries = await stopWhileHoldingChainLock(stopped, t);
      } catch (err) {
        await load.stop();
        throw err;
      } finally {
        await peerLoad.stop();
      }
      try {
        const logins: Array<{ status: number; ms: number }> = [];
        for (let i = 0; i < 3; i++) logins.push(await post(`${healthy.url}/login`, { username, password: PASSWORD }));
        console.log(`round ${round + 1}: stopped after ${tries} tries; logins on the healthy peer: ${logins.map((l) => `${l.status}/${l.ms}ms`).join(', ')}`);
        timings.push(...logins.map((l) => l.ms));
        for (const l of logins) {
          assert.equal(l.status, 200, `a login on the healthy peer answered ${l.status} after ${l.ms} ms`);
          assert.ok(l.ms <= HEALTHY_LOGIN_BOUND_MS, `a login on the healthy peer took ${l.ms} ms while the other was stopped`);
        }
      } finally {
        stopped.child.kill('SIGCONT');
        await load.stop();
      }
      // The stopped writer lost its session; it recovers: its next records commit.
      let recovered = false;
      for (let i = 0; i < 20 && !recovered; i++) {
        recovered = (await post(`${stopped.url}/logout`)).status === 204;
        if (!recovered) await delay(250);
      }
      assert.ok(recovered, 'the stopped gateway writes again after SIGCONT');
    }
    console.log(`healthy-peer login latencies while the other was stopped: max ${Math.max(...timings)} ms`);

    const verified = await verifyChain(t.db, { trustedKeys: loadTrustedKeys([setup.env.AUDIT_SIGNING_KEY_FILE!]) });
    assert.equal(verified.valid, true, JSON.stringify(verified));
    const { rows } = await t.db.query<{ n: number; max: number }>('SELECT count(*)::int AS n, max(seq) AS max FROM audit_log');
    assert.equal(rows[0]!.n, rows[0]!.max, 'seq is dense: no fork, no gap');
  });
});
