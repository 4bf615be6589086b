import type { Request, Response } from 'express';
import type { ChainWriter, CommittedRecord, RecordOptions } from '../audit/chain-writer.js';
import type { AuditEvent } from '../audit/record.js';
import { clientInfo } from './client-info.js';

/** Appends an audit record carrying the request's IP, user agent, device id and request id. */
export function recordForRequest(
  writer: ChainWriter,
  req: Request,
  res: Response,
  event: Omit<AuditEvent, 'ip' | 'userAgent' | 'deviceId' | 'requestId'>,
  options?: RecordOptions,
): Promise<CommittedRecord> {
  const client = clientInfo(req);
  res.locals.audited = true;
  return writer.recordEvent({ ...event, ip: client.ip, userAgent: client.userAgent, deviceId: client.deviceId, requestId: client.requestId }, options);
}

/** Whether this request already wrote its decision to the audit trail. */
export const wasAudited = (res: Response): boolean => res.locals.audited === true;
