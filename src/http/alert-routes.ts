import { Router, type RequestHandler } from 'express';
import { z } from 'zod';
import { findAlert, findAlertPage } from '../alerts/alert-queries.js';
import { RULE_NAMES } from '../alerts/rules.js';
import { isUuid } from '../audit/record.js';
import type { Queryable } from '../db/database.js';
import type { Services } from '../services.js';
import { recordForRequest } from './audit-request.js';
import { cursorCodec } from './cursor.js';
import { HttpError, parseInput } from './errors.js';
import { clientText } from './input.js';
import { optionalJsonBody } from './json-body.js';
import { recordRead } from './record-read.js';
import { authOf, requireAuth } from './require-auth.js';

/** `GET /admin/alerts`: the next page holds the alerts raised before `before` (newest first). */
export const alertsCursor = cursorCodec('alerts', { before: { type: 'position' } });

const listQuery = z.object({
  rule: z.enum(RULE_NAMES).optional(),
  status: z.enum(['open', 'resolved', 'all']).default('open'),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().max(256).optional(),
});
const resolveBody = z.object({ note: clientText(1000).optional() }).strict();

/** Resolutions of one alert, one at a time across processes (a transaction-scoped advisory lock on its id). */
const RESOLVE_LOCK = `SELECT pg_advisory_xact_lock(hashtextextended('authtrail/alert-resolve/' || $1, 0))`;

/**
 * The security team's alerts (docs/api.md, docs/alerts.md): `GET /admin/alerts` lists them
 * (roles `security`, `auditor`, `admin`; recorded as `audit.queried`), and
 * `POST /admin/alerts/{id}/resolve` closes one (roles `security`, `admin`) by writing
 * `alert.resolved` with the actor. An alert is resolved once: the check and the record happen
 * under a lock on the alert id, so two people resolving it at once get one 204 and one 409.
 */
export function alertRoutes(services: Services): Router {
  const { db, writer } = services;
  const readers = requireAuth(services, ['security', 'auditor', 'admin']);
  const resolvers = requireAuth(services, ['security', 'admin']);
  /** In-process queue per alert id: embedded mode has one connection and one instance. */
  const resolving = new Map<string, Promise<unknown>>();

  const list: RequestHandler = async (req, res) => {
    const query = parseInput(listQuery, req.query);
    const beforeSeq = query.cursor === undefined ? undefined : alertsCursor.decode(query.cursor).before;
    const page = await findAlertPage(db, { rule: query.rule, status: query.status }, { beforeSeq, limit: query.limit });
    await recordRead(writer, req, res, {
      resource: 'alerts',
      filters: { status: query.status, ...(query.rule ? { rule: query.rule } : {}) },
      returned: page.items.length,
    });
    res.set('Cache-Control', 'no-store').json({
      items: page.items,
      next_cursor: page.nextBeforeSeq === undefined ? null : alertsCursor.encode({ before: page.nextBeforeSeq }),
    });
  };

  const resolve: RequestHandler = async (req, res) => {
    const body = parseInput(resolveBody, req.body);
    const id = String(req.params.id).toLowerCase();
    if (!isUuid(id)) throw new HttpError('not_found', { detail: 'No such alert' });

    const decide = async (q: Pick<Queryable, 'query'>): Promise<void> => {
      const alert = await findAlert(q, id);
      if (!alert) throw new HttpError('not_found', { detail: 'No such alert' });
      if (alert.status === 'resolved') throw new HttpError('alert_already_resolved', { detail: `resolved in record ${alert.resolution!.seq}` });
      await recordForRequest(writer, req, res, {
        eventType: 'alert.resolved',
        outcome: 'success',
        actorId: authOf(res).sub,
        details: { alert_id: id, rule: alert.rule, key: alert.key, raised_seq: alert.seq, note: body.note ?? null },
      });
    };
    const previous = resolving.get(id) ?? Promise.resolve();
    const mine = previous.catch(() => {}).then(() =>
      db.kind === 'postgres'
        ? db.transaction(async (tx) => {
            await tx.query(RESOLVE_LOCK, [id]);
            await decide(tx);
          })
        : decide(db),
    );
    resolving.set(id, mine);
    try {
      await mine;
    } finally {
      if (resolving.get(id) === mine) resolving.delete(id);
    }
    res.status(204).end();
  };

  const router = Router();
  router.get('/admin/alerts', readers, list);
  router.post('/admin/alerts/:id/resolve', resolvers, optionalJsonBody(), resolve);
  return router;
}
