import crypto from 'node:crypto';
import { ScureBase32Plugin, generateSync, generateURI } from 'otplib';

/** RFC 6238 as the gateway uses it: HMAC-SHA-1, 30-second steps, 6 digits, one step of drift either way. */
export const TOTP_PERIOD_SECONDS = 30;
export const TOTP_DIGITS = 6;
export const TOTP_DRIFT_STEPS = 1;
/** RFC 4226 recommends at least 128 bits; 160 bits matches the HMAC-SHA-1 block use. */
export const TOTP_SECRET_BYTES = 20;

const base32 = new ScureBase32Plugin();

export const newTotpSecret = (): Buffer => crypto.randomBytes(TOTP_SECRET_BYTES);

export const timeStepOf = (epochSeconds: number): number => Math.floor(epochSeconds / TOTP_PERIOD_SECONDS);

/** The code for `epochSeconds` (otplib's RFC 6238 implementation). */
export function totpCode(secret: Uint8Array, epochSeconds: number, digits = TOTP_DIGITS): string {
  return generateSync({ secret, epoch: epochSeconds, digits: digits, period: TOTP_PERIOD_SECONDS, algorithm: 'sha1' });
}

/**
 * The time step whose code equals `code` among the current step and `TOTP_DRIFT_STEPS` either
 * side, or undefined. Every candidate is compared in constant time, so timing reveals nothing.
 */
export function matchTotp(secret: Uint8Array, code: string, epochSeconds: number): number | undefined {
  if (!/^\d{6}$/.test(code)) return undefined;
  const now = timeStepOf(epochSeconds);
  let matched: number | undefined;
  for (let step = now - TOTP_DRIFT_STEPS; step <= now + TOTP_DRIFT_STEPS; step++) {
    const expected = Buffer.from(totpCode(secret, step * TOTP_PERIOD_SECONDS));
    if (crypto.timingSafeEqual(expected, Buffer.from(code)) && matched === undefined) matched = step;
  }
  return matched;
}

export const base32Secret = (secret: Uint8Array): string => base32.encode(secret, { padding: false });

/** The `otpauth://totp/…` URI an authenticator app scans. */
export function otpauthUri(issuer: string, account: string, secret: Uint8Array): string {
  return generateURI({ issuer, label: account, secret: base32Secret(secret), algorithm: 'sha1', digits: TOTP_DIGITS, period: TOTP_PERIOD_SECONDS });
}
