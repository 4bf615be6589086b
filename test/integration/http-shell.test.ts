import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import express from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { createApp } from '../../src/app.js';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { loadConfig } from '../../src/config.js';
import { notFound, problemHandler } from '../../src/http/error-handler.js';
import { jsonBody } from '../../src/http/json-body.js';
import { requestId, requestLogger } from '../../src/http/request-context.js';
import { createLogger } from '../../src/logger.js';
import { createServices } from '../../src/runtime.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

function capturingLogger() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { logger: createLogger('info', sink), lines };
}

/** A JSON route behind the shell's own middleware, as the login routes will use it. */
function jsonEchoApp(logger = createLogger('silent')) {
  const app = express();
  app.use(requestId(), requestLogger(logger));
  app.post('/echo', ...jsonBody(), (req, res) => {
    res.json({ keys: Object.keys(req.body as object) });
  });
  app.get('/boom', () => {
    throw new Error('database password is hunter2');
  });
  app.use(notFound, problemHandler);
  return app;
}

describe('HTTP shell', () => {
  let t: TestDatabase;
  let redis: Redis;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-http-'));
  before(async () => {
    t = await createTestDatabase();
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    await redis.ping(); // fail, not skip, without Redis
  });
  after(async () => {
    redis.disconnect();
    await t.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  const deps = (overrides: Partial<Parameters<typeof createApp>[0]> = {}) => ({
    ...createServices(loadConfig({ DATA_DIR: dataDir, BCRYPT_COST: '4' }), createLogger('silent'), {
      db: t.db,
      writer: createChainWriter(t.db, { batchMax: 8, writeTimeoutMs: 1000 }),
      redis,
    }),
    ...overrides,
  });

  it('when /healthz and /readyz are called with everything up, then both answer 200 with each check', async () => {
    const app = createApp(deps());
    await request(app).get('/healthz').expect(200, { status: 'ok' });
    const ready = await request(app).get('/readyz').expect(200);
    assert.deepEqual(ready.body, { status: 'ready', checks: { database: 'ok', redis: 'ok', audit_writer: 'ok' } });
  });

  it('when Redis is unreachable or the audit writer is closed, then /readyz answers 503 naming the failing check', async () => {
    const deadRedis = new Redis('redis://127.0.0.1:1', { maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
    deadRedis.on('error', () => {});
    const res = await request(createApp(deps({ redis: deadRedis }))).get('/readyz').expect(503);
    assert.equal(res.body.checks.redis, 'failing');
    assert.equal(res.body.checks.database, 'ok');
    const writer = createChainWriter(t.db, { batchMax: 8, writeTimeoutMs: 1000 });
    await writer.close();
    const closed = await request(createApp(deps({ writer }))).get('/readyz').expect(503);
    assert.equal(closed.body.checks.audit_writer, 'failing');
  });

  it('when a route does not exist, then the answer is problem+json 404 with a stable code and the request id', async () => {
    const res = await request(createApp(deps())).get('/nope').set('X-Request-Id', 'abc-123').expect(404);
    assert.match(res.headers['content-type']!, /^application\/problem\+json/);
    assert.equal(res.headers['x-request-id'], 'abc-123');
    assert.deepEqual(res.body, {
      type: 'urn:authtrail:problem:not_found', title: 'No such resource', status: 404, code: 'not_found',
      detail: 'GET /nope is not a route of this gateway',
    });
  });

  it('when the caller sends a request id with CR/LF or odd characters, then a fresh one is used instead', async () => {
    const res = await request(createApp(deps())).get('/healthz').set('X-Request-Id', 'a b;<script>').expect(200);
    assert.match(res.headers['x-request-id']!, /^[0-9a-f-]{36}$/);
  });

  it('when a JSON route gets a body over 10 kB, then 413 payload_too_large', async () => {
    const res = await request(jsonEchoApp()).post('/echo').set('Content-Type', 'application/json').send(JSON.stringify({ u: 'x'.repeat(11_000) })).expect(413);
    assert.equal(res.body.code, 'payload_too_large');
  });

  it('when a JSON route gets a non-JSON body, then 415 unsupported_media_type', async () => {
    for (const [type, body] of [['text/plain', 'username=a'], ['application/x-www-form-urlencoded', 'username=a&password=b']]) {
      const res = await request(jsonEchoApp()).post('/echo').set('Content-Type', type!).send(body).expect(415);
      assert.equal(res.body.code, 'unsupported_media_type');
    }
  });

  it('when a JSON route gets malformed JSON or a bare value, then 400 invalid_request', async () => {
    for (const body of ['{"username":', '"just a string"', '42']) {
      const res = await request(jsonEchoApp()).post('/echo').set('Content-Type', 'application/json').send(body).expect(400);
      assert.equal(res.body.code, 'invalid_request');
    }
    await request(jsonEchoApp()).post('/echo').send({ a: 1 }).expect(200, { keys: ['a'] });
  });

  it('when a handler throws an internal error, then the client sees a generic 500 and the log keeps the detail', async () => {
    const { logger, lines } = capturingLogger();
    const res = await request(jsonEchoApp(logger)).get('/boom').expect(500);
    assert.equal(res.body.code, 'internal_error');
    assert.equal(res.body.detail, undefined);
    assert.doesNotMatch(JSON.stringify(res.body), /hunter2/);
    assert.ok(lines.some((l) => l.includes('"level":50')), 'the error is logged');
  });

  it('when secrets reach the logger, then they are redacted', () => {
    const { logger, lines } = capturingLogger();
    logger.info({ body: { password: 'correct horse', otp: '123456', refresh_token: 'rt-secret' }, req: { headers: { authorization: 'Bearer eyJ.secret', cookie: 'sid=1' } } }, 'x');
    const line = lines.join('\n');
    for (const secret of ['correct horse', '123456', 'rt-secret', 'eyJ.secret', 'sid=1']) assert.ok(!line.includes(secret), secret);
    assert.match(line, /\[redacted\]/);
  });

  it('when requests are logged, then no header, body or query string is written', async () => {
    const { logger, lines } = capturingLogger();
    // Markers that cannot occur by chance in a line holding random UUIDs and timestamps (no hex-only words).
    await request(jsonEchoApp(logger)).post('/echo?token=query-marker-qz').set('Authorization', 'Bearer header-marker-qz').send({ password: 'body-marker-qz' }).expect(200);
    const line = lines.join('\n');
    for (const secret of ['query-marker-qz', 'header-marker-qz', 'body-marker-qz']) assert.ok(!line.includes(secret), secret);
    assert.match(line, /"path":"\/echo"/);
  });
});
