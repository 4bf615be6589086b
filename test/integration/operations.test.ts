import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { createTestGateway, uniqueName, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';

/** The value of one sample line of the Prometheus text format. */
function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

describe('operations: metrics, security headers, CORS', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway({ env: { CORS_ORIGINS: 'https://console.example.com' } });
  });
  after(async () => {
    await gw.close();
  });

  it('when logins happen, then /metrics counts them by event type and outcome, with batch, latency, head and lockout figures', async () => {
    const username = uniqueName('metrics');
    await gw.addUser(username, PASSWORD);
    await request(gw.app).post('/login').send({ username, password: PASSWORD }).expect(200);
    for (let i = 0; i < 5; i++) await request(gw.app).post('/login').send({ username, password: 'wrong password!' }).expect(401);
    const res = await request(gw.app).get('/metrics').expect(200);
    assert.match(res.headers['content-type']!, /^text\/plain/);
    assert.equal(sample(res.text, 'authtrail_audit_events_total', '{event_type="login.succeeded",outcome="success"}'), 1);
    assert.equal(sample(res.text, 'authtrail_audit_events_total', '{event_type="login.failed",outcome="failure"}'), 5);
    assert.equal(sample(res.text, 'authtrail_audit_events_total', '{event_type="lockout.started",outcome="success"}'), 1);
    assert.equal(sample(res.text, 'authtrail_lockouts_current'), 1);
    assert.equal(sample(res.text, 'authtrail_redis_degraded'), 0);
    const { rows } = await gw.t.db.query<{ seq: number }>('SELECT max(seq) AS seq FROM audit_log');
    assert.equal(sample(res.text, 'authtrail_audit_chain_head_seq'), rows[0]!.seq);
    assert.ok((sample(res.text, 'authtrail_audit_batch_size_count') ?? 0) >= 1);
    assert.ok((sample(res.text, 'authtrail_audit_commit_seconds_count') ?? 0) >= 1);
  });

  it('when any response is sent, then security headers are set', async () => {
    const res = await request(gw.app).get('/healthz').expect(200);
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.equal(res.headers['x-frame-options'], 'SAMEORIGIN');
    assert.match(res.headers['strict-transport-security']!, /max-age=/);
    assert.match(res.headers['content-security-policy']!, /default-src 'self'/);
    assert.equal(res.headers['x-powered-by'], undefined);
  });

  it('when a browser from an allowed origin asks, then CORS allows it with credentials; another origin gets no CORS headers', async () => {
    const preflight = await request(gw.app)
      .options('/login')
      .set('Origin', 'https://console.example.com')
      .set('Access-Control-Request-Method', 'POST')
      .set('Access-Control-Request-Headers', 'content-type,x-device-id')
      .expect(204);
    assert.equal(preflight.headers['access-control-allow-origin'], 'https://console.example.com');
    assert.equal(preflight.headers['access-control-allow-credentials'], 'true');
    assert.match(preflight.headers['access-control-allow-headers']!, /X-Device-Id/);
    const other = await request(gw.app).get('/healthz').set('Origin', 'https://evil.example').expect(200);
    assert.equal(other.headers['access-control-allow-origin'], undefined);
  });
});
