/**
 * `authtrail/verifier`: verifies the gateway's access tokens inside downstream services, locally,
 * with the gateway's published keys (README, "For downstream services"). Algorithms are pinned, `exp` is required, `iss`,
 * `aud` and `typ` are checked; the JWKS is cached and refetched on an unknown `kid` at most once
 * per `minRefetchIntervalMs`, so a key rotation needs no restart and forged `kid`s cannot make
 * the service hammer the gateway.
 *
 * jose's `createRemoteJWKSet` fetches and caches the JWKS (timeout, no redirects, JWK Set
 * validation, `fresh` counted from the last successful fetch only). Tokens are then checked with
 * jsonwebtoken against Node key objects, synchronously while the cache is fresh. A fetch that fails
 * leaves the cache as it was: its keys still verify, the fetch is retried once `minRefetchIntervalMs`
 * has passed, and a token whose key is not cached gets `ERR_JWKS_UNAVAILABLE` (503), never a 401.
 */
import crypto, { type JsonWebKey, type KeyObject } from 'node:crypto';
import type { RequestHandler } from 'express';
import { createRemoteJWKSet, type JSONWebKeySet } from 'jose';
import jwt from 'jsonwebtoken';

export type Algorithm = 'ES256' | 'RS256';

export interface VerifierOptions {
  /** e.g. `https://auth.example.com/.well-known/jwks.json` */
  jwksUrl: string;
  issuer: string;
  audience: string;
  /** Accepted algorithms; a key is used only with its own. Default both. */
  algorithms?: Algorithm[];
  /** Least time between two JWKS fetches, whether an unknown `kid` or a failed fetch asks for another. Default 30 s. */
  minRefetchIntervalMs?: number;
  /**
   * Keys are fetched again this long after the last successful fetch even when every `kid` is known
   * (drops retired keys); while that fetch fails, the cached keys still verify. Default 10 min.
   */
  cacheMaxAgeMs?: number;
  /** Seconds of clock skew tolerated on `exp` and `iat`. Default 5. */
  clockToleranceSeconds?: number;
  /** Longest wait for the JWKS. Default 5 s. */
  fetchTimeoutMs?: number;
}

/** The claims of a verified access token. */
export interface AccessTokenClaims {
  iss: string;
  aud: string | string[];
  sub: string;
  exp: number;
  iat: number;
  jti: string;
  sid: string;
  amr: string[];
  roles: string[];
}

export type VerifierErrorCode =
  | 'ERR_TOKEN_MISSING'
  | 'ERR_TOKEN_MALFORMED'
  | 'ERR_TOKEN_TYP'
  | 'ERR_TOKEN_KID'
  | 'ERR_TOKEN_ALG'
  | 'ERR_TOKEN_SIGNATURE'
  | 'ERR_TOKEN_EXPIRED'
  | 'ERR_TOKEN_CLAIMS'
  | 'ERR_JWKS_UNAVAILABLE';

export class VerifierError extends Error {
  constructor(
    readonly code: VerifierErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'VerifierError';
  }
}

declare module 'express-serve-static-core' {
  interface Request {
    /** Set by the verifier middleware once the bearer token verified. */
    auth?: AccessTokenClaims;
  }
}

interface CachedKey {
  key: KeyObject;
  alg: Algorithm;
}

const ACCESS_TOKEN_TYPE = 'at+jwt';

export interface Verifier {
  /** Resolves with the claims of a valid token; rejects with {@link VerifierError}. */
  verify(token: string): Promise<AccessTokenClaims>;
  /**
   * Express middleware: sets `req.auth`, or answers 401 with `WWW-Authenticate: Bearer error="invalid_token"`
   * (503 `temporarily_unavailable` when the JWKS cannot be fetched and no cached key fits the token).
   */
  middleware(): RequestHandler;
  /** How many times the JWKS was fetched (for metrics and tests). */
  readonly fetches: number;
}

