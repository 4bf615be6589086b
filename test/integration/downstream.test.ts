import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import jwt from 'jsonwebtoken';
import { generateTokenKeyFile, readTokenKey } from '../../src/tokens/keys.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { ROOT } from '../helpers/processes.js';
import { createTestGateway, sharedSetup, uniqueName, type SharedSetup, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';

/** The example service of examples/downstream, as its own process, importing `authtrail/verifier` by package name. */
async function startDownstream(jwksUrl: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', 'examples/downstream/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, PORT: '0', AUTHTRAIL_JWKS_URL: jwksUrl, JWKS_MIN_REFETCH_MS: '1500' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`downstream exited ${code}: ${stderr}`)));
    child.stdout.on('data', (d: Buffer) => {
      const line = d.toString().split('\n').find((l) => l.includes('"listening"'));
      if (line) resolve((JSON.parse(line) as { port: number }).port);
    });
  });
  return { url: `http://127.0.0.1:${port}`, child };
}

describe('downstream service with authtrail/verifier (examples/downstream)', () => {
  let t: TestDatabase;
  let admin: TestGateway;
  let setup: SharedSetup;
  let gateway: RunningGateway;
  let downstream: { url: string; child: ChildProcess };
  let username: string;
  const keyB = () => path.join(setup.dir, 'jwt-b.pem');

  const login = async (gw: RunningGateway) => {
    const res = await fetch(`${gw.url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password: PASSWORD }) });
    assert.equal(res.status, 200);
    return ((await res.json()) as { access_token: string }).access_token;
  };
  const whoami = (token: string) => fetch(`${downstream.url}/whoami`, { headers: { authorization: `Bearer ${token}` } });
  const jwksFetches = async () => ((await (await fetch(`${downstream.url}/healthz`)).json()) as { jwks_fetches: number }).jwks_fetches;

  before(async () => {
    t = await createTestDatabase();
    admin = await createTestGateway({ t });
    setup = sharedSetup(t);
    username = uniqueName('downstream');
    await admin.addUser(username, PASSWORD, ['security']);
    gateway = await startGateway(setup.env);
    downstream = await startDownstream(`${gateway.url}/.well-known/jwks.json`);
  });
  after(async () => {
    downstream.child.kill('SIGTERM');
    await gateway.stop();
    await admin.close();
    await t.drop();
    fs.rmSync(setup.dir, { recursive: true, force: true });
  });

  it('when a real token is presented, then the downstream service accepts it and sees the claims', async () => {
    const res = await whoami(await login(gateway));
    assert.equal(res.status, 200);
    assert.deepEqual(((await res.json()) as { roles: string[] }).roles, ['security']);
  });

  it('when forged tokens are presented, then each is refused with 401 and WWW-Authenticate Bearer error="invalid_token"', async () => {
    const token = await login(gateway);
    const [h, p] = token.split('.') as [string, string, string];
    const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>;
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const key = readTokenKey(setup.env.JWT_KEY_FILES!);
    const pem = key.publicKey.export({ format: 'pem', type: 'spki' }) as string;
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const sign = (payload: Record<string, unknown>, hdr: Record<string, unknown> = {}) =>
      jwt.sign(payload, key.privateKey, { algorithm: 'ES256', header: { alg: 'ES256', typ: 'at+jwt', kid: key.kid, ...hdr } });
    const now = Math.floor(Date.now() / 1000);
    const hsHeader = b64({ ...header, alg: 'HS256' });
    const forged: Record<string, string> = {
      'alg none': `${b64({ ...header, alg: 'none' })}.${p}.`,
      'HS256 with the public key': `${hsHeader}.${p}.${crypto.createHmac('sha256', pem).update(`${hsHeader}.${p}`).digest('base64url')}`,
      'unknown kid': sign(claims, { kid: 'no-such-kid' }),
      expired: sign({ ...claims, iat: now - 3600, exp: now - 60 }),
      'wrong aud': sign({ ...claims, aud: 'someone-else' }),
      'wrong iss': sign({ ...claims, iss: 'https://evil.example' }),
      'wrong typ': sign(claims, { typ: 'JWT' }),
    };
    assert.equal((await whoami(sign(claims))).status, 200, 'the same claims, honestly signed, pass');
    for (const [name, bad] of Object.entries(forged)) {
      const res = await whoami(bad);
      assert.equal(res.status, 401, name);
      assert.match(res.headers.get('www-authenticate')!, /^Bearer error="invalid_token"/, name);
    }
    assert.equal((await fetch(`${downstream.url}/whoami`)).status, 401);
  });

  it('when unknown kids flood in, then the JWKS is refetched at most once per interval', async () => {
    await new Promise((r) => setTimeout(r, 1600));
    const before = await jwksFetches();
    const key = readTokenKey(setup.env.JWT_KEY_FILES!);
    const statuses = await Promise.all(
      Array.from({ length: 30 }, () => whoami(jwt.sign({ sub: 'x', sid: 'y', roles: [], amr: [] }, key.privateKey, { algorithm: 'ES256', header: { alg: 'ES256', typ: 'at+jwt', kid: crypto.randomUUID() } }))),
    );
    assert.ok(statuses.every((r) => r.status === 401));
    assert.equal((await jwksFetches()) - before, 1);
  });

  it('when the gateway rotates to a new key mid-run, then old and new tokens both verify without restarting the downstream', async () => {
    const oldToken = await login(gateway);
    generateTokenKeyFile(keyB(), 'RS256');
    const port = new URL(gateway.url).port;
    await gateway.stop();
    // Same address: the downstream service keeps running untouched, with the keys it cached.
    gateway = await startGateway({ ...setup.env, PORT: port, JWT_KEY_FILES: `${setup.env.JWT_KEY_FILES},${keyB()}`, JWT_ACTIVE_KEY_FILE: keyB() });
    assert.equal((await whoami(oldToken)).status, 200, 'a token of the old key');
    await new Promise((r) => setTimeout(r, 1600));
    const newToken = await login(gateway);
    assert.equal((jwt.decode(newToken, { complete: true })!.header as { alg: string }).alg, 'RS256');
    const res = await whoami(newToken);
    assert.equal(res.status, 200, 'a token of the new key, whose kid the downstream had not cached');
  });
});
