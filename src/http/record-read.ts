import type { Request, Response } from 'express';
import type { ChainWriter, CommittedRecord } from '../audit/chain-writer.js';
import { recordForRequest } from './audit-request.js';
import { authOf } from './require-auth.js';

/**
 * Records a read of the security API with the reader as actor: `audit.queried` (filters and rows
 * returned), or `audit.exported` when an export ends. The audit of the audit.
 */
export function recordRead(
  writer: ChainWriter,
  req: Request,
  res: Response,
  details: Record<string, unknown>,
  eventType: 'audit.queried' | 'audit.exported' = 'audit.queried',
): Promise<CommittedRecord> {
  return recordForRequest(writer, req, res, { eventType, outcome: 'success', actorId: authOf(res).sub, details });
}
