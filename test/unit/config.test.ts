import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fs from 'node:fs';
import { CONFIG_VARIABLES, ConfigError, loadConfig } from '../../src/config.js';
import { problemsOf } from '../helpers/config.js';

describe('configuration', () => {
  it('when nothing is set, then it runs embedded with the documented defaults', () => {
    const config = loadConfig({});
    assert.equal(config.mode, 'embedded');
    assert.equal(config.port, 3000);
    assert.equal(config.database.url, undefined);
    assert.equal(config.redis.url, undefined);
    assert.equal(config.audit.batchMax, 256);
    assert.equal(config.audit.checkpointEveryRecords, 1000);
    assert.equal(config.audit.generateSigningKey, true);
    assert.match(config.audit.signingKeyFile, /data\/keys\/audit-ed25519\.pem$/);
    assert.deepEqual(config.http, { headersTimeoutMs: 10_000, requestTimeoutMs: 15_000, keepAliveTimeoutMs: 5000, maxConnections: 10_000, maxConnectionsPerIp: 100 });
  });

  it('when loaded, then the object and its parts are frozen', () => {
    const config = loadConfig({});
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.audit));
    assert.throws(() => {
      (config as { port: number }).port = 1;
    }, TypeError);
  });

  it('when several variables are invalid, then one error names each of them', () => {
    const problems = problemsOf({
      PORT: 'eighty',
      LOG_LEVEL: 'loud',
      DATABASE_URL: 'mysql://localhost/x',
      REDIS_URL: 'http://localhost',
      AUDIT_BATCH_MAX: '0',
      MIGRATE_ON_START: 'maybe',
      AUDIT_CHECKPOINT_EVERY_SECONDS: '-5',
    });
    for (const name of ['PORT', 'LOG_LEVEL', 'DATABASE_URL', 'REDIS_URL', 'AUDIT_BATCH_MAX', 'MIGRATE_ON_START', 'AUDIT_CHECKPOINT_EVERY_SECONDS']) {
      assert.ok(problems.some((p) => p.startsWith(`${name}:`)), `${name} is named in ${problems.join(' | ')}`);
    }
    assert.equal(problems.length, 7);
  });

  it('when each variable alone is invalid, then the error names exactly that variable', () => {
    const bad: Record<string, string> = {
      PORT: '70000',
      HOST: '',
      DATABASE_POOL_MAX: '0',
      DATABASE_STATEMENT_TIMEOUT_MS: '5',
      DATABASE_CONNECT_TIMEOUT_MS: 'x',
      AUDIT_WRITE_TIMEOUT_MS: '1.5',
      AUDIT_CHECKPOINT_EVERY_RECORDS: '0',
      SHUTDOWN_TIMEOUT_MS: 'soon',
    };
    for (const [name, value] of Object.entries(bad)) {
      const problems = problemsOf({ [name]: value });
      assert.equal(problems.length, 1, `${name}=${value}`);
      assert.ok(problems[0]!.startsWith(`${name}:`), problems[0]);
    }
  });

  it('when DATABASE_URL is set without signing keys, then start-up stops: no generated secrets in production', () => {
    const problems = problemsOf({ DATABASE_URL: 'postgres://db/authtrail' });
    assert.deepEqual(
      problems.map((p) => p.split(':')[0]),
      ['AUDIT_SIGNING_KEY_FILE', 'JWT_KEY_FILES', 'MFA_ENCRYPTION_KEY_FILE'],
    );
  });

  it('when NODE_ENV=production, REDIS_URL is set and DATABASE_URL misspelled, then start-up stops naming DATABASE_URL instead of running embedded', () => {
    const problems = problemsOf({ NODE_ENV: 'production', REDIS_URL: 'redis://cache:6379', DATABSE_URL: 'postgres://admin:hunter2@db/authtrail' });
    assert.deepEqual(problems.map((p) => p.split(':')[0]), ['DATABASE_URL']);
    assert.match(problems[0]!, /required when NODE_ENV=production and REDIS_URL is set/);
    assert.match(problems[0]!, /DATABSE_URL is set: misspelled\?/);
    assert.match(problems[0]!, /AUTHTRAIL_EMBEDDED=true/);
    assert.doesNotMatch(problems[0]!, /hunter2/);
  });

  it('when NODE_ENV=production without DATABASE_URL, then start-up stops: the embedded mode only when asked for', () => {
    const problems = problemsOf({ NODE_ENV: 'production' });
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^DATABASE_URL: required when NODE_ENV=production; set AUTHTRAIL_EMBEDDED=true/);
    const config = loadConfig({ NODE_ENV: 'production', AUTHTRAIL_EMBEDDED: 'true' });
    assert.equal(config.mode, 'embedded');
    assert.equal(config.tokens.generateKey, true);
  });

  it('when REDIS_URL is set without DATABASE_URL, then start-up stops whatever NODE_ENV says (a misspelling, not a wish for embedded mode)', () => {
    assert.deepEqual(problemsOf({ REDIS_URL: 'redis://cache:6379' }), [
      'DATABASE_URL: required when REDIS_URL is set; set AUTHTRAIL_EMBEDDED=true to run the embedded mode (generated keys, one instance) on purpose',
    ]);
    assert.equal(loadConfig({ REDIS_URL: 'redis://cache:6379', AUTHTRAIL_EMBEDDED: 'true' }).mode, 'embedded');
  });

  it('when AUTHTRAIL_EMBEDDED contradicts DATABASE_URL, then the contradiction is named', () => {
    assert.deepEqual(problemsOf({ AUTHTRAIL_EMBEDDED: 'false' }).map((p) => p.split(':')[0]), ['DATABASE_URL']);
    const problems = problemsOf({ AUTHTRAIL_EMBEDDED: 'true', DATABASE_URL: 'postgres://db/authtrail', AUDIT_SIGNING_KEY_FILE: 'a', JWT_KEY_FILES: 'j', MFA_ENCRYPTION_KEY_FILE: 'm' });
    assert.deepEqual(problems.map((p) => p.split(':')[0]), ['AUTHTRAIL_EMBEDDED']);
    assert.deepEqual(problemsOf({ AUTHTRAIL_EMBEDDED: 'yes' }).map((p) => p.split(':')[0]), ['AUTHTRAIL_EMBEDDED']);
    assert.equal(loadConfig({ AUTHTRAIL_EMBEDDED: '' }).mode, 'embedded', 'empty, as copied from .env.example, means unset');
  });

  it('when settings contradict each other, then each contradiction is named', () => {
    const problems = problemsOf({
      REFRESH_TOKEN_IDLE_TTL_SECONDS: '7200',
      REFRESH_TOKEN_ABSOLUTE_TTL_SECONDS: '3600',
      LOCKOUT_DURATION_SECONDS: '600',
      LOCKOUT_MAX_DURATION_SECONDS: '60',
      BOOTSTRAP_ADMIN_USERNAME: 'root',
      REFRESH_COOKIE_ORIGINS: 'https://ok.example.com, not-an-origin',
      JWT_KEY_FILES: 'a.pem',
      JWT_ACTIVE_KEY_FILE: 'b.pem',
      HTTP_HEADERS_TIMEOUT_MS: '20000',
      HTTP_REQUEST_TIMEOUT_MS: '10000',
    });
    for (const name of ['REFRESH_TOKEN_IDLE_TTL_SECONDS', 'LOCKOUT_DURATION_SECONDS', 'BOOTSTRAP_ADMIN_PASSWORD', 'REFRESH_COOKIE_ORIGINS', 'JWT_ACTIVE_KEY_FILE', 'HTTP_HEADERS_TIMEOUT_MS']) {
      assert.ok(problems.some((p) => p.startsWith(`${name}:`)), `${name} in ${problems.join(' | ')}`);
    }
  });

  it('when production is fully configured, then the values are typed and paths absolute', () => {
    const config = loadConfig({
      DATABASE_URL: 'postgres://db/authtrail',
      REDIS_URL: 'redis://cache:6379',
      AUDIT_SIGNING_KEY_FILE: 'secrets/audit.pem',
      JWT_KEY_FILES: 'secrets/jwt-2026-10.pem,secrets/jwt-2026-11.pem',
      JWT_ACTIVE_KEY_FILE: 'secrets/jwt-2026-11.pem',
      AUDIT_TRUSTED_KEY_FILES: 'old1.pem, old2.pem',
      MFA_ENCRYPTION_KEY_FILE: 'secrets/mfa.key',
      PORT: '8080',
      MIGRATE_ON_START: 'false',
    });
    assert.equal(config.mode, 'production');
    assert.equal(config.port, 8080);
    assert.equal(config.database.migrateOnStart, false);
    assert.equal(config.audit.generateSigningKey, false);
    assert.ok(config.audit.signingKeyFile.startsWith('/'));
    assert.equal(config.audit.trustedKeyFiles.length, 2);
    assert.equal(config.tokens.keyFiles.length, 2);
    assert.match(config.tokens.activeKeyFile!, /jwt-2026-11\.pem$/);
    assert.equal(config.tokens.generateKey, false);
  });

  it('when the error message is printed, then it carries no variable value (which may be a secret)', () => {
    try {
      loadConfig({ DATABASE_URL: 'mysql://admin:hunter2@db/x' });
      assert.fail('accepted');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.doesNotMatch(err.message, /hunter2/);
    }
  });

  it('when .env.example is read, then it documents exactly the variables the gateway reads', () => {
    const text = fs.readFileSync(new URL('../../.env.example', import.meta.url), 'utf8');
    const documented = [...text.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]);
    assert.deepEqual([...documented].sort(), [...CONFIG_VARIABLES].sort());
  });
});
