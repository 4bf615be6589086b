import crypto from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { Role } from '../users/user-queries.js';
import type { KeyStore } from './keys.js';

/** RFC 9068 media type of access tokens; verifiers refuse any other `typ`. */
export const ACCESS_TOKEN_TYPE = 'at+jwt';

/** RFC 8176 authentication methods. */
export type Amr = 'pwd' | 'otp';

export interface AccessClaims {
  iss: string;
  aud: string;
  sub: string;
  exp: number;
  iat: number;
  jti: string;
  sid: string;
  amr: Amr[];
  roles: Role[];
  /** When the user last presented a password (RFC 9068 `auth_time`); absent in tokens older than the claim. */
  auth_time?: number | undefined;
}

export type TokenErrorCode =
  | 'ERR_TOKEN_MALFORMED'
  | 'ERR_TOKEN_ALG'
  | 'ERR_TOKEN_TYP'
  | 'ERR_TOKEN_KID'
  | 'ERR_TOKEN_SIGNATURE'
  | 'ERR_TOKEN_EXPIRED'
  | 'ERR_TOKEN_CLAIMS';

/** Why a token was refused; `code` is stable, the message is for logs only. */
export class TokenError extends Error {
  constructor(
    readonly code: TokenErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'TokenError';
  }
}

export interface TokenSettings {
  issuer: string;
  audience: string;
  ttlSeconds: number;
}

/** Signs an access token with the active key: header `{alg, typ: at+jwt, kid}`, claims of README, "Tokens". */
export function issueAccessToken(
  keys: KeyStore,
  settings: TokenSettings,
  subject: { sub: string; sid: string; amr: Amr[]; roles: Role[]; authTime: number },
): { token: string; expiresIn: number } {
  const key = keys.active;
  const token = jwt.sign({ sid: subject.sid, amr: subject.amr, roles: subject.roles, auth_time: subject.authTime }, key.privateKey, {
    algorithm: key.alg,
    keyid: key.kid,
    header: { alg: key.alg, typ: ACCESS_TOKEN_TYPE, kid: key.kid },
    issuer: settings.issuer,
    audience: settings.audience,
    subject: subject.sub,
    jwtid: crypto.randomUUID(),
    expiresIn: settings.ttlSeconds,
  });
  return { token, expiresIn: settings.ttlSeconds };
}

const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/**
 * Verifies one of this gateway's own access tokens. The algorithm is pinned to the one of the key
 * named by `kid` (so `none`, HS256-with-the-public-key and algorithm swaps fail), and `typ`,
 * `iss`, `aud`, `exp` (required), `sub`, `sid`, `amr` and `roles` are checked.
 */
export function verifyAccessToken(keys: KeyStore, settings: Pick<TokenSettings, 'issuer' | 'audience'>, token: string): AccessClaims {
  let decoded: jwt.Jwt | null;
  try {
    decoded = jwt.decode(token, { complete: true });
  } catch {
    decoded = null; // a header or payload that is not JSON
  }
  if (!decoded || typeof decoded.payload === 'string') throw new TokenError('ERR_TOKEN_MALFORMED', 'not a JWS compact token with a JSON payload');
  const { header } = decoded;
  if (header.typ !== ACCESS_TOKEN_TYPE) throw new TokenError('ERR_TOKEN_TYP', `typ ${String(header.typ)} is not ${ACCESS_TOKEN_TYPE}`);
  const key = header.kid ? keys.byKid(header.kid) : undefined;
  if (!key) throw new TokenError('ERR_TOKEN_KID', 'unknown kid');
  if (header.alg !== key.alg) throw new TokenError('ERR_TOKEN_ALG', `alg ${header.alg} does not match the key`);

  let payload: jwt.JwtPayload;
  try {
    payload = jwt.verify(token, key.publicKey, {
      algorithms: [key.alg],
      issuer: settings.issuer,
      audience: settings.audience,
    }) as jwt.JwtPayload;
  } catch (err) {
    if (err instanceof jwt.TokenExpiredError) throw new TokenError('ERR_TOKEN_EXPIRED', 'token expired');
    const message = (err as Error).message;
    if (/signature/i.test(message)) throw new TokenError('ERR_TOKEN_SIGNATURE', message);
    throw new TokenError('ERR_TOKEN_CLAIMS', message);
  }
  const { exp, iat, sub, jti, sid, amr, roles, auth_time: authTime } = payload as Record<string, unknown>;
  if (typeof exp !== 'number') throw new TokenError('ERR_TOKEN_CLAIMS', 'exp is required');
  if (typeof sub !== 'string' || typeof sid !== 'string' || typeof jti !== 'string' || typeof iat !== 'number' || !isStringArray(amr) || !isStringArray(roles)) {
    throw new TokenError('ERR_TOKEN_CLAIMS', 'sub, sid, jti, iat, amr and roles are required');
  }
  if (authTime !== undefined && typeof authTime !== 'number') throw new TokenError('ERR_TOKEN_CLAIMS', 'auth_time must be a number');
  return { iss: settings.issuer, aud: settings.audience, sub, exp, iat, jti, sid, amr: amr as Amr[], roles: roles as Role[], auth_time: authTime };
}
