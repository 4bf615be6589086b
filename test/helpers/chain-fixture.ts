import crypto from 'node:crypto';
import fs from 'node:fs';
import { chainHash, recordLeafHash, type ChainRecord } from '../../src/audit/canonical.js';
import { checkpointToLine, signCheckpoint, type Checkpoint, type SigningKey } from '../../src/audit/checkpoints.js';
import { formatMicros } from '../../src/audit/clock.js';
import { readTreeEdge, tileParams } from '../../src/audit/tree.js';
import { AUDIT_CHAIN_LOCK } from '../../src/db/advisory-locks.js';
import type { Database, Queryable } from '../../src/db/database.js';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { sampleEvent } from './events.js';
import { normalizeUsername } from '../../src/users/usernames.js';

const BASE_MICROS = BigInt(Date.parse('2026-03-01T00:00:00Z')) * 1000n;

export interface ChainTail {
  seq: number;
  hash: Buffer;
}

/** The current head of `audit_log` (seq 0 and the genesis hash when empty). */
export async function chainTail(db: Pick<Queryable, 'query'>): Promise<ChainTail> {
  const { rows } = await db.query<{ seq: number; hash: Uint8Array }>('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1');
  return rows[0] ? { seq: rows[0].seq, hash: Buffer.from(rows[0].hash) } : { seq: 0, hash: Buffer.alloc(32) };
}

/**
 * Appends `count` correctly chained records straight into `audit_log` (bulk, thousands a second),
 * and signs a checkpoint every `checkpointEvery` records with `key`: into `audit_checkpoints`, and
 * also as lines of `checkpointFile` when given. Returns the new tail and the checkpoints written.
 */
export async function appendSignedChain(
  db: Pick<Queryable, 'query'>,
  options: { count: number; key: SigningKey; checkpointEvery?: number; checkpointFile?: string; username?: (seq: number) => string },
): Promise<{ tail: ChainTail; checkpoints: Checkpoint[] }> {
  let tail = await chainTail(db);
  // Times follow the head's (occurred_at never decreases along seq), a millisecond apart.
  const { rows: head } = await db.query<{ micros: string | null }>(
    `SELECT (extract(epoch FROM occurred_at) * 1000000)::bigint::text AS micros FROM audit_log WHERE seq = $1`,
    [tail.seq],
  );
  const base = head[0]?.micros ? BigInt(head[0].micros) - BigInt(tail.seq) * 1000n : BASE_MICROS;
  const every = options.checkpointEvery ?? 0;
  const checkpoints: Checkpoint[] = [];
  const chunk = 5000;
  for (let done = 0; done < options.count; done += chunk) {
    const n = Math.min(chunk, options.count - done);
    const columns = { seq: [] as number[], id: [] as string[], at: [] as string[], user: [] as string[], account: [] as string[], prev: [] as Buffer[], hash: [] as Buffer[] };
    const pageCheckpoints: Checkpoint[] = [];
    for (let i = 0; i < n; i++) {
      const seq = tail.seq + 1;
      const username = options.username?.(seq) ?? `fixture-${seq % 97}@example.com`;
      const record: ChainRecord = {
        seq,
        event_id: crypto.randomUUID(),
        occurred_at: formatMicros(base + BigInt(seq) * 1000n),
        event_type: 'login.failed',
        outcome: 'failure',
        reason: 'wrong_password',
        username,
        user_id: null,
        ip: null,
        user_agent: null,
        device_id: null,
        mfa_method: null,
        session_id: null,
        request_id: null,
        actor_id: null,
        details: null,
      };
      const hash = chainHash(tail.hash, record);
      columns.seq.push(seq);
      columns.id.push(record.event_id);
      columns.at.push(record.occurred_at);
      columns.user.push(username);
      columns.account.push(normalizeUsername(username));
      columns.prev.push(tail.hash);
      columns.hash.push(hash);
      tail = { seq, hash };
      if (every > 0 && seq % every === 0) pageCheckpoints.push(signCheckpoint(options.key, tail, formatMicros(base + BigInt(seq) * 1000n + 1n)));
    }
    await db.query(
      `INSERT INTO audit_log (seq, event_id, occurred_at, event_type, outcome, reason, username, account, prev_hash, hash)
       SELECT s, i, a::timestamptz, 'login.failed', 'failure', 'wrong_password', u, acc, p, h
         FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bytea[]) AS t(s, i, a, u, acc, p, h)`,
      [columns.seq, columns.id, columns.at, columns.user, columns.account, columns.prev, columns.hash],
    );
    if (pageCheckpoints.length > 0) await insertCheckpoints(db, pageCheckpoints, options.checkpointFile);
    checkpoints.push(...pageCheckpoints);
  }
  return { tail, checkpoints };
}

