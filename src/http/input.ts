import { z } from 'zod';

/**
 * Validators for client-controlled values that reach SQL. Whatever passes them PostgreSQL can
 * store, compare and parse, so a hostile value is a 400 naming its field, never a database error.
 */

/** Text PostgreSQL can hold: no NUL (text cannot), no unpaired surrogate (no UTF-8 form), at most `max` characters. */
export const clientText = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !s.includes('\u0000') && s.isWellFormed(), 'must not contain NUL or unpaired surrogates');

/** Largest UTC offset of any real time zone, in minutes (UTC+14:00; the lowest is UTC−12:00). */
const MAX_OFFSET_MINUTES = 14 * 60;

/**
 * An RFC 3339 date-time with an explicit offset, in years 0001–9999 and with an offset no real
 * zone exceeds: PostgreSQL refuses year 0 and offsets past ±15:59, and nothing needs them.
 */
export const timestamp = z.iso.datetime({ offset: true }).refine((text) => {
  const year = Number(text.slice(0, 4));
  const offset = /([+-])(\d{2}):?(\d{2})$/.exec(text);
  const minutes = offset ? Number(offset[2]) * 60 + Number(offset[3]) : 0;
  return year >= 1 && minutes <= MAX_OFFSET_MINUTES && Number.isFinite(Date.parse(text));
}, 'must be an RFC 3339 date-time in years 0001–9999 with an offset of at most ±14:00');