export function createVerifier(options: VerifierOptions): Verifier {
  const algorithms = options.algorithms ?? ['ES256', 'RS256'];
  const minRefetchMs = options.minRefetchIntervalMs ?? 30_000;
  // jose's own cooldown counts only successful fetches; the one below counts every attempt, so a
  // failing gateway is not asked again on each request.
  const remote = createRemoteJWKSet(new URL(options.jwksUrl), {
    cacheMaxAge: options.cacheMaxAgeMs ?? 600_000,
    timeoutDuration: Math.ceil(options.fetchTimeoutMs ?? 5000),
  });
  /** The usable keys of the last JWKS fetched successfully. */
  let keys = new Map<string, CachedKey>();
  let fetches = 0;
  let lastAttemptAt = -Infinity;
  /** Why the latest fetch failed; undefined once one succeeds. */
  let lastFailure: Error | undefined;
  let inFlight: Promise<void> | undefined;

  function importKeys(jwks: JSONWebKeySet | undefined): Map<string, CachedKey> {
    const next = new Map<string, CachedKey>();
    for (const jwk of (jwks?.keys ?? []) as Array<JsonWebKey & { kid?: string; alg?: string }>) {
      const alg = jwk.alg as Algorithm | undefined;
      if (!jwk.kid || !alg || !algorithms.includes(alg) || (jwk.use !== undefined && jwk.use !== 'sig')) continue;
      if ((alg === 'ES256' && (jwk.kty !== 'EC' || jwk.crv !== 'P-256')) || (alg === 'RS256' && jwk.kty !== 'RSA')) continue;
      try {
        next.set(jwk.kid, { key: crypto.createPublicKey({ key: jwk, format: 'jwk' }), alg });
      } catch {
        // A key this runtime cannot read is skipped; tokens naming it fail as unknown kid.
      }
    }
    return next;
  }

  /**
   * Fetches the JWKS unless a fetch started less than `minRefetchMs` ago (callers arriving during a
   * fetch share it). Never rejects: a failure is kept in `lastFailure` and the cached keys stay.
   */
  function refetch(): Promise<void> | undefined {
    if (inFlight || Date.now() - lastAttemptAt < minRefetchMs) return inFlight;
    fetches += 1;
    lastAttemptAt = Date.now();
    inFlight = remote
      .reload()
      .then(
        () => {
          keys = importKeys(remote.jwks());
          lastFailure = undefined;
        },
        (err: unknown) => {
          lastFailure = err instanceof Error ? err : new Error(String(err));
        },
      )
      .finally(() => {
        inFlight = undefined;
      });
    return inFlight;
  }

  /** The cached key while the cache is fresh: no await on the hot path. */
  function cachedKey(kid: string): CachedKey | undefined {
    return remote.fresh ? keys.get(kid) : undefined;
  }

  /** The cache is past its max age or lacks `kid`: fetch if allowed, then decide. */
  async function keyFor(kid: string): Promise<CachedKey> {
    await refetch();
    const found = keys.get(kid);
    // A cached key verifies even when the JWKS could not be fetched again.
    if (found) return found;
    // Not cached, and the latest fetch failed: the token may well be valid, so not a 401.
    if (lastFailure) throw new VerifierError('ERR_JWKS_UNAVAILABLE', `could not fetch the JWKS: ${lastFailure.message}`);
    throw new VerifierError('ERR_TOKEN_KID', 'unknown kid');
  }

  /** Only the protected header is read before the signature check; jsonwebtoken decodes the rest once. */
  function readHeader(token: string): { alg?: unknown; typ?: unknown; kid?: unknown } {
    const dot = token.indexOf('.');
    try {
      const header = JSON.parse(Buffer.from(token.slice(0, dot), 'base64url').toString('utf8')) as unknown;
      if (dot > 0 && header && typeof header === 'object') return header;
    } catch {
      // fall through
    }
    throw new VerifierError('ERR_TOKEN_MALFORMED', 'not a JWS with a JSON header');
  }

  function checkSignedToken(token: string, { key, alg }: CachedKey, headerAlg: unknown): AccessTokenClaims {
    if (headerAlg !== alg) throw new VerifierError('ERR_TOKEN_ALG', 'alg does not match the key');
    let payload: jwt.JwtPayload;
    try {
      payload = jwt.verify(token, key, {
        algorithms: [alg],
        issuer: options.issuer,
        audience: options.audience,
        clockTolerance: options.clockToleranceSeconds ?? 5,
      }) as jwt.JwtPayload;
    } catch (err) {
      if (err instanceof jwt.TokenExpiredError) throw new VerifierError('ERR_TOKEN_EXPIRED', 'token expired');
      const message = (err as Error).message;
      throw new VerifierError(/signature/i.test(message) ? 'ERR_TOKEN_SIGNATURE' : 'ERR_TOKEN_CLAIMS', message);
    }
    const claims = payload as Partial<AccessTokenClaims>;
    if (typeof claims.exp !== 'number') throw new VerifierError('ERR_TOKEN_CLAIMS', 'exp is required');
    if (typeof claims.sub !== 'string' || typeof claims.sid !== 'string' || !Array.isArray(claims.roles) || !Array.isArray(claims.amr)) {
      throw new VerifierError('ERR_TOKEN_CLAIMS', 'sub, sid, roles and amr are required');
    }
    return claims as AccessTokenClaims;
  }

  /** Checks the header, finds the key (synchronously when cached), then the signature and claims. */
  function verifyToken(token: string): AccessTokenClaims | Promise<AccessTokenClaims> {
    const header = readHeader(token);
    if (header.typ !== ACCESS_TOKEN_TYPE) throw new VerifierError('ERR_TOKEN_TYP', `typ must be ${ACCESS_TOKEN_TYPE}`);
    if (!algorithms.includes(header.alg as Algorithm)) throw new VerifierError('ERR_TOKEN_ALG', `alg ${String(header.alg)} is not accepted`);
    if (typeof header.kid !== 'string' || header.kid === '') throw new VerifierError('ERR_TOKEN_KID', 'kid is required');
    const cached = cachedKey(header.kid);
    if (cached) return checkSignedToken(token, cached, header.alg);
    return keyFor(header.kid).then((key) => checkSignedToken(token, key, header.alg));
  }

  async function verify(token: string): Promise<AccessTokenClaims> {
    return verifyToken(token);
  }

  return {
    verify,
    get fetches() {
      return fetches;
    },
    middleware(): RequestHandler {
      return (req, res, next) => {
        const match = /^Bearer (\S+)$/.exec(req.get('authorization') ?? '');
        const refuse = (status: number, code: string, description?: string): void => {
          const challenge = description ? `Bearer error="${code}", error_description="${description}"` : 'Bearer';
          res
            .status(status)
            .set('WWW-Authenticate', challenge)
            .type('application/problem+json')
            .json({ type: 'about:blank', title: status === 401 ? 'Unauthorized' : 'Service Unavailable', status, code });
        };
        if (!match) {
          refuse(401, 'invalid_request');
          return;
        }
        const fail = (err: unknown): void => {
          if (err instanceof VerifierError && err.code === 'ERR_JWKS_UNAVAILABLE') refuse(503, 'temporarily_unavailable');
          else if (err instanceof VerifierError) refuse(401, 'invalid_token', err.code === 'ERR_TOKEN_EXPIRED' ? 'The access token expired' : 'The access token is not valid');
          else next(err);
        };
        const accept = (claims: AccessTokenClaims): void => {
          req.auth = claims;
          next();
        };
        let result: AccessTokenClaims | Promise<AccessTokenClaims>;
        try {
          result = verifyToken(match[1]!);
        } catch (err) {
          fail(err);
          return;
        }
        if (result instanceof Promise) result.then(accept, fail);
        else accept(result);
      };
    },
  };
}
