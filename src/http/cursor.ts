import { USERNAME_MAX_LENGTH } from '../users/usernames.js';
import { invalidRequest } from './errors.js';

/** The format version of every cursor this gateway issues; any other is refused. */
const CURSOR_VERSION = 1;

/** What a cursor field may hold. */
export type CursorField =
  /** A positive safe integer (a `seq`). */
  | { type: 'position' }
  /** Well-formed Unicode text without NUL, at most `maxLength` UTF-16 units (a normalized username). */
  | { type: 'text'; maxLength: number };

type FieldValue<F extends CursorField> = F extends { type: 'position' } ? number : string;
export type CursorValue<S extends Record<string, CursorField>> = { [K in keyof S]: FieldValue<S[K]> };

export interface CursorCodec<T> {
  /** The opaque `next_cursor` for a page that ends at `value`. */
  encode(value: T): string;
  /** The position a cursor names; anything this codec did not issue is 400 `invalid_request` naming `cursor`. */
  decode(cursor: string): T;
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function valid(field: CursorField, value: unknown): boolean {
  if (field.type === 'position') return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
  // NUL and lone surrogates: PostgreSQL refuses the first, UTF-8 cannot carry the second.
  return typeof value === 'string' && value.length <= field.maxLength && value.isWellFormed() && !value.includes('\u0000');
}

/**
 * The one keyset-cursor format of the gateway's list routes: base64url (no padding) of the JSON
 * `{"v":1,"k":<kind>,<fields…>}`. Decoding is strict: exactly the bytes `encode` would produce for
 * a well-typed value of this kind, so a cursor of another route, another version, with extra or
 * missing members, unsafe integers, NUL or lone surrogates never reaches a query.
 */
export function cursorCodec<const S extends Record<string, CursorField>>(kind: string, fields: S): CursorCodec<CursorValue<S>> {
  const names = Object.keys(fields);
  const encode = (value: CursorValue<S>): string => {
    const body: Record<string, unknown> = { v: CURSOR_VERSION, k: kind };
    for (const name of names) {
      const member = (value as Record<string, unknown>)[name];
      if (!valid(fields[name]!, member)) throw new TypeError(`cursor field ${name} is out of range`);
      body[name] = member;
    }
    return Buffer.from(JSON.stringify(body), 'utf8').toString('base64url');
  };
  const refuse = () => invalidRequest('the cursor is not one this gateway issued', { fields: ['cursor'] });
  return {
    encode,
    decode(cursor) {
      if (!BASE64URL.test(cursor)) throw refuse();
      let parsed: unknown;
      try {
        parsed = JSON.parse(utf8.decode(Buffer.from(cursor, 'base64url')));
      } catch {
        throw refuse();
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw refuse();
      const body = parsed as Record<string, unknown>;
      if (body.v !== CURSOR_VERSION || body.k !== kind) throw refuse();
      if (Object.keys(body).length !== names.length + 2) throw refuse();
      const value: Record<string, unknown> = {};
      for (const name of names) {
        if (!Object.hasOwn(body, name) || !valid(fields[name]!, body[name])) throw refuse();
        value[name] = body[name];
      }
      // Only what encode issues: no other key order, spacing, escapes or trailing bits.
      if (encode(value as CursorValue<S>) !== cursor) throw refuse();
      return value as CursorValue<S>;
    },
  };
}

/** `GET /admin/login-events`: the next page holds the records before `before` (newest first). */
export const loginEventsCursor = cursorCodec('login-events', { before: { type: 'position' } });

/** `GET /admin/users`: the next page holds the users whose normalized username sorts after `after`. */
export const usersCursor = cursorCodec('users', { after: { type: 'text', maxLength: USERNAME_MAX_LENGTH } });
