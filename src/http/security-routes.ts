import { once } from 'node:events';
import { Router, type Request, type RequestHandler, type Response } from 'express';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { EVENT_COLUMNS, findEvents, streamEvents, summarizeLogins, type EventFilter, type EventView } from '../audit/audit-queries.js';
import { sqlTimestamp } from '../audit/clock.js';
import { verifyChain, type VerifyResult } from '../audit/verify-chain.js';
import type { Services } from '../services.js';
import { normalizeUsername, usernameProblem } from '../users/usernames.js';
import { recordForRequest } from './audit-request.js';
import { HttpError, invalidRequest, parseInput } from './errors.js';
import { authOf, requireAuth } from './require-auth.js';

const datetime = z.iso.datetime({ offset: true });
const eventsQuery = z.object({
  username: z.string().min(1).max(256).optional(),
  user_id: z.uuid().optional(),
  ip: z.string().max(64).optional(),
  event_type: z.string().regex(/^[a-z][a-z_]*(\.[a-z][a-z_]*)*$/).max(64).optional(),
  outcome: z.enum(['success', 'failure']).optional(),
  device_id: z.string().min(1).max(128).optional(),
  from: datetime.optional(),
  to: datetime.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().max(256).optional(),
});
const summaryQuery = z.object({
  from: datetime.optional(),
  to: datetime.optional(),
  bucket: z.enum(['hour', 'day']).default('hour'),
  top: z.coerce.number().int().min(1).max(100).default(10),
});

/** An address (`10.0.0.7`, `2001:db8::1`) or a CIDR block (`10.0.0.0/8`, `2001:db8::/32`), normalized. */
export function parseIpFilter(text: string): EventFilter['ip'] {
  try {
    if (text.includes('/')) {
      const [addr, bits] = ipaddr.parseCIDR(text);
      const network = addr.kind() === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(text) : ipaddr.IPv6.networkAddressFromCIDR(text);
      return { kind: 'block', value: `${network.toString()}/${bits}` };
    }
    if (!ipaddr.isValid(text) || (!text.includes(':') && !ipaddr.IPv4.isValidFourPartDecimal(text))) throw new Error('not an address');
    return { kind: 'address', value: ipaddr.process(text).toString() };
  } catch {
    throw invalidRequest('ip must be an address or a CIDR block such as 10.0.0.0/8 or 2001:db8::/32', { fields: ['ip'] });
  }
}

const encodeCursor = (seq: number): string => Buffer.from(JSON.stringify({ v: 1, before: seq })).toString('base64url');

function decodeCursor(cursor: string): number {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { v?: unknown; before?: unknown };
    if (value.v === 1 && typeof value.before === 'number' && Number.isSafeInteger(value.before) && value.before > 0) return value.before;
  } catch {
    // fall through
  }
  throw invalidRequest('the cursor is not one this gateway issued', { fields: ['cursor'] });
}

