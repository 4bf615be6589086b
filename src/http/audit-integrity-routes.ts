import { Router, type RequestHandler } from 'express';
import { Counter, type Registry } from 'prom-client';
import { z } from 'zod';
import { listCheckpoints } from '../audit/checkpoints.js';
import { createVerificationService } from '../audit/verification.js';
import type { Services } from '../services.js';
import { parseInput } from './errors.js';
import { recordRead } from './record-read.js';
import { requireAuth } from './require-auth.js';

// The query schemas of both routes. `full` is a full run only when exactly `true`, as it always was.
const verifyQuery = z.object({ full: z.unknown().optional().transform((value) => value === 'true') });
const checkpointsQuery = z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) });

const SIGNATURES_METRIC = 'authtrail_audit_checkpoint_signatures_checked_total';

/** One counter per registry, however many apps share it (tests build several). */
function signatureCounter(registry: Registry): Counter {
  return (
    (registry.getSingleMetric(SIGNATURES_METRIC) as Counter | undefined) ??
    new Counter({ name: SIGNATURES_METRIC, help: 'Checkpoint signatures verified by the integrity check (each checkpoint once per process).', registers: [registry] })
  );
}

/**
 * The chain's integrity (docs/audit-chain.md): `GET /admin/audit/verify`, incremental from the last verified
 * checkpoint or `?full=true`, and `GET /admin/audit/checkpoints`. Role `security`, `auditor` or `admin`;
 * every read is recorded as `audit.queried`. The verification state lives in audit/verification.ts.
 */
export function auditIntegrityRoutes(services: Services): Router {
  const { db, writer } = services;
  const readers = requireAuth(services, ['security', 'auditor', 'admin']);
  const signatures = signatureCounter(services.metrics);
  const verification = createVerificationService({
    db,
    trustedKeys: services.trustedKeys,
    checkpointFile: services.config.audit.checkpointFile,
    onSignatureChecked: () => signatures.inc(),
  });

  const verify: RequestHandler = async (req, res) => {
    const { full } = parseInput(verifyQuery, req.query);
    const report = await verification.verify({ full });
    await recordRead(writer, req, res, { resource: 'audit/verify', full, valid: report.valid, checked: report.checked });
    res.set('Cache-Control', 'no-store').json(report);
  };

  const checkpoints: RequestHandler = async (req, res) => {
    const { limit } = parseInput(checkpointsQuery, req.query);
    const items = await listCheckpoints(db, limit);
    await recordRead(writer, req, res, { resource: 'audit/checkpoints', returned: items.length });
    res.set('Cache-Control', 'no-store').json({ items, trusted_key_ids: [...services.trustedKeys.keys()] });
  };

  const router = Router();
  router.get('/admin/audit/verify', readers, verify);
  router.get('/admin/audit/checkpoints', readers, checkpoints);
  return router;
}
