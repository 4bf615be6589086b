import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import request from 'supertest';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { openRuntime } from '../../src/runtime.js';
import { waitFor } from '../helpers/gateway.js';

// Its own file: opening PGlite and migrating it takes most of ten seconds, which the test runner
// can then spend beside the PostgreSQL tests of test/integration/alerts.test.ts.

describe('the alert engine in embedded mode (PGlite)', () => {
  it('when the runtime opens without servers, then its engine leads, raises an alert on an attack, and stops with the runtime', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-alerts-embedded-'));
    const rulesFile = path.join(dir, 'rules.json');
    fs.writeFileSync(rulesFile, JSON.stringify({ password_spraying: { threshold: 5, window_seconds: 120 } }));
    const config = loadConfig({ DATA_DIR: dir, BCRYPT_COST: '4', TRUST_PROXY: 'loopback', AUDIT_ALERT_RULES_FILE: rulesFile, AUDIT_ALERT_POLL_INTERVAL_MS: '50' });
    const runtime = await openRuntime(config, createLogger('silent'));
    try {
      const app = createApp(runtime);
      for (let i = 0; i < 5; i++) {
        await request(app).post('/login').set('X-Forwarded-For', '203.0.113.150').send({ username: `embedded-${i}`, password: 'Winter2026!' }).expect(401);
      }
      const details = await waitFor('a password_spraying alert', async () => {
        const { rows } = await runtime.db.query<{ details: string }>(`SELECT details::text AS details FROM audit_log WHERE event_type = 'alert.raised'`);
        return rows[0] ? (JSON.parse(rows[0].details) as { rule: string; key: string; count: number }) : undefined;
      }, 10_000);
      assert.deepEqual([details.rule, details.key, details.count], ['password_spraying', '203.0.113.150', 5]);
      const metrics = (await request(app).get('/metrics').expect(200)).text;
      assert.match(metrics, /authtrail_alerts_raised_total\{rule="password_spraying"\} 1\n/);
    } finally {
      await runtime.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
