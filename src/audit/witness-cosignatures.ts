import type { Queryable } from '../db/database.js';
import type { NoteVerifierKey } from './note.js';

type Db = Pick<Queryable, 'query'>;

/**
 * Witness cosignatures in `audit_cosignatures` (migration 008): one row per checkpoint size,
 * witness and witness key, holding the complete signature line. Rows are written only after the
 * line verified with the configured witness key (src/audit/witness-push.ts).
 */

/** Stores verified cosignature lines of the checkpoint of `treeSize`; a line already stored is kept. */
export async function storeCosignatures(db: Db, treeSize: number, witness: NoteVerifierKey, lines: readonly string[]): Promise<void> {
  for (const line of lines) {
    await db.query(
      `INSERT INTO public.audit_cosignatures (tree_size, witness, key_id, line) VALUES ($1, $2, $3, $4)
       ON CONFLICT (tree_size, witness, key_id) DO NOTHING`,
      [treeSize, witness.name, witness.keyHash, line.replace(/\n$/, '')],
    );
  }
}

/** The largest checkpoint size this witness key cosigned, as far as the database knows (0: none). */
export async function lastCosignedSize(db: Db, witness: NoteVerifierKey): Promise<number> {
  // Newest first on the primary key (tree_size, witness, key_id): stops at this witness's latest row.
  const { rows } = await db.query<{ tree_size: number }>(
    'SELECT tree_size FROM public.audit_cosignatures WHERE witness = $1 AND key_id = $2 ORDER BY tree_size DESC LIMIT 1',
    [witness.name, witness.keyHash],
  );
  return rows[0]?.tree_size ?? 0;
}

/** Every stored cosignature line of the checkpoint of `treeSize`, each ending in "\n", in a stable order: what a checkpoint note appends. */
export async function cosignatureLines(db: Db, treeSize: number): Promise<string[]> {
  const { rows } = await db.query<{ line: string }>('SELECT line FROM public.audit_cosignatures WHERE tree_size = $1 ORDER BY witness, key_id', [treeSize]);
  return rows.map((r) => `${r.line}\n`);
}

/** The latest checkpoint's size, and which of `witnesses` cosigned exactly it. */
export async function latestCheckpointCosigners(db: Db, witnesses: readonly NoteVerifierKey[]): Promise<{ size: number; cosigners: string[] }> {
  const { rows: latest } = await db.query<{ seq: number }>('SELECT seq FROM public.audit_checkpoints ORDER BY seq DESC LIMIT 1');
  const size = latest[0]?.seq ?? 0;
  if (size === 0 || witnesses.length === 0) return { size, cosigners: [] };
  const { rows } = await db.query<{ witness: string; key_id: Uint8Array }>('SELECT witness, key_id FROM public.audit_cosignatures WHERE tree_size = $1', [size]);
  const cosigners = witnesses
    .filter((w) => rows.some((r) => r.witness === w.name && Buffer.from(r.key_id).equals(w.keyHash)))
    .map((w) => w.name);
  return { size, cosigners };
}
