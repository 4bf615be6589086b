import crypto from 'node:crypto';
import fs from 'node:fs';
import { chainHash, type ChainRecord } from '../../src/audit/canonical.js';
import { checkpointToLine, signCheckpoint, type Checkpoint, type SigningKey } from '../../src/audit/checkpoints.js';
import { formatMicros } from '../../src/audit/clock.js';
import type { Queryable } from '../../src/db/database.js';
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
        occurred_at: formatMicros(BASE_MICROS + BigInt(seq) * 1000n),
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
      if (every > 0 && seq % every === 0) pageCheckpoints.push(signCheckpoint(options.key, tail, formatMicros(BASE_MICROS + BigInt(seq) * 1000n + 1n)));
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
