import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import zlib from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import request from 'supertest';
import { createApp } from '../../src/app.js';
import { createLogger } from '../../src/logger.js';
import { createFirstRunSetup } from '../../src/users/first-run.js';
import { createTestGateway, uniqueName, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

/** The authentication routes: every refusal on them is exactly one audit record. */
const AUTH_PATHS = ['/login', '/login/mfa', '/refresh', '/logout', '/setup', '/me/password', '/mfa/totp/enroll', '/mfa/totp/confirm', '/mfa/totp/disable', '/mfa/recovery-codes'];

async function auditCount(gw: TestGateway): Promise<number> {
  const { rows } = await gw.t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log');
  return rows[0]!.n;
}

/** A gateway whose request log is kept, to check what reaches the log. */
async function loggingGateway(): Promise<{ gw: TestGateway; app: ReturnType<typeof createApp>; lines: string[] }> {
  const gw = await createTestGateway({ env: { IP_MAX_FAILURES: '1000000' } });
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  // A pending setup link, so generated setup tokens reach the comparison with the real one.
  const app = createApp({ ...gw.services, logger: createLogger('info', sink), setup: createFirstRunSetup() });
  return { gw, app, lines };
}

/** Asserts a problem answer that is not a server error. */
function assertRefusal(res: request.Response, status: number, what: string): void {
  assert.equal(res.status, status, `${what}: ${res.status} ${(res.text ?? "").slice(0, 200)}`);
  assert.match(res.headers['content-type'] ?? '', /^application\/problem\+json/, what);
}

describe('attack: requests that made a 500', () => {
  let gw: TestGateway;
  let app: ReturnType<typeof createApp>;
  let lines: string[];
  let admin: string;
  before(async () => {
    ({ gw, app, lines } = await loggingGateway());
    const name = uniqueName('hostile-admin');
    await gw.addUser(name, PASSWORD, ['admin', 'security']);
    admin = (await request(app).post('/login').send({ username: name, password: PASSWORD }).expect(200)).body.access_token as string;
  });
  after(async () => {
    await gw.close();
  });

  it('when a path carries a bad percent-escape, then 400, not 500', async () => {
    assertRefusal(await request(app).post('/admin/users/%zz/disable').set(bearer(admin)), 400, '/admin/users/%zz/disable');
    assertRefusal(await request(app).delete('/admin/lockouts/%').set(bearer(admin)), 400, '/admin/lockouts/%');
    assertRefusal(await request(app).post('/admin/users/%zz/disable'), 400, 'without a token: the path is refused first');
  });

  it('when a bearer token has a JSON header and a payload that is not JSON, then 401, and on /me/* one record', async () => {
    const token = 'eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.bm90anNvbg.x';
    assertRefusal(await request(app).get('/admin/users').set(bearer(token)), 401, 'admin route');
    const before = await auditCount(gw);
    assertRefusal(await request(app).post('/me/password').set(bearer(token)).send({ current_password: 'x', new_password: 'y' }), 401, '/me/password');
    assert.equal((await auditCount(gw)) - before, 1);
  });

  it('when a login body is declared gzip but is not, then 415, recorded with a documented reason', async () => {
    const before = await auditCount(gw);
    const res = await request(app).post('/login').set('Content-Type', 'application/json').set('Content-Encoding', 'gzip').send('{"username":"a","password":"b"}');
    assertRefusal(res, 415, 'broken gzip');
    const { rows } = await gw.t.db.query<{ reason: string }>('SELECT reason FROM audit_log WHERE seq > $1', [before]);
    assert.deepEqual(rows, [{ reason: 'unsupported_media_type' }]);
    const gzipped = zlib.gzipSync(JSON.stringify({ username: 'a', password: 'b' }));
    assertRefusal(await request(app).post('/login').set('Content-Type', 'application/json').set('Content-Encoding', 'gzip').send(gzipped), 415, 'real gzip');
  });

  const filters: Array<[string, Record<string, string>]> = [
    ['/admin/login-events', { from: '0000-01-01T00:00:00Z' }],
    ['/admin/login-events', { to: '2024-01-01T00:00:00-23:59' }],
    ['/admin/login-events', { username: '\u0000' }],
    ['/admin/login-events', { device_id: '\u0000' }],
    ['/admin/login-events', { ip: 'fe80::1%eth0' }],
    ['/admin/login-events/summary', { from: '0000-01-01T00:00:00Z' }],
    ['/admin/login-events/summary', { to: '2024-01-01T00:00:00-23:59' }],
    ['/admin/users', { q: '\u0000' }],
    ['/admin/users', { cursor: Buffer.from(JSON.stringify({ after: '\u0000' })).toString('base64url') }],
  ];
  for (const [path, query] of filters) {
    it(`when ${path} gets ${JSON.stringify(query)}, then 400 naming the field, before any SQL`, async () => {
      const res = await request(app).get(path).query(query).set(bearer(admin));
      assertRefusal(res, 400, JSON.stringify(query));
      const field = Object.keys(query)[0]!;
      assert.ok(JSON.stringify(res.body).includes(field), `names ${field}: ${res.text}`);
    });
  }

  it('when an export is asked for with a filter PostgreSQL would refuse, then 400, not a truncated 200', async () => {
    for (const accept of ['text/csv', 'application/x-ndjson']) {
      const res = await request(app).get('/admin/login-events').query({ username: '\u0000' }).set(bearer(admin)).set('Accept', accept);
      assert.equal(res.status, 400, accept);
    }
  });

  it('when a user is created with a name whose display form is too long for the database, then 400 and no row value is logged', async () => {
    const res = await request(app).post('/admin/users').set(bearer(admin)).send({ username: 'e\u0301'.repeat(200), password: PASSWORD });
    assertRefusal(res, 400, 'combining-mark username');
    const log = lines.join('\n');
    assert.doesNotMatch(log, /hmac-sha256-bcrypt|\$2[aby]\$/, 'no password hash in the log');
    assert.doesNotMatch(log, /"detail"/, 'no database error detail in the log');
  });

  it('when any request of this suite was answered, then no 500 was ever logged', () => {
    assert.ok(!lines.some((l) => l.includes('"level":50')), lines.filter((l) => l.includes('"level":50')).join('\n'));
  });
});

describe('attack: refusals with no audit record', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(async () => {
    await gw.close();
  });

  const cases: Array<{ name: string; send: () => request.Test; status: number; eventType: string; reason: string }> = [
    { name: 'POST /refresh with the body `{`', send: () => request(gw.app).post('/refresh').set('Content-Type', 'application/json').send('{'), status: 400, eventType: 'token.refresh_failed', reason: 'invalid_request' },
    { name: 'POST /logout as text/plain', send: () => request(gw.app).post('/logout').set('Content-Type', 'text/plain').send('hello'), status: 415, eventType: 'logout', reason: 'unsupported_media_type' },
    { name: 'POST /refresh over 10 kB', send: () => request(gw.app).post('/refresh').send({ refresh_token: 'x'.repeat(11_000) }), status: 413, eventType: 'token.refresh_failed', reason: 'payload_too_large' },
    { name: 'POST /logout over 10 kB', send: () => request(gw.app).post('/logout').send({ refresh_token: 'x'.repeat(11_000) }), status: 413, eventType: 'logout', reason: 'payload_too_large' },
    { name: 'POST /refresh with broken gzip', send: () => request(gw.app).post('/refresh').set('Content-Type', 'application/json').set('Content-Encoding', 'gzip').send('not gzip'), status: 415, eventType: 'token.refresh_failed', reason: 'unsupported_media_type' },
    { name: 'POST /logout with broken gzip', send: () => request(gw.app).post('/logout').set('Content-Type', 'application/json').set('Content-Encoding', 'gzip').send('not gzip'), status: 415, eventType: 'logout', reason: 'unsupported_media_type' },
    { name: 'POST /setup with the body `{`', send: () => request(gw.app).post('/setup').set('Content-Type', 'application/json').send('{'), status: 400, eventType: 'setup.failed', reason: 'invalid_request' },
    { name: 'POST /setup over 10 kB', send: () => request(gw.app).post('/setup').send({ setup_token: 'x'.repeat(11_000) }), status: 413, eventType: 'setup.failed', reason: 'payload_too_large' },
    { name: 'POST /mfa/totp/confirm without a token', send: () => request(gw.app).post('/mfa/totp/confirm').send({ otp: '123456' }), status: 401, eventType: 'mfa.enrollment_failed', reason: 'unauthorized' },
  ];
  for (const c of cases) {
    it(`when ${c.name}, then ${c.status} and exactly one ${c.eventType} record`, async () => {
      const before = await auditCount(gw);
      const res = await c.send();
      assertRefusal(res, c.status, c.name);
      const { rows } = await gw.t.db.query<{ event_type: string; outcome: string; reason: string }>('SELECT event_type, outcome, reason FROM audit_log WHERE seq > $1', [before]);
      assert.deepEqual(rows, [{ event_type: c.eventType, outcome: 'failure', reason: c.reason }]);
    });
  }
});