/** Stores signed checkpoints as the checkpointer would: table rows and, when given, file lines. */
export async function insertCheckpoints(db: Pick<Queryable, 'query'>, checkpoints: readonly Checkpoint[], file?: string): Promise<void> {
  await db.query(
    `INSERT INTO audit_checkpoints (seq, hash, signed_at, key_id, signature)
     SELECT s, h, a::timestamptz, k, g FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::text[], $5::bytea[]) AS t(s, h, a, k, g)`,
    [checkpoints.map((c) => c.seq), checkpoints.map((c) => c.hash), checkpoints.map((c) => c.signedAt), checkpoints.map((c) => c.keyId), checkpoints.map((c) => c.signature)],
  );
  if (file) fs.appendFileSync(file, checkpoints.map((c) => `${checkpointToLine(c)}\n`).join(''));
}

/**
 * Calls `audit_append` (migration 014's overload) as any holder of the runtime role could, with
 * one record after the current head whose fields are `fields` over a plain login failure: its
 * hash correct, and, unless `tiles` is false, the tiles that grow the tree by its leaf. Returns
 * the function's rows (the tiles' new widths).
 */
export async function callAuditAppend(
  db: Pick<Queryable, 'query'>,
  fields: Partial<Omit<ChainRecord, 'seq'>>,
  options: { tiles?: boolean } = {},
): Promise<Array<{ tile_level: number; tile_idx: number; tile_width: number }>> {
  const tail = await chainTail(db);
  const record: ChainRecord = {
    seq: tail.seq + 1, event_id: crypto.randomUUID(), occurred_at: formatMicros(BigInt(Date.now()) * 1000n), event_type: 'login.failed',
    outcome: 'failure', reason: 'wrong_password', username: 'hostile@example.com', user_id: null, ip: null, user_agent: null,
    device_id: null, mfa_method: null, session_id: null, request_id: null, actor_id: null, details: null, ...fields,
  };
  const hash = chainHash(tail.hash, record);
  const { edge, tiles } = options.tiles === false ? { edge: undefined, tiles: [] } : await readTreeEdge(db).then(async (e) => ({ edge: e, tiles: (await e.append([recordLeafHash(record)])).tiles }));
  const [levels, idxs, hashes] = tileParams(edge?.size ?? 0, tiles);
  const { rows } = await db.query<{ tile_level: number; tile_idx: number; tile_width: number }>(
    `SELECT * FROM audit_append($1, $2, $3, $4, $5, $6::uuid[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[],
       $12::uuid[], $13::inet[], $14::text[], $15::text[], $16::text[], $17::uuid[], $18::text[], $19::uuid[], $20::json[], $21::text[],
       $22::smallint[], $23::bigint[], $24::bytea[])`,
    [
      ...AUDIT_CHAIN_LOCK, tail.seq, tail.hash, hash, [record.event_id], [record.occurred_at], [record.event_type], [record.outcome],
      [record.reason], [record.username], [record.user_id], [record.ip], [record.user_agent], [record.device_id], [record.mfa_method],
      [record.session_id], [record.request_id], [record.actor_id], [record.details], [record.username === null ? null : normalizeUsername(record.username)],
      levels, idxs, hashes,
    ],
  );
  return rows;
}

/** Writes `count` sample events through a chain writer of its own (one at a time, in order), and closes it. */
export async function writeSampleEvents(db: Database, count: number, options: { batchMax?: number; writeTimeoutMs?: number } = {}): Promise<void> {
  const writer = createChainWriter(db, { batchMax: options.batchMax ?? 8, writeTimeoutMs: options.writeTimeoutMs ?? 5000 });
  try {
    for (let i = 0; i < count; i++) await writer.recordEvent(sampleEvent(i));
  } finally {
    await writer.close();
  }
}
