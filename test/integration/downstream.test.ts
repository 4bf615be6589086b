import assert from 'node:assert/strict';
import crypto, { type JsonWebKey } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import jwt from 'jsonwebtoken';
import { generateTokenKeyFile, jwkThumbprint, readTokenKey } from '../../src/tokens/keys.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { ROOT } from '../helpers/processes.js';
import { createTestGateway, sharedSetup, uniqueName, type SharedSetup, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';

/** The example service of examples/downstream, as its own process, importing `authtrail/verifier` by package name. */
async function startDownstream(jwksUrl: string, env: NodeJS.ProcessEnv = {}): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', 'examples/downstream/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, PORT: '0', AUTHTRAIL_JWKS_URL: jwksUrl, JWKS_MIN_REFETCH_MS: '1500', ...env },
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

const JWKS_FAILURES = ['HTTP 500', 'a body that is not a JWK Set', 'a dropped connection'] as const;
type JwksFailure = (typeof JWKS_FAILURES)[number];

/** A JWKS endpoint the test breaks on demand: serves `keys` while `failure` is unset, else fails that way. */
async function startJwksServer(): Promise<{ url: string; keys: JsonWebKey[]; failure?: JwksFailure; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => {
    if (state.failure === 'HTTP 500') res.writeHead(500).end();
    else if (state.failure === 'a body that is not a JWK Set') res.writeHead(200, { 'content-type': 'application/json' }).end('{"error":"maintenance"}');
    else if (state.failure === 'a dropped connection') res.socket?.destroy();
    else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: state.keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const state: { url: string; keys: JsonWebKey[]; failure?: JwksFailure; close(): Promise<void> } = {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/.well-known/jwks.json`,
    keys: [],
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
  return state;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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

  describe('when the JWKS endpoint fails', () => {
    // Small intervals so that refetches happen within the test: a refetch at most every REFETCH_MS,
    // keys count as fresh for MAX_AGE_MS after the last successful fetch.
    const REFETCH_MS = 800;
    const MAX_AGE_MS = 1600;
    let jwks: Awaited<ReturnType<typeof startJwksServer>>;
    let gatewayKeys: JsonWebKey[];
    /** A second ES256 key, as after a rotation: honest tokens of it verify once its JWK is fetched. */
    const other = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const otherKid = jwkThumbprint(other.publicKey);
    const otherJwk = { ...other.publicKey.export({ format: 'jwk' }), kid: otherKid, alg: 'ES256', use: 'sig' };
    /** The claims of a real token, signed with `other` (or with the gateway's key under a kid nobody published). */
    const signOther = (token: string) => jwt.sign(jwt.decode(token) as jwt.JwtPayload, other.privateKey, { algorithm: 'ES256', header: { alg: 'ES256', typ: 'at+jwt', kid: otherKid } });
    const unknownKid = (token: string) =>
      jwt.sign(jwt.decode(token) as jwt.JwtPayload, readTokenKey(setup.env.JWT_KEY_FILES!).privateKey, { algorithm: 'ES256', header: { alg: 'ES256', typ: 'at+jwt', kid: crypto.randomUUID() } });
    const call = (ds: { url: string }, token: string) => fetch(`${ds.url}/whoami`, { headers: { authorization: `Bearer ${token}` } });
    const fetchesOf = async (ds: { url: string }) => ((await (await fetch(`${ds.url}/healthz`)).json()) as { jwks_fetches: number }).jwks_fetches;
    const startFast = () => startDownstream(jwks.url, { JWKS_MIN_REFETCH_MS: String(REFETCH_MS), JWKS_CACHE_MAX_AGE_MS: String(MAX_AGE_MS) });

    before(async () => {
      jwks = await startJwksServer();
      gatewayKeys = ((await (await fetch(`${gateway.url}/.well-known/jwks.json`)).json()) as { keys: JsonWebKey[] }).keys;
    });
    after(() => jwks.close());

    it('when a refetch fails after a successful fetch, then tokens of a cached key still verify (200, not 401), whether the refetch came from an unknown kid or from cacheMaxAge', async () => {
      const token = await login(gateway);
      for (const failure of JWKS_FAILURES) {
        jwks.keys = gatewayKeys;
        jwks.failure = undefined;
        const ds = await startFast();
        try {
          assert.equal((await call(ds, token)).status, 200, failure);
          assert.equal(await fetchesOf(ds), 1, failure);
          jwks.failure = failure;
          await sleep(REFETCH_MS + 100);
          const forced = await call(ds, unknownKid(token));
          assert.equal(forced.status, 503, `${failure}: an unknown kid while the JWKS cannot be fetched`);
          assert.equal(await fetchesOf(ds), 2, `${failure}: the unknown kid forced a refetch`);
          assert.equal((await call(ds, token)).status, 200, `${failure}: a cached key after the failed refetch`);
          await sleep(MAX_AGE_MS);
          assert.equal((await call(ds, token)).status, 200, `${failure}: a cached key past cacheMaxAge, the refetch failing`);
          assert.equal(await fetchesOf(ds), 3, `${failure}: cacheMaxAge forced a refetch`);
        } finally {
          ds.child.kill('SIGTERM');
        }
      }
    });

    it('when a fetch fails past cacheMaxAge, then the keys do not count as fresh: the fetch is retried on the next request after the cooldown, and a key rotated out stops verifying once a fetch succeeds', async () => {
      const token = await login(gateway);
      const tokenOfOther = signOther(token);
      jwks.keys = [...gatewayKeys, otherJwk];
      jwks.failure = undefined;
      const ds = await startFast();
      try {
        assert.equal((await call(ds, token)).status, 200);
        assert.equal((await call(ds, tokenOfOther)).status, 200);
        assert.equal(await fetchesOf(ds), 1);
        await sleep(MAX_AGE_MS + 100);
        jwks.failure = 'HTTP 500';
        assert.equal((await call(ds, token)).status, 200, 'stale key, fetch failing');
        assert.equal(await fetchesOf(ds), 2, 'the stale cache was refetched');
        assert.equal((await call(ds, token)).status, 200);
        assert.equal(await fetchesOf(ds), 2, 'no second fetch within the cooldown');
        await sleep(REFETCH_MS + 100);
        assert.equal((await call(ds, token)).status, 200);
        assert.equal(await fetchesOf(ds), 3, 'the failed fetch did not make the keys fresh: retried after the cooldown');
        // The gateway's key is rotated out; the endpoint answers again.
        jwks.keys = [otherJwk];
        jwks.failure = undefined;
        await sleep(REFETCH_MS + 100);
        const res = await call(ds, token);
        assert.equal(res.status, 401, 'a key rotated out of the JWKS');
        assert.match(res.headers.get('www-authenticate')!, /^Bearer error="invalid_token"/);
        assert.equal(await fetchesOf(ds), 4);
        assert.equal((await call(ds, tokenOfOther)).status, 200, 'the key that stayed');
      } finally {
        ds.child.kill('SIGTERM');
      }
    });

    it('when the JWKS cannot be fetched and no cached key fits the token, then every such request gets 503 temporarily_unavailable, never 401, and the gateway is not hammered', async () => {
      const token = await login(gateway);
      jwks.keys = gatewayKeys;
      jwks.failure = 'HTTP 500';
      const ds = await startFast();
      const expect503 = async (t: string, message: string) => {
        const res = await call(ds, t);
        assert.equal(res.status, 503, message);
        assert.equal(((await res.json()) as { code: string }).code, 'temporarily_unavailable', message);
      };
      const forged = Array.from({ length: 30 }, () => unknownKid(token));
      try {
        // Nothing was ever fetched.
        await expect503(token, 'first request, first fetch failing');
        await expect503(token, 'second request, within the cooldown after the failed fetch');
        assert.equal(await fetchesOf(ds), 1);
        const flood = await Promise.all(forged.map((t) => call(ds, t)));
        assert.deepEqual([...new Set(flood.map((r) => r.status))], [503], 'unknown kids while nothing could be fetched');
        assert.equal(await fetchesOf(ds), 1, 'no fetch within the cooldown');
        jwks.failure = undefined;
        await sleep(REFETCH_MS + 100);
        assert.equal((await call(ds, token)).status, 200, 'once a fetch succeeds');
        // The gateway rotates a key in, but its JWKS cannot be fetched: the new key was never cached.
        jwks.keys = [...gatewayKeys, otherJwk];
        jwks.failure = 'a dropped connection';
        await sleep(REFETCH_MS + 100);
        const tokenOfOther = signOther(token);
        await expect503(tokenOfOther, 'a key not cached, fetch failing');
        await expect503(tokenOfOther, 'a key not cached, within the cooldown after the failed fetch');
        assert.equal((await call(ds, token)).status, 200, 'a cached key meanwhile');
        jwks.failure = undefined;
        await sleep(REFETCH_MS + 100);
        assert.equal((await call(ds, tokenOfOther)).status, 200, 'once the endpoint answers again');
      } finally {
        ds.child.kill('SIGTERM');
      }
    });
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
