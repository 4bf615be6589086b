import crypto from 'node:crypto';
import type { Express } from 'express';
import express from 'express';
import jwt from 'jsonwebtoken';
import { findEvents, summarizeLogins } from '../src/audit/audit-queries.js';
import { issueAccessToken } from '../src/tokens/access-tokens.js';
import { createKeyStore, readTokenKey, generateTokenKeyFile } from '../src/tokens/keys.js';
import { createVerifier } from '../src/verifier/index.js';
import { benchDatabase, fmt, rate, seedLoginRecords } from './lib.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type http from 'node:http';

const ROWS = Number(process.env.BENCH_AUDIT_ROWS ?? 1_000_000);
const SAMPLES = 50;

function percentiles(samples: number[]): { p50: number; p95: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: sorted[Math.floor(sorted.length * 0.5)]!, p95: sorted[Math.floor(sorted.length * 0.95)]! };
}

async function latency(run: (i: number) => Promise<unknown>): Promise<{ p50: number; p95: number }> {
  await run(0); // warm
  const samples: number[] = [];
  for (let i = 1; i <= SAMPLES; i++) {
    const started = performance.now();
    await run(i);
    samples.push(performance.now() - started);
  }
  return percentiles(samples);
}

async function benchQueries(): Promise<void> {
  const bench = await benchDatabase();
  try {
    const seedStart = performance.now();
    await seedLoginRecords(bench.db, ROWS, `timestamptz '2026-10-01 00:00:00+00'`);
    console.log(`\n## History queries (${fmt(ROWS)} audit records seeded in ${((performance.now() - seedStart) / 1000).toFixed(0)} s; ${SAMPLES} queries each, newest 100)`);
    const report = (name: string, r: { p50: number; p95: number }) =>
      console.log(`${name.padEnd(30)} p50 ${r.p50.toFixed(1).padStart(6)} ms   p95 ${r.p95.toFixed(1).padStart(6)} ms   (target p95 < 50 ms)`);
    const page = { limit: 100 };
    report('by username', await latency((i) => findEvents(bench.db, { username: `USER${(i * 397) % 20000}@example.com` }, page)));
    report('by IP', await latency((i) => findEvents(bench.db, { ip: { kind: 'address', value: `10.${i % 256}.${(i * 7) % 256}.${(i % 250) + 1}` } }, page)));
    report('by CIDR /16', await latency((i) => findEvents(bench.db, { ip: { kind: 'block', value: `10.${(i * 13) % 256}.0.0/16` } }, page)));
    report('by time range (1 h)', await latency((i) => {
      const from = new Date(Date.parse('2026-10-02T00:00:00Z') + i * 11 * 3600_000);
      return findEvents(bench.db, { from: from.toISOString(), to: new Date(from.getTime() + 3600_000).toISOString() }, page);
    }));
    report('by device + outcome', await latency((i) => findEvents(bench.db, { deviceId: `device-${(i * 31) % 50000}`, outcome: 'failure' }, page)));
    const summary = await latency(() => summarizeLogins(bench.db, { from: '2026-10-15T00:00:00Z', to: '2026-10-16T00:00:00Z', bucket: 'hour', top: 10 }));
    console.log(`${'summary, 24 h'.padEnd(30)} p50 ${summary.p50.toFixed(1).padStart(6)} ms   p95 ${summary.p95.toFixed(1).padStart(6)} ms`);
  } finally {
    await bench.drop();
  }
}

/** The verifier middleware in a real Express app over HTTP, against bare jsonwebtoken.verify in the same run. */
export async function benchVerifier(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-bench-'));
  const file = path.join(dir, 'jwt.pem');
  generateTokenKeyFile(file, 'ES256');
  const key = readTokenKey(file);
  const keys = createKeyStore([key], key);
  const token = issueAccessToken(keys, { issuer: 'authtrail', audience: 'authtrail-api', ttlSeconds: 600 }, { sub: crypto.randomUUID(), sid: crypto.randomUUID(), amr: ['pwd'], roles: ['user'], authTime: Math.floor(Date.now() / 1000) }).token;
  const jwksApp: Express = express();
  jwksApp.get('/jwks', (_req, res) => res.json(keys.jwks()));
  const jwksServer: http.Server = await new Promise((resolve) => {
    const s = jwksApp.listen(0, '127.0.0.1', () => resolve(s));
  });
  const port = (jwksServer.address() as { port: number }).port;
  const verifier = createVerifier({ jwksUrl: `http://127.0.0.1:${port}/jwks`, issuer: 'authtrail', audience: 'authtrail-api' });
  await verifier.verify(token);
  const middleware = verifier.middleware();
  const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
  const bare = await rate(1, SECONDS, () => Promise.resolve(jwt.verify(token, key.publicKey, { algorithms: ['ES256'], issuer: 'authtrail', audience: 'authtrail-api' })));
  // The middleware as Express calls it: request in, claims set, next() called.
  const req = { get: (name: string) => (name.toLowerCase() === 'authorization' ? `Bearer ${token}` : undefined) } as unknown as express.Request;
  const res = {} as express.Response;
  const viaMiddleware = await rate(1, SECONDS, () => new Promise<void>((resolve, reject) => middleware(req, res, (err?: unknown) => (err ? reject(err instanceof Error ? err : new Error('middleware failed')) : resolve()))));
  console.log(`\n## Downstream verifier (ES256, one core, ${SECONDS} s each)`);
  console.log(`bare jsonwebtoken.verify      ${fmt(bare).padStart(9)}/s`);
  console.log(`verifier middleware           ${fmt(viaMiddleware).padStart(9)}/s`);
  console.log(`ratio middleware / bare       ${(viaMiddleware / bare).toFixed(2)}   (target >= 0.80)`);
  jwksServer.close();
  fs.rmSync(dir, { recursive: true, force: true });
}

export async function benchSecurity(): Promise<void> {
  await benchVerifier();
  await benchQueries();
}
