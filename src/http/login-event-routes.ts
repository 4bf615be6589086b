import { once } from 'node:events';
import { Router, type Request, type RequestHandler, type Response } from 'express';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { findEventPage, summarizeLogins, type EventFilter } from '../audit/audit-queries.js';
import { EXPORT_CONTENT_TYPES, exportEvents, exportPreamble, type ExportFormat } from '../audit/export.js';
import type { Services } from '../services.js';
import { loginEventsCursor } from './cursor.js';
import { invalidRequest, parseInput } from './errors.js';
import { clientText, timestamp } from './input.js';
import { recordRead } from './record-read.js';
import { requireAuth } from './require-auth.js';

// The query schemas of both routes: every filter a caller can send is validated here, before any
// SQL, so that whatever passes is something PostgreSQL accepts (no NUL, no year 0, no zone ids).
const eventsQuery = z.object({
  username: clientText(256).pipe(z.string().min(1)).optional(),
  user_id: z.uuid().optional(),
  ip: z.string().max(64).optional(),
  event_type: z.string().regex(/^[a-z][a-z_]*(\.[a-z][a-z_]*)*$/).max(64).optional(),
  outcome: z.enum(['success', 'failure']).optional(),
  device_id: clientText(128).pipe(z.string().min(1)).optional(),
  from: timestamp.optional(),
  to: timestamp.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().max(256).optional(),
});
const summaryQuery = z.object({
  from: timestamp.optional(),
  to: timestamp.optional(),
  bucket: z.enum(['hour', 'day']).default('hour'),
  top: z.coerce.number().int().min(1).max(100).default(10),
});

type EventsQuery = z.infer<typeof eventsQuery>;

/** An address (`10.0.0.7`, `2001:db8::1`) or a CIDR block (`10.0.0.0/8`, `2001:db8::/32`), normalized. */
export function parseIpFilter(text: string): EventFilter['ip'] {
  try {
    if (text.includes('/')) {
      const [addr, bits] = ipaddr.parseCIDR(text);
      const network = addr.kind() === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(text) : ipaddr.IPv6.networkAddressFromCIDR(text);
      return { kind: 'block', value: `${network.toString()}/${bits}` };
    }
    // Zone ids (`fe80::1%eth0`) name an interface of some host, not an address the log can hold.
    if (text.includes('%')) throw new Error('a zone id');
    if (!ipaddr.isValid(text) || (!text.includes(':') && !ipaddr.IPv4.isValidFourPartDecimal(text))) throw new Error('not an address');
    return { kind: 'address', value: ipaddr.process(text).toString() };
  } catch {
    throw invalidRequest('ip must be an address or a CIDR block such as 10.0.0.0/8 or 2001:db8::/32', { fields: ['ip'] });
  }
}

function filterOf(query: EventsQuery): EventFilter {
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

/** The filters as recorded in `audit.queried`: what was sent, without paging. */
const filtersForRecord = (query: EventsQuery) =>
  Object.fromEntries(Object.entries(query).filter(([k, v]) => v !== undefined && k !== 'limit' && k !== 'cursor'));

/**
 * Login history (docs/api.md): `GET /admin/login-events` with filters and keyset pages, or the whole
 * result streamed as NDJSON or CSV; `GET /admin/login-events/summary` for dashboards. Role
 * `security`, `auditor` or `admin`; every read is recorded as `audit.queried`.
 */
export function loginEventRoutes(services: Services): Router {
  const { db, writer } = services;
  const readers = requireAuth(services, ['security', 'auditor', 'admin']);

  async function exportTo(req: Request, res: Response, query: EventsQuery, format: ExportFormat): Promise<void> {
    const filter = filterOf(query);
    // Recorded before any row leaves; the count follows when the export ends.
    await recordRead(writer, req, res, { resource: 'login-events', filters: filtersForRecord(query), format, export: true });
    res.status(200).type(EXPORT_CONTENT_TYPES[format]).set('Cache-Control', 'no-store');
    if (format === 'csv') res.set('Content-Disposition', 'attachment; filename="login-events.csv"');
    const preamble = exportPreamble(format);
    if (preamble !== '') res.write(preamble);
    let rows = 0;
    for await (const chunk of exportEvents(db, filter, format)) {
      if (res.destroyed) break;
      rows += chunk.rows;
      if (!res.write(chunk.text)) await once(res, 'drain');
    }
    // The export ends only once its size is on record.
    await recordRead(writer, req, res, { resource: 'login-events', format, rows, complete: !res.destroyed }, 'audit.exported').catch((err: unknown) =>
      services.logger.error({ err }, 'could not record the end of an export'),
    );
    res.end();
  }

  const listEvents: RequestHandler = async (req, res) => {
    const query = parseInput(eventsQuery, req.query);
    const format = req.accepts(['application/json', 'application/x-ndjson', 'text/csv']);
    if (format === 'application/x-ndjson' || format === 'text/csv') {
      await exportTo(req, res, query, format === 'text/csv' ? 'csv' : 'ndjson');
      return;
    }
    const filter = filterOf(query);
    const beforeSeq = query.cursor === undefined ? undefined : loginEventsCursor.decode(query.cursor).before;
    const page = await findEventPage(db, filter, { beforeSeq, limit: query.limit });
    await recordRead(writer, req, res, { resource: 'login-events', filters: filtersForRecord(query), returned: page.items.length });
    res.set('Cache-Control', 'no-store').json({
      items: page.items,
      next_cursor: page.nextBeforeSeq === undefined ? null : loginEventsCursor.encode({ before: page.nextBeforeSeq }),
    });
  };

  const summary: RequestHandler = async (req, res) => {
    const query = parseInput(summaryQuery, req.query);
    const to = query.to ?? new Date().toISOString();
    const from = query.from ?? new Date(Date.parse(to) - 24 * 3600 * 1000).toISOString();
    if (Date.parse(from) >= Date.parse(to)) throw invalidRequest('from must be before to', { fields: ['from', 'to'] });
    if (Date.parse(to) - Date.parse(from) > 366 * 24 * 3600 * 1000) throw invalidRequest('the range is at most 366 days', { fields: ['from', 'to'] });
    const result = await summarizeLogins(db, { from, to, bucket: query.bucket, top: query.top });
    await recordRead(writer, req, res, { resource: 'login-events/summary', filters: { from, to, bucket: query.bucket } });
    res.set('Cache-Control', 'no-store').json(result);
  };

  const router = Router();
  router.get('/admin/login-events', readers, listEvents);
  router.get('/admin/login-events/summary', readers, summary);
  return router;
}
