import fs from 'node:fs';
import bcrypt from 'bcrypt';
import crypto from 'node:crypto';
import jwt from 'jsonwebtoken';
import { createChainWriter } from '../src/audit/chain-writer.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { createServices } from '../src/runtime.js';
import { createUser } from '../src/users/create-user.js';
import { startGateway } from '../test/helpers/gateway.js';
import type { TestDatabase } from '../test/helpers/postgres.js';
import { sharedSetup } from '../test/helpers/test-gateway.js';
import { benchDatabase, fmt, rate } from './lib.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
/** bcrypt at cost 12 manages only ~10 hashes a second here, so the login phases run longer. */
const LOGIN_SECONDS = Number(process.env.BENCH_LOGIN_SECONDS ?? 15);
const COST = Number(process.env.BENCH_BCRYPT_COST ?? 12); // the production default
const CONCURRENCY = 8;
const PASSWORD = 'benchmark password 123';

async function post(url: string, body: unknown): Promise<Response> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  await res.arrayBuffer();
  return res;
}

/** ES256 vs RS256 with jsonwebtoken: signing happens once per login or refresh, verification in every downstream request. */
function benchAlgorithms(): void {
  console.log('\n## Token algorithms (jsonwebtoken, one core)');
  const payload = { sub: crypto.randomUUID(), sid: crypto.randomUUID(), amr: ['pwd'], roles: ['user'], iss: 'authtrail', aud: 'authtrail-api' };
  const measure = (fn: () => void, ms = 1000): number => {
    let n = 0;
    const end = performance.now() + ms;
    while (performance.now() < end) {
      fn();
      n += 1;
    }
    return n / (ms / 1000);
  };
  for (const alg of ['ES256', 'RS256'] as const) {
    const { privateKey, publicKey } =
      alg === 'ES256' ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }) : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const token = jwt.sign(payload, privateKey, { algorithm: alg, expiresIn: 600 });
    const sign = measure(() => jwt.sign(payload, privateKey, { algorithm: alg, expiresIn: 600 }));
    const verify = measure(() => jwt.verify(token, publicKey, { algorithms: [alg] }));
    console.log(`${alg}  sign ${fmt(sign).padStart(7)}/s   verify ${fmt(verify).padStart(7)}/s   token ${token.length} bytes`);
  }
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/**
 * What the live check of every protected request costs: the median latency of an admin read over
 * HTTP, next to the median of the check's own query (user status and roles, session not revoked)
 * run on the same database in the same run.
 */
