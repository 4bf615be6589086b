import { Router, type RequestHandler } from 'express';
import type { WitnessReport } from '../audit/witness-push.js';
import type { Services } from '../services.js';
import { recordRead } from './record-read.js';
import { requireAuth } from './require-auth.js';

const NO_WITNESSES: WitnessReport = { witnesses: [], quorum: { required: 0, checkpoint_size: 0, cosigned_by: [], met: false } };

/**
 * `GET /admin/audit/witnesses`: each configured witness with its latest stored cosigned size, its
 * last error and refusal, and whether the latest checkpoint has its quorum of cosignatures. Roles
 * `security`, `auditor` and `admin`; each read is recorded as `audit.queried`.
 */
export function witnessRoutes(services: Services): Router {
  const readers = requireAuth(services, ['security', 'auditor', 'admin']);

  const witnesses: RequestHandler = async (req, res) => {
    const report = services.witnesses ? await services.witnesses.report() : NO_WITNESSES;
    await recordRead(services.writer, req, res, { resource: 'audit/witnesses', returned: report.witnesses.length });
    res.set('Cache-Control', 'no-store').json(report);
  };

  const router = Router();
  router.get('/admin/audit/witnesses', readers, witnesses);
  return router;
}