/** A CSV cell: quoted when needed, and prefixed when a spreadsheet would read it as a formula. */
function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  let text = typeof value === 'string' ? value : typeof value === 'number' ? String(value) : JSON.stringify(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

const csvLine = (event: EventView): string => `${EVENT_COLUMNS.map((c) => csvCell(event[c])).join(',')}\r\n`;

/**
 * The security team's API (SPEC §3, §5): login history with filters and exports, dashboard
 * summaries, current lockouts and unlocking, and the chain's integrity. Reads need role
 * `security` (or `admin`), changes `admin`. Every read is itself recorded as `audit.queried`.
 */
export function securityRoutes(services: Services): Router {
  const { db, writer, lockout } = services;
  const readers = requireAuth(services, ['security', 'admin']);
  const admins = requireAuth(services, ['admin']);

  const recordRead = (req: Request, res: Response, details: Record<string, unknown>, eventType = 'audit.queried') =>
    recordForRequest(writer, req, res, { eventType, outcome: 'success', actorId: authOf(res).sub, details });

  function filterOf(query: z.infer<typeof eventsQuery>): EventFilter {
    if (query.from && query.to && Date.parse(query.from) >= Date.parse(query.to)) throw invalidRequest('from must be before to', { fields: ['from', 'to'] });
    return {
      username: query.username,
      userId: query.user_id,
      ip: query.ip === undefined ? undefined : parseIpFilter(query.ip),
      eventType: query.event_type,
      outcome: query.outcome,
      deviceId: query.device_id,
      from: query.from,
      to: query.to,
    };
  }

  const filtersForRecord = (query: z.infer<typeof eventsQuery>) =>
    Object.fromEntries(Object.entries(query).filter(([k, v]) => v !== undefined && k !== 'limit' && k !== 'cursor'));

  async function exportEvents(req: Request, res: Response, query: z.infer<typeof eventsQuery>, format: 'ndjson' | 'csv'): Promise<void> {
    const filter = filterOf(query);
    // Recorded before any row leaves; the count follows when the export ends.
    await recordRead(req, res, { resource: 'login-events', filters: filtersForRecord(query), format, export: true });
    res.status(200).type(format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson').set('Cache-Control', 'no-store');
    if (format === 'csv') {
      res.set('Content-Disposition', 'attachment; filename="login-events.csv"');
      res.write(`${EVENT_COLUMNS.join(',')}\r\n`);
    }
    let rows = 0;
    for await (const page of streamEvents(db, filter)) {
      if (res.destroyed) break;
      const chunk = page.map((e) => (format === 'csv' ? csvLine(e) : `${JSON.stringify(e)}\n`)).join('');
      rows += page.length;
      if (!res.write(chunk)) await once(res, 'drain');
    }
    // The export ends only once its size is on record.
    await recordRead(req, res, { resource: 'login-events', format, rows, complete: !res.destroyed }, 'audit.exported').catch((err: unknown) =>
      services.logger.error({ err }, 'could not record the end of an export'),
    );
    res.end();
  }

  const listEvents: RequestHandler = async (req, res) => {
    const query = parseInput(eventsQuery, req.query);
    const format = req.accepts(['application/json', 'application/x-ndjson', 'text/csv']);
    if (format === 'application/x-ndjson' || format === 'text/csv') {
      await exportEvents(req, res, query, format === 'text/csv' ? 'csv' : 'ndjson');
      return;
    }
    const filter = filterOf(query);
    const beforeSeq = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    const rows = await findEvents(db, filter, { beforeSeq, limit: query.limit + 1 });
    const items = rows.slice(0, query.limit);
    await recordRead(req, res, { resource: 'login-events', filters: filtersForRecord(query), returned: items.length });
    res.set('Cache-Control', 'no-store').json({
      items,
      next_cursor: rows.length > query.limit ? encodeCursor(items[items.length - 1]!.seq) : null,
    });
  };

  const summary: RequestHandler = async (req, res) => {
    const query = parseInput(summaryQuery, req.query);
    const to = query.to ?? new Date().toISOString();
    const from = query.from ?? new Date(Date.parse(to) - 24 * 3600 * 1000).toISOString();
    if (Date.parse(from) >= Date.parse(to)) throw invalidRequest('from must be before to', { fields: ['from', 'to'] });
    if (Date.parse(to) - Date.parse(from) > 366 * 24 * 3600 * 1000) throw invalidRequest('the range is at most 366 days', { fields: ['from', 'to'] });
    const result = await summarizeLogins(db, { from, to, bucket: query.bucket, top: query.top });
    await recordRead(req, res, { resource: 'login-events/summary', filters: { from, to, bucket: query.bucket } });
    res.set('Cache-Control', 'no-store').json(result);
  };

  const accountParam = (req: Request): string => {
    const raw = String(req.params.username);
    if (usernameProblem(raw)) throw invalidRequest('not a username', { fields: ['username'] });
    return normalizeUsername(raw);
  };

  const listLockouts: RequestHandler = async (req, res) => {
    const items = (await lockout.list()).sort((a, b) => b.locked_since.localeCompare(a.locked_since));
    await recordRead(req, res, { resource: 'lockouts', returned: items.length });
    res.set('Cache-Control', 'no-store').json({ items, degraded: lockout.degraded });
  };

  const showLockout: RequestHandler = async (req, res) => {
    const account = accountParam(req);
    const info = await lockout.get(account);
    await recordRead(req, res, { resource: 'lockouts', username: account, returned: info ? 1 : 0 });
    if (!info) throw new HttpError(404, 'not_found', 'The account is not locked');
    res.set('Cache-Control', 'no-store').json(info);
  };

  const clearLockout: RequestHandler = async (req, res) => {
    const account = accountParam(req);
    const wasLocked = await lockout.clear(account);
    await recordForRequest(writer, req, res, {
      eventType: 'lockout.cleared',
      outcome: 'success',
      username: String(req.params.username),
      actorId: authOf(res).sub,
      details: { was_locked: wasLocked, ...(lockout.degraded ? { lockout_store: 'degraded' } : {}) },
    });
    res.status(204).end();
  };

  /** Cheap to call often: starts after the last checkpoint an earlier call matched, unless `full=true`. */
  let lastVerified: { seq: number; hash: Buffer } | undefined;
  let running: Promise<VerifyResult> | undefined;
  const verify: RequestHandler = async (req, res) => {
    const full = req.query.full === 'true';
    const start = full ? undefined : lastVerified;
    running ??= verifyChain(db, {
      trustedKeys: services.trustedKeys,
      checkpointFile: services.config.audit.checkpointFile,
      startAfter: start,
    }).finally(() => {
      running = undefined;
    });
    const result = await running;
    if (result.valid && result.last_verified_checkpoint) {
      lastVerified = { seq: result.last_verified_checkpoint.seq, hash: Buffer.from(result.last_verified_checkpoint.hash, 'hex') };
    }
    const body = {
      valid: result.valid,
      checked: result.checked,
      head_seq: result.head_seq,
      ...(result.first_invalid_seq !== undefined ? { first_invalid_seq: result.first_invalid_seq, problem: result.problem, detail: result.detail } : {}),
      checkpoints_checked: result.checkpoints_checked,
      from_seq: (start?.seq ?? 0) + 1,
    };
    await recordRead(req, res, { resource: 'audit/verify', full, valid: result.valid, checked: result.checked });
    res.set('Cache-Control', 'no-store').json(body);
  };

  const checkpoints: RequestHandler = async (req, res) => {
    const limit = parseInput(z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }), req.query).limit;
    const { rows } = await db.query<{ seq: number; hash: Uint8Array; signed_at: string; key_id: string; signature: Uint8Array }>(
      `SELECT seq, hash, ${sqlTimestamp('signed_at')} AS signed_at, key_id, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT $1`,
      [limit],
    );
    const items = rows.map((r) => ({
      seq: r.seq,
      hash: Buffer.from(r.hash).toString('hex'),
      signed_at: r.signed_at,
      key_id: r.key_id,
      signature: Buffer.from(r.signature).toString('base64url'),
    }));
    await recordRead(req, res, { resource: 'audit/checkpoints', returned: items.length });
    res.set('Cache-Control', 'no-store').json({ items, trusted_key_ids: [...services.trustedKeys.keys()] });
  };

  const router = Router();
  router.get('/admin/login-events', readers, listEvents);
  router.get('/admin/login-events/summary', readers, summary);
  router.get('/admin/lockouts', readers, listLockouts);
  router.get('/admin/lockouts/:username', readers, showLockout);
  router.delete('/admin/lockouts/:username', admins, clearLockout);
  router.get('/admin/audit/verify', readers, verify);
  router.get('/admin/audit/checkpoints', readers, checkpoints);
  return router;
}
