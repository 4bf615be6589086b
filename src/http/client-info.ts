import { isUtf8 } from 'node:buffer';
import type { Request } from 'express';
import { normalizeIp } from '../audit/record.js';

/** Who is asking, as recorded in every audit record of a request. */
export interface ClientInfo {
  /** From the socket, or from X-Forwarded-For only through proxies trusted by TRUST_PROXY. */
  ip: string | null;
  /** The `User-Agent` header as text ({@link headerText}). */
  userAgent: string | null;
  /** The `X-Device-Id` header as text ({@link headerText}). */
  deviceId: string | null;
  requestId: string;
}

/** UTF-16 code units, so surrogates count too. */
const NOT_ASCII = /[\u0080-\uffff]/;
const BEYOND_A_BYTE = /[\u0100-\uffff]/;

/**
 * A request header's value as the text the client sent. Node's HTTP parser gives each byte of a
 * header as one character (Latin-1), so `curl -A 'curl/é-test'` from a UTF-8 terminal arrives as
 * `curl/Ã©-test`. When the bytes are valid UTF-8 they are decoded as UTF-8; otherwise they are kept
 * as they came, one character per byte (U+0000–U+00FF), so nothing is lost. The length limits of
 * the audit record apply afterwards, to this text. Every header the gateway records goes through here.
 */
export function headerText(req: Request, name: string): string | null {
  const value = req.get(name);
  if (value === undefined) return null;
  if (!NOT_ASCII.test(value) || BEYOND_A_BYTE.test(value)) return value;
  const bytes = Buffer.from(value, 'latin1');
  return isUtf8(bytes) ? bytes.toString('utf8') : value;
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
    userAgent: headerText(req, 'user-agent'),
    deviceId: headerText(req, 'x-device-id'),
    requestId: req.id as string,
  };
}
