import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { sweepExpired } from '../../src/maintenance.js';
import { refreshTokenHash } from '../../src/tokens/refresh-tokens.js';
import { createTestGateway, uniqueName, type TestGateway } from '../helpers/test-gateway.js';

const PASSWORD = 'correct horse battery staple';

describe('maintenance sweep', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(async () => {
    await gw.close();
  });

  it('when challenges and sessions are long expired, then the sweep removes them and keeps everything still usable', async () => {
    const oldUser = uniqueName('old');
    const oldId = await gw.addUser(oldUser, PASSWORD);
    const liveUser = uniqueName('live');
    await gw.addUser(liveUser, PASSWORD);
    const old = (await request(gw.app).post('/login').send({ username: oldUser, password: PASSWORD }).expect(200)).body as { refresh_token: string };
    const live = (await request(gw.app).post('/login').send({ username: liveUser, password: PASSWORD }).expect(200)).body as { refresh_token: string };
    await gw.t.db.query(`UPDATE refresh_families SET absolute_expires_at = now() - interval '2 days' WHERE user_id = $1`, [oldId]);
    const expired = await gw.services.mfa.createChallenge({ userId: oldId, username: oldUser, requestId: null });
    const fresh = await gw.services.mfa.createChallenge({ userId: oldId, username: oldUser, requestId: null });
    await gw.t.db.query(`UPDATE mfa_challenges SET expires_at = now() - interval '2 hours' WHERE token_hash = sha256($1::bytea)`, [Buffer.from(expired)]);
    const auditBefore = await gw.t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log');

    assert.deepEqual(await sweepExpired(gw.t.db), { challenges: 1, refreshTokens: 1 });
    const tokens = await gw.t.db.query<{ token_hash: Buffer }>('SELECT token_hash FROM refresh_tokens');
    const left = tokens.rows.map((r) => r.token_hash.toString('hex'));
    assert.ok(!left.includes(refreshTokenHash(old.refresh_token).toString('hex')));
    assert.ok(left.includes(refreshTokenHash(live.refresh_token).toString('hex')));
    await request(gw.app).post('/refresh').send({ refresh_token: live.refresh_token }).expect(200);
    assert.ok(await gw.services.mfa.consumeChallenge(fresh), 'an unexpired mfa_token still works');
    const auditAfter = await gw.t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log');
    assert.ok(auditAfter.rows[0]!.n >= auditBefore.rows[0]!.n, 'the audit trail is never swept');
    assert.deepEqual(await sweepExpired(gw.t.db), { challenges: 0, refreshTokens: 0 });
  });
});