async function benchLiveChecks(url: string, services: ReturnType<typeof createServices>): Promise<void> {
  const res = await fetch(`${url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin@example.com', password: PASSWORD }) });
  const token = ((await res.json()) as { access_token: string }).access_token;
  const claims = jwt.decode(token) as { sub: string; sid: string };
  const ROUNDS = 400;
  const request: number[] = [];
  const query: number[] = [];
  for (let k = 0; k < ROUNDS; k++) {
    let start = performance.now();
    const read = await fetch(`${url}/admin/users/${claims.sub}`, { headers: { authorization: `Bearer ${token}` } });
    await read.arrayBuffer();
    if (read.status !== 200) throw new Error(`admin read answered ${read.status}`);
    request.push(performance.now() - start);
    start = performance.now();
    const live = await services.users.findLiveState(claims.sub, claims.sid);
    if (live?.session_live !== true) throw new Error('the admin session is not live');
    query.push(performance.now() - start);
  }
  const [r, q] = [median(request), median(query)];
  console.log(`GET /admin/users/{id}        median ${r.toFixed(2)} ms   (${ROUNDS} sequential requests)`);
  console.log(`live check query alone       median ${q.toFixed(2)} ms   (status, roles, session; same database)`);
  console.log(`ratio live check / request   ${(q / r).toFixed(2)}`);
}

export async function benchLogin(): Promise<void> {
  benchAlgorithms();
  const bench = await benchDatabase();
  const t = { name: '', url: bench.url, db: bench.db } as unknown as TestDatabase;
  const setup = sharedSetup(t, { BCRYPT_COST: String(COST), IP_MAX_FAILURES: '1000000' });
  const config = loadConfig(setup.env);
  const writer = createChainWriter(bench.db, { batchMax: 64, writeTimeoutMs: 10_000 });
  const services = createServices(config, createLogger('silent'), { db: bench.db, writer, redis: undefined });
  const usernames = Array.from({ length: CONCURRENCY * 2 }, (_, i) => `bench-user-${i}@example.com`);
  for (const username of [...usernames, 'locked@example.com', 'admin@example.com']) {
    const roles = username === 'admin@example.com' ? (['admin'] as const) : (['user'] as const);
    await createUser({ users: services.users, passwords: services.passwords, writer, minPasswordLength: 12 }, { username, password: PASSWORD, roles: [...roles] }, {});
  }
  await writer.close();
  const gw = await startGateway({ ...setup.env, LOG_LEVEL: 'warn' });
  try {
    console.log(`\n## Login (gateway process on PostgreSQL + Redis, bcrypt cost ${COST}, ${CONCURRENCY} concurrent clients; ${LOGIN_SECONDS} s for logins, ${SECONDS} s for the rest)`);
    const stored = (await services.users.findByNormalizedUsername(usernames[0]!))!.password_hash.slice('hmac-sha256-bcrypt$'.length);
    const pre = crypto.createHmac('sha256', 'authtrail/password/v1').update(PASSWORD).digest('base64');
    const bare = await rate(CONCURRENCY, LOGIN_SECONDS, () => bcrypt.compare(pre, stored));
    let i = 0;
    const logins = await rate(CONCURRENCY, LOGIN_SECONDS, async () => {
      const res = await post(`${gw.url}/login`, { username: usernames[i++ % usernames.length], password: PASSWORD });
      if (res.status !== 200) throw new Error(`login answered ${res.status}`);
    });
    console.log(`bare bcrypt.compare          ${fmt(bare).padStart(7)}/s`);
    console.log(`successful POST /login       ${fmt(logins).padStart(7)}/s`);
    console.log(`ratio login / bcrypt         ${(logins / bare).toFixed(2)}   (target >= 0.90)`);

    for (let k = 0; k < 5; k++) await post(`${gw.url}/login`, { username: 'locked@example.com', password: 'wrong password here' });
    const health = await rate(CONCURRENCY, SECONDS, () => fetch(`${gw.url}/healthz`).then((r) => r.arrayBuffer()));
    const refused = await rate(CONCURRENCY, SECONDS, async () => {
      const res = await post(`${gw.url}/login`, { username: 'locked@example.com', password: PASSWORD });
      if (res.status !== 429) throw new Error(`locked login answered ${res.status}`);
    });
    console.log(`GET /healthz                 ${fmt(health).padStart(7)}/s`);
    console.log(`refused (locked, audited)    ${fmt(refused).padStart(7)}/s`);
    console.log(`ratio refused / healthz      ${(refused / health).toFixed(2)}`);

    const tokens: string[] = [];
    for (const username of usernames) {
      const res = await fetch(`${gw.url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password: PASSWORD }) });
      tokens.push(((await res.json()) as { refresh_token: string }).refresh_token);
    }
    const refreshes = await rate(usernames.length, SECONDS, async (w) => {
      const res = await fetch(`${gw.url}/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refresh_token: tokens[w] }) });
      if (res.status !== 200) throw new Error(`refresh answered ${res.status}`);
      tokens[w] = ((await res.json()) as { refresh_token: string }).refresh_token;
    });
    console.log(`POST /refresh (rotating)     ${fmt(refreshes).padStart(7)}/s   (${usernames.length} sessions in parallel)`);

    await benchLiveChecks(gw.url, services);
  } finally {
    await gw.stop();
    await bench.drop();
    fs.rmSync(setup.dir, { recursive: true, force: true });
  }
}
