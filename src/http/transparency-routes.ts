import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { Router, type Request, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import { checkpointNoteAt, checkpointVerifierKey, cosignedNote, latestCheckpointNote, loadSigningKey, type Checkpoint } from '../audit/checkpoints.js';
import { HASH_SIZE, consistencyProof, inclusionProof } from '../audit/merkle.js';
import { parseTilePath, tilePath } from '../audit/tiles.js';
import { storedTree } from '../audit/tree.js';
import type { Services } from '../services.js';
import { HttpError, invalidRequest, parseInput } from './errors.js';
import { recordRead } from './record-read.js';
import { requireAuth } from './require-auth.js';

/** A tree size or seq as sent: decimal, no sign, no leading zero, a safe integer ≥ 1. */
const count = z
  .string()
  .regex(/^[1-9][0-9]{0,15}$/, 'must be a positive decimal integer')
  .transform(Number)
  .refine((n) => Number.isSafeInteger(n), 'is too large');
const proofParams = z.object({ seq: count });
const proofQuery = z.object({ tree_size: count.optional() });
const consistencyQuery = z.object({ from: count, to: count });

const b64 = (hash: Buffer): string => hash.toString('base64');

/**
 * The transparency log over the audit trail (docs/audit-chain.md, "The Merkle tree"; docs/api.md):
 *
 * - `GET /audit-log/checkpoint`: the latest checkpoint note with every stored cosignature;
 * - `GET /audit-log/tile/{L}/{N}[.p/{W}]`: C2SP tlog-tiles hash tiles;
 * - `GET /audit-log/key`: the checkpoint key's note verifier key;
 * - `GET /admin/audit/proof/{seq}?tree_size=N`: the record's inclusion proof in a checkpointed tree;
 * - `GET /admin/audit/consistency?from=A&to=B`: a consistency proof between two checkpointed trees.
 *
 * Hashes only, never record contents. Roles `security`, `auditor` and `admin`, each read recorded
 * as `audit.queried`; with AUDIT_LOG_PUBLIC=true the three /audit-log routes answer anyone and
 * are not recorded (an anonymous reader could otherwise grow the log at will).
 */
export function transparencyRoutes(services: Services): Router {
  const { db, writer, config } = services;
  const readers = requireAuth(services, ['security', 'auditor', 'admin']);
  const publicLog = config.audit.logPublic;
  const logReaders: RequestHandler[] = publicLog ? [] : [readers];
  const record = (req: Request, res: Response, details: Record<string, unknown>) =>
    publicLog && !req.path.startsWith('/admin/') ? Promise.resolve() : recordRead(writer, req, res, details);
  /** Immutable content: cacheable by anyone when public, else never stored. */
  const cacheable = (res: Response, maxAge: string) => res.set('Cache-Control', publicLog ? `public, ${maxAge}` : 'no-store');

  let publicKey: KeyObject | undefined;
  const verifierKey = (): string | undefined => {
    if (!publicKey && fs.existsSync(config.audit.signingKeyFile)) publicKey = loadSigningKey(config.audit.signingKeyFile, { generate: false }).publicKey;
    return publicKey ? checkpointVerifierKey(config.audit.logOrigin, publicKey) : undefined;
  };

  /** The stored checkpoint note of `size` (the latest when absent), or undefined. */
  async function checkpointOf(size: number | undefined): Promise<Checkpoint | undefined> {
    const cp = size === undefined ? await latestCheckpointNote(db) : await checkpointNoteAt(db, size);
    return cp?.root ? cp : undefined;
  }

  /** 404 for a size that has no signed checkpoint, naming the field. */
  const noCheckpoint = (size: number | undefined, field: string): HttpError =>
    new HttpError('not_found', {
      detail: size === undefined ? 'No checkpoint has been signed yet' : `${field} ${size} is not the size of a signed checkpoint`,
      extensions: { fields: [field] },
    });

  const checkpoint: RequestHandler = async (req, res) => {
    const cp = await latestCheckpointNote(db);
    const note = cp ? await cosignedNote(db, cp) : undefined;
    await record(req, res, { resource: 'audit-log/checkpoint', tree_size: cp?.seq ?? null });
    if (!note) throw new HttpError('not_found', { detail: 'No checkpoint has been signed yet' });
    res.set('Cache-Control', publicLog ? 'no-cache' : 'no-store').type('text/plain; charset=utf-8').send(note);
  };

  const key: RequestHandler = async (req, res) => {
    const vkey = verifierKey();
    await record(req, res, { resource: 'audit-log/key' });
    if (!vkey) throw new HttpError('not_found', { detail: 'The checkpoint key is not available' });
    cacheable(res, 'max-age=300').type('text/plain; charset=utf-8').send(`${vkey}\n`);
  };

  const tile: RequestHandler = async (req, res) => {
    const segments = (req.params as { index?: string[] }).index ?? [];
    const coordinates = parseTilePath(`tile/${String(req.params.level)}/${segments.join('/')}`);
    if (!coordinates) throw invalidRequest('not a tile path: tile/<L>/<N>[.p/<W>] (C2SP tlog-tiles)', { fields: ['tile'] });
    const { level, index, width } = coordinates;
    const { rows } = await db.query<{ hashes: Uint8Array }>('SELECT hashes FROM audit_tiles WHERE level = $1 AND idx = $2', [level, index]);
    const stored = rows[0] ? Buffer.from(rows[0].hashes) : undefined;
    const found = stored !== undefined && stored.length >= width * HASH_SIZE;
    await record(req, res, { resource: 'audit-log/tile', tile: tilePath(level, index, width), returned: found ? 1 : 0 });
    if (!found) throw new HttpError('not_found', { detail: 'No such tile (yet)' });
    cacheable(res, 'max-age=31536000, immutable').type('application/octet-stream').send(stored.subarray(0, width * HASH_SIZE));
  };

  const proof: RequestHandler = async (req, res) => {
    const { seq } = parseInput(proofParams, req.params);
    const { tree_size: requested } = parseInput(proofQuery, req.query);
    const cp = await checkpointOf(requested);
    if (!cp) {
      await record(req, res, { resource: 'audit/proof', seq, tree_size: requested ?? null, returned: 0 });
      throw noCheckpoint(requested, 'tree_size');
    }
    const size = cp.seq;
    if (seq > size) {
      await record(req, res, { resource: 'audit/proof', seq, tree_size: size, returned: 0 });
      throw new HttpError('not_found', { detail: `record ${seq} is not in the tree of size ${size}`, extensions: { fields: ['seq'] } });
    }
    const tree = storedTree(db, size);
    const [leaf, path, note] = await Promise.all([tree.node(0, seq - 1), inclusionProof(seq - 1, size, tree), cosignedNote(db, cp)]);
    await record(req, res, { resource: 'audit/proof', seq, tree_size: size, returned: 1 });
    res.set('Cache-Control', 'no-store').json({
      seq,
      leaf_index: seq - 1,
      leaf_hash: b64(leaf),
      tree_size: size,
      root_hash: b64(cp.root!),
      inclusion_proof: path.map(b64),
      checkpoint: note,
    });
  };

  const consistency: RequestHandler = async (req, res) => {
    const { from, to } = parseInput(consistencyQuery, req.query);
    if (from > to) throw invalidRequest('from must not exceed to', { fields: ['from', 'to'] });
    const [older, newer] = [await checkpointOf(from), await checkpointOf(to)];
    await record(req, res, { resource: 'audit/consistency', from, to, returned: older && newer ? 1 : 0 });
    if (!older) throw noCheckpoint(from, 'from');
    if (!newer) throw noCheckpoint(to, 'to');
    const hashes = await consistencyProof(from, to, storedTree(db, to));
    res.set('Cache-Control', 'no-store').json({ from, to, from_root: b64(older.root!), to_root: b64(newer.root!), consistency_proof: hashes.map(b64) });
  };

  const router = Router();
  router.get('/audit-log/checkpoint', ...logReaders, checkpoint);
  router.get('/audit-log/key', ...logReaders, key);
  router.get('/audit-log/tile/:level/*index', ...logReaders, tile);
  router.get('/admin/audit/proof/:seq', readers, proof);
  router.get('/admin/audit/consistency', readers, consistency);
  return router;
}
