import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalRecord, type ChainRecord } from '../../src/audit/canonical.js';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { leafHash } from '../../src/audit/merkle.js';
import type { AuditEvent } from '../../src/audit/record.js';
import { StoredRecordDecoder, readStoredRecords, storedChainHash, storedLeafHash, storedRecordsSql, type StoredRecord } from '../../src/audit/stored-records.js';
import { CANONICAL_SELECT } from '../../src/audit/tree.js';
import { createEmbeddedDatabase, type Database } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { sampleEvent } from '../helpers/events.js';
import { asSuperuser, createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

/** Records whose fields take every shape the canonical form distinguishes. */
const EDGE_EVENTS: Partial<AuditEvent>[] = [
  {},
  { username: null, userId: null, ip: null, userAgent: null, deviceId: null, mfaMethod: null, requestId: null, details: null, reason: null },
  { username: '', userAgent: '', deviceId: '', requestId: '' },
  { ip: '192.0.2.255' },
  { ip: '::ffff:198.51.100.7' },
  { ip: '2001:db8:0:0:1:0:0:1' },
  { ip: 'fe80::1' },
  { ip: '::' },
  { username: 'Ärger@Example.COM', userAgent: 'Mozilla/5.0 😀 \u0301e\u0301', deviceId: '設備-1' },
  { details: { text: 'quote " backslash \\ tab \t nul \u0000 emoji 😀', nested: { list: [1, 2.5, null, true] } } },
  { details: { long: 'x'.repeat(8000) } },
];

async function writeEdgeRecords(db: Database): Promise<void> {
  const writer = createChainWriter(db, { batchMax: 4, writeTimeoutMs: 30_000 });
  for (const [i, overrides] of EDGE_EVENTS.entries()) await writer.recordEvent(sampleEvent(i, overrides));
  await Promise.all(Array.from({ length: 300 }, (_, i) => writer.recordEvent(sampleEvent(100 + i))));
  await writer.close();
}

async function readAll(db: Database, pageSize: number): Promise<StoredRecord[]> {
  const all: StoredRecord[] = [];
  for await (const page of readStoredRecords(db, 0, pageSize)) all.push(...page);
  return all;
}

/** Each copied record must be prev_hash ‖ the canonical encoder's bytes of the same row read as text. */
async function assertWireIsCanonical(db: Database): Promise<void> {
  const copied = await readAll(db, 64);
  const { rows: texts } = await db.query<ChainRecord>(CANONICAL_SELECT, [0, 100_000]);
  const { rows: stored } = await db.query<{ prev_hash: Uint8Array; hash: Uint8Array; account: string | null; username: string | null }>(
    'SELECT prev_hash, hash, account, username FROM audit_log ORDER BY seq',
  );
  assert.equal(copied.length, EDGE_EVENTS.length + 300);
  assert.equal(texts.length, copied.length);
  for (const [i, record] of copied.entries()) {
    const text = texts[i]!;
    assert.equal(record.seq, text.seq);
    assert.deepEqual(record.prevHash, Buffer.from(stored[i]!.prev_hash));
    assert.deepEqual(record.hash, Buffer.from(stored[i]!.hash));
    assert.equal(record.username, stored[i]!.username);
    assert.equal(record.account, stored[i]!.account);
    assert.equal(record.network, null);
    const canonical = canonicalRecord(text);
    assert.deepEqual(record.chained.subarray(32), canonical, `record ${record.seq}`);
    assert.deepEqual(storedChainHash(record), record.hash, `record ${record.seq}`);
    assert.deepEqual(storedLeafHash(record), leafHash(canonical));
  }
}

describe('stored records read as binary COPY, the verifiers\' one way to read the log', () => {
  describe('on PostgreSQL', () => {
    let t: TestDatabase;
    before(async () => {
      t = await createTestDatabase();
      await writeEdgeRecords(t.db);
    });
    after(async () => {
      await t.drop();
    });

    it('when records with NULLs, empty strings, IPv4, IPv6, mapped IPv4, non-ASCII text and an 8 kB detail (the longest allowed) are copied, then each is prev_hash ‖ canonical(record) byte for byte and hashes to its stored hash', async () => {
      await assertWireIsCanonical(t.db);
    });

    it('when pages of any size are read, then they give the same records in seq order', async () => {
      for (const pageSize of [1, 7, 310, 10_000]) {
        const seqs = (await readAll(t.db, pageSize)).map((r) => r.seq);
        assert.deepEqual(seqs, Array.from({ length: EDGE_EVENTS.length + 300 }, (_, i) => i + 1), `page size ${pageSize}`);
      }
    });

    it('when a second row carries the last seq of a page, or a row has seq 0, then the walk still meets it and the chain is reported broken', async () => {
      const { verifyChain } = await import('../../src/audit/verify-chain.js');
      const copy = await createTestDatabase();
      try {
        await writeEdgeRecords(copy.db);
        await copy.db.exec(`ALTER TABLE audit_log DISABLE TRIGGER USER`);
        await copy.db.exec(`INSERT INTO audit_log SELECT seq, gen_random_uuid(), occurred_at + interval '40 days', event_type, outcome, reason, 'mallory', user_id, ip, user_agent, device_id, mfa_method, session_id, 'forged', actor_id, details, prev_hash, hash, 'mallory' FROM audit_log WHERE seq = 7`);
        const duplicate = await verifyChain(copy.db, { trustedKeys: new Map(), batchSize: 7 });
        assert.equal(duplicate.valid, false, JSON.stringify(duplicate));
        assert.ok(duplicate.first_invalid_seq! <= 8, JSON.stringify(duplicate));
        await copy.db.exec(`DELETE FROM audit_log WHERE request_id = 'forged'; ALTER TABLE audit_log DROP CONSTRAINT audit_log_seq_check`);
        assert.equal((await verifyChain(copy.db, { trustedKeys: new Map(), batchSize: 7 })).valid, true);
        await copy.db.exec(`INSERT INTO audit_log SELECT 0, gen_random_uuid(), occurred_at + interval '40 days', event_type, outcome, reason, 'mallory0', user_id, ip, user_agent, device_id, mfa_method, session_id, 'forged', actor_id, details, prev_hash, hash, 'mallory0' FROM audit_log WHERE seq = 3`);
        const zero = await verifyChain(copy.db, { trustedKeys: new Map() });
        assert.equal(zero.valid, false, JSON.stringify(zero));
      } finally {
        await copy.drop();
      }
    });

    it('when a superuser gives one record a 50 MB details, then a full verification finishes and reports the hash_mismatch at that seq', async (context) => {
      const { verifyDatabase } = await import('../../src/audit/verify-both.js');
      const copy = await createTestDatabase();
      try {
        const writer = createChainWriter(copy.db, { batchMax: 4, writeTimeoutMs: 30_000 });
        for (let i = 0; i < 12; i++) await writer.recordEvent(sampleEvent(i));
        await writer.close();
        // A 50 MB row arrives in hundreds of chunks: carried by joining it to each new one, it cost
        // gigabytes of copying, and the read outlived the pool's 10 s statement timeout.
        await asSuperuser(copy.name, `UPDATE audit_log SET details = json_build_object('pad', repeat('a', 50 * 1024 * 1024)) WHERE seq = 7`);
        const started = process.hrtime.bigint();
        const { chain, tree } = await verifyDatabase(copy.db, { trustedKeys: new Map(), checkpointFiles: [] });
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        assert.equal(chain.valid, false, JSON.stringify(chain));
        assert.equal(chain.first_invalid_seq, 7, JSON.stringify(chain));
        assert.equal(chain.problem, 'hash_mismatch', JSON.stringify(chain));
        assert.equal(tree.valid, false, JSON.stringify(tree));
        assert.equal(tree.first_invalid_seq, 7, JSON.stringify(tree));
        // Information only: no wall-clock bound is asserted (the file's timeout is the backstop).
        context.diagnostic(`verified a log holding a 50 MB record in ${seconds.toFixed(1)} s`);
      } finally {
        await copy.drop();
      }
    });

    it('when a reader stops after its first page, then the connection is not reused mid-statement and the next read works', async () => {
      for (let i = 0; i < 12; i++) {
        for await (const page of readStoredRecords(t.db, 0, 100)) {
          assert.ok(page.length > 0);
          break;
        }
      }
      // More abandoned reads than the pool has connections, then a full read on the same pool.
      assert.equal((await readAll(t.db, 50)).length, EDGE_EVENTS.length + 300);
      const { rows } = await t.db.query<{ one: number }>('SELECT 1 AS one');
      assert.equal(rows[0]!.one, 1);
    });
  });

  describe('embedded (PGlite)', () => {
    let db: Database;
    let output: Buffer;
    before(async () => {
      db = await createEmbeddedDatabase(undefined);
      await migrate(db);
      await writeEdgeRecords(db);
      const chunks: Buffer[] = [];
      for await (const chunk of db.copyOut(storedRecordsSql(0, 5))) chunks.push(chunk);
      output = Buffer.concat(chunks);
    });
    after(async () => {
      await db.close();
    });

    it('when the same records are copied, then each is prev_hash ‖ canonical(record) byte for byte and hashes to its stored hash', async () => {
      await assertWireIsCanonical(db);
    });

    const decode = (chunks: Buffer[]): StoredRecord[] => {
      const decoder = new StoredRecordDecoder();
      const records = chunks.flatMap((c) => decoder.push(c));
      decoder.finish();
      return records;
    };
    const summary = (records: StoredRecord[]) => records.map((r) => [r.seq, r.chained.toString('hex'), r.hash.toString('hex'), r.username, r.account, r.network]);

    it('when the output is cut at any byte, or at many, then the decoder gives the same records', () => {
      const whole = summary(decode([output]));
      assert.equal(whole.length, 5);
      for (let cut = 0; cut <= output.length; cut++) {
        assert.deepEqual(summary(decode([output.subarray(0, cut), output.subarray(cut)])), whole, `cut at ${cut}`);
      }
      fc.assert(
        fc.property(fc.uniqueArray(fc.integer({ min: 1, max: output.length - 1 }), { maxLength: 40 }), (cuts) => {
          const at = [0, ...cuts.sort((a, b) => a - b), output.length];
          const chunks = at.slice(1).map((end, i) => output.subarray(at[i], end));
          assert.deepEqual(summary(decode(chunks)), whole);
        }),
        { numRuns: 300 },
      );
    });

    it('when the output stops inside a row or before its end marker, or is not binary COPY output, then the decoder refuses it', () => {
      for (const cut of [5, 30, output.length - 40, output.length - 1]) {
        assert.throws(() => decode([output.subarray(0, cut)]), /ended early/, `cut at ${cut}`);
      }
      assert.throws(() => decode([Buffer.from('seq,hash\n1,0123456789abcdef\n')]), /not binary COPY output/);
      assert.throws(() => decode([output, Buffer.from([0, 1])]), /after the end/);
    });
  });
});