describe('property: hostile input never makes a 500, and every refusal of an authentication route is one record', () => {
  let gw: TestGateway;
  let app: ReturnType<typeof createApp>;
  let lines: string[];
  let userToken: string;
  let adminToken: string;
  const username = uniqueName('prop-user');
  before(async () => {
    ({ gw, app, lines } = await loggingGateway());
    await gw.addUser(username, PASSWORD);
    const adminName = uniqueName('prop-admin');
    await gw.addUser(adminName, PASSWORD, ['admin', 'security']);
    userToken = (await request(app).post('/login').send({ username, password: PASSWORD }).expect(200)).body.access_token as string;
    adminToken = (await request(app).post('/login').send({ username: adminName, password: PASSWORD }).expect(200)).body.access_token as string;
  });
  after(async () => {
    await gw.close();
  });

  /** Strings a hostile client sends: NUL, lone surrogates, controls, look-alikes, huge, formulas, path tricks. */
  const hostileString = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.constantFrom('\u0000', '\ud800', 'a\udc00b', '\u202e', '\r\n', '%', '%zz', '../..', '=cmd|', 'ＡＤＭＩＮ', '\u3000admin', 'admin\u00a0', 'İ', '∞', '-1', '1e309', 'null', '{}', '[]'),
    fc.integer({ min: 1, max: 40_000 }).map((n) => 'x'.repeat(n)),
  );
  const hostileJson = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.dictionary(fc.constantFrom('username', 'password', 'otp', 'recovery_code', 'mfa_token', 'refresh_token', 'current_password', 'new_password', 'roles', 'setup_token', '__proto__', 'constructor'), fc.oneof(hostileString, fc.jsonValue({ maxDepth: 2 })), { maxKeys: 5 }),
  );
  const hostileBody = fc.oneof(
    hostileJson.map((value) => ({ type: 'application/json', body: JSON.stringify(value) })),
    hostileString.map((text) => ({ type: 'application/json', body: text })),
    fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16', 'application/json; charset=latin1', 'multipart/form-data').chain((type) => hostileString.map((text) => ({ type, body: text }))),
    fc.uint8Array({ maxLength: 200 }).map((bytes) => ({ type: 'application/json', body: Buffer.from(bytes) })),
  );
  const hostileHeaders = fc.record(
    {
      authorization: fc.oneof(fc.constant('user'), fc.constant('admin'), hostileString.map((s) => `Bearer ${s}`), hostileString, fc.constant('Bearer eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.bm90anNvbg.x'), fc.constant('Bearer eyJhbGciOiJub25lIn0.e30.')),
      'content-encoding': fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'x-unknown'),
      'x-device-id': hostileString,
      'x-request-id': hostileString,
      origin: fc.constantFrom('https://evil.example', 'null'),
    },
    { requiredKeys: [] },
  );

  /** A path segment the client can send: lone surrogates have no percent-encoding of their own. */
  const pathSegment = (value: string): string => encodeURIComponent(value.toWellFormed());

  /** A header value Node will send: no CR, LF or NUL, Latin-1 only. */
  const headerSafe = (value: string): string => value.replace(/[^\u0020-\u007e\u00a0-\u00ff]/g, '?').slice(0, 4000);

  async function send(method: string, path: string, headers: Record<string, string>, body?: { type: string; body: string | Buffer }) {
    let req = request(app)[method.toLowerCase() as 'post'](path);
    for (const [name, raw] of Object.entries(headers)) {
      const value = name === 'authorization' && raw === 'user' ? `Bearer ${userToken}` : name === 'authorization' && raw === 'admin' ? `Bearer ${adminToken}` : raw;
      req = req.set(name, headerSafe(value));
    }
    if (body) req = req.set('Content-Type', headerSafe(body.type)).send(body.body);
    return req;
  }

  async function check(method: string, path: string, headers: Record<string, string>, body?: { type: string; body: string | Buffer }): Promise<void> {
    const before = await auditCount(gw);
    const res = await send(method, path, headers, body);
    assert.notEqual(res.status, 500, `${method} ${path} → 500`);
    assert.ok(res.status < 500 || res.status === 503, `${method} ${path} → ${res.status}`);
    if (res.status >= 400) assert.match(res.headers['content-type'] ?? '', /^application\/problem\+json/, `${method} ${path} ${res.status}`);
    const pathname = path.split('?')[0]!;
    if (AUTH_PATHS.includes(pathname) && res.status >= 400) {
      assert.equal((await auditCount(gw)) - before, res.body?.code === 'account_locked' || res.body?.code === 'too_many_attempts' ? 1 : (await lockStarts(before)) + 1, `${method} ${path} ${res.status} ${(res.text ?? "").slice(0, 120)}`);
    }
  }

  /** A wrong secret that starts a lock writes its failure and `lockout.started`: two records, one decision each. */
  async function lockStarts(afterSeq: number): Promise<number> {
    const { rows } = await gw.t.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE seq > $1 AND event_type = 'lockout.started'`, [afterSeq]);
    return rows[0]!.n;
  }

  it('when authentication routes get generated bodies and headers, then never a 500, always problem+json, one record per refusal', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...AUTH_PATHS), hostileHeaders, hostileBody, async (path, headers, body) => {
        await check('POST', path, headers, body);
      }),
      { numRuns: 300 },
    );
  });

  it('when authentication routes get wrong methods and hostile paths, then never a 500 and one record per refusal', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'POST'),
        fc.oneof(fc.constantFrom(...AUTH_PATHS), hostileString.map((s) => `/mfa/${pathSegment(s).slice(0, 200)}`), fc.constantFrom('/me/%zz', '/mfa/%', '/me/..%2f..%2fadmin', '/login/', '/LOGIN')),
        hostileHeaders,
        async (method, path, headers) => {
          await check(method, path, headers);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('when security and admin routes get generated query strings, path parameters and bodies, then never a 500', async () => {
    const badValues = fc.constantFrom('0000-01-01T00:00:00Z', '2024-01-01T00:00:00-23:59', '2024-02-30T00:00:00Z', '+275760-09-13T00:00:00Z', 'fe80::1%eth0', '10.0.0.0/33', '::ffff:1.2.3.4', '1.2.3.4/0', '-1', '1001', '1.5', 'true', '\u0000', '\ud800', 'a\u0000b');
    const queryValue = fc.oneof(
      { arbitrary: badValues, weight: 3 },
      { arbitrary: hostileString.map((v) => v.slice(0, 2000)), weight: 2 },
      { arbitrary: fc.date({ min: new Date(-8.64e15), max: new Date(8.64e15), noInvalidDate: true }).map((d) => d.toISOString()), weight: 1 },
      { arbitrary: fc.jsonValue({ maxDepth: 2 }).map((v) => Buffer.from(JSON.stringify(v)).toString('base64url')), weight: 1 },
      { arbitrary: fc.constantFrom({ after: '\u0000' }, { v: 1, before: 1e300 }, { v: 1, before: -1 }, { after: 'x' }).map((v) => Buffer.from(JSON.stringify(v)).toString('base64url')), weight: 1 },
    );
    const filterKeys = ['username', 'user_id', 'ip', 'event_type', 'outcome', 'device_id', 'from', 'to', 'limit', 'cursor', 'q', 'status', 'role', 'bucket', 'top', 'full', 'tree_size'] as const;
    // One or two filters a request: more would mostly be refused for the first bad one, hiding the rest.
    const query = fc.dictionary(fc.constantFrom(...filterKeys), queryValue, { minKeys: 1, maxKeys: 2 });
    const route = fc.oneof(
      fc.constantFrom('/admin/login-events', '/admin/login-events', '/admin/login-events/summary', '/admin/users', '/admin/lockouts', '/admin/audit/checkpoints').map((path) => ({ method: 'GET', path })),
      fc.constantFrom('/admin/login-events', '/admin/login-events/summary', '/admin/users').map((path) => ({ method: 'GET', path })),
      hostileString.map((s) => ({ method: 'GET', path: `/admin/lockouts/${pathSegment(s).slice(0, 600)}` })),
      hostileString.map((s) => ({ method: 'DELETE', path: `/admin/lockouts/${pathSegment(s).slice(0, 600)}` })),
      fc.oneof(hostileString.map((s) => pathSegment(s).slice(0, 200)), fc.constantFrom('%zz', '%', '00000000-0000-4000-8000-000000000000', 'FFFFFFFF-FFFF-4FFF-8FFF-FFFFFFFFFFFF')).chain((id) =>
        fc.constantFrom('disable', 'enable', 'mfa/reset', 'sessions/revoke', 'password').map((action) => ({ method: 'POST', path: `/admin/users/${id}/${action}` })),
      ),
      fc.oneof(hostileString.map((v) => pathSegment(v).slice(0, 200)), fc.constantFrom('1', '0', '-1', '9007199254740993', '1e3', '%zz')).chain((seq) =>
        fc.constantFrom(`/admin/audit/proof/${seq}`, `/audit-log/tile/0/${seq}`, `/audit-log/tile/${seq}/000.p/3`).map((path) => ({ method: 'GET', path })),
      ),
      fc.constantFrom('/admin/audit/consistency', '/admin/audit/proof/1', '/audit-log/checkpoint', '/audit-log/key', '/admin/audit/witnesses').map((path) => ({ method: 'GET', path })),
      fc.constant({ method: 'POST', path: '/admin/users' }),
      fc.constant({ method: 'PUT', path: '/admin/users/00000000-0000-4000-8000-000000000000/roles' }),
    );
    await fc.assert(
      fc.asyncProperty(route, query, hostileBody, fc.constantFrom('application/json', 'text/csv', 'application/x-ndjson'), async ({ method, path }, filters, body, accept) => {
        const qs = new URLSearchParams(Object.entries(filters).map(([k, v]): [string, string] => [k, v.toWellFormed()])).toString();
        const res = await send(method, qs ? `${path}?${qs}` : path, { authorization: 'admin', accept }, method === 'GET' || method === 'DELETE' ? undefined : body);
        assert.ok(res.status < 500, `${method} ${path}?${qs} → ${res.status} ${(res.text ?? "").slice(0, 200)}`);
      }),
      { numRuns: 250 },
    );
  });

  it('when all of the above ran, then no error was logged and no secret reached the log', () => {
    const errors = lines.filter((l) => l.includes('"level":50'));
    assert.deepEqual(errors, []);
    const log = lines.join('\n');
    assert.ok(!log.includes(PASSWORD) && !log.includes(userToken) && !log.includes(adminToken));
  });
});
