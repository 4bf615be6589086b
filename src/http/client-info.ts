import type { Request } from 'express';
import { normalizeIp } from '../audit/record.js';

/** Who is asking, as recorded in every audit record of a request. */
export interface ClientInfo {
  /** From the socket, or from X-Forwarded-For only through proxies trusted by TRUST_PROXY. */
  ip: string | null;
  userAgent: string | null;
  deviceId: string | null;
  requestId: string;
}

export function clientInfo(req: Request): ClientInfo {
  let ip: string | null;
  try {
    ip = normalizeIp(req.ip);
  } catch {
    ip = null;
  }
  return {
    ip,
    userAgent: req.get('user-agent') ?? null,
    deviceId: req.get('x-device-id') ?? null,
    requestId: req.id as string,
  };
}
