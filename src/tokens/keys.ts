import crypto, { type JsonWebKey, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.js';

export type TokenAlgorithm = 'ES256' | 'RS256';

/** One signing key; its algorithm follows from its type (P-256 → ES256, RSA ≥ 2048 → RS256). */
export interface TokenKey {
  readonly kid: string;
  readonly alg: TokenAlgorithm;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly file: string;
}

export interface KeyStore {
  /** The key that signs new tokens. */
  readonly active: TokenKey;
  /** Every key whose tokens may still be valid: all are published. */
  readonly keys: readonly TokenKey[];
  byKid(kid: string): TokenKey | undefined;
  /** The JWK Set for `/.well-known/jwks.json`. */
  jwks(): { keys: JsonWebKey[] };
}

/** RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order, base64url. */
export function jwkThumbprint(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: 'jwk' });
  const members =
    jwk.kty === 'EC'
      ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }
      : jwk.kty === 'RSA'
        ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
        : undefined;
  if (!members) throw new TypeError(`unsupported key type ${jwk.kty}`);
  return crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

function algorithmOf(key: KeyObject, file: string): TokenAlgorithm {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ec' && details?.namedCurve === 'prime256v1') return 'ES256';
  if (key.asymmetricKeyType === 'rsa' && (details?.modulusLength ?? 0) >= 2048) return 'RS256';
  throw new Error(`token key ${file} must be an EC P-256 or RSA (≥ 2048 bit) private key`);
}

/** Reads one PEM private key file into a token key. */
export function readTokenKey(file: string): TokenKey {
  const privateKey = crypto.createPrivateKey(fs.readFileSync(file));
  const publicKey = crypto.createPublicKey(privateKey);
  return { kid: jwkThumbprint(publicKey), alg: algorithmOf(privateKey, file), privateKey, publicKey, file };
}

/** Writes a new private key (PKCS#8 PEM, mode 0600) for `alg`. */
export function generateTokenKeyFile(file: string, alg: TokenAlgorithm): void {
  const { privateKey } =
    alg === 'ES256'
      ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' });
}

export function createKeyStore(keys: readonly TokenKey[], active: TokenKey): KeyStore {
  const byKid = new Map(keys.map((k) => [k.kid, k]));
  const jwks = {
    keys: keys.map((k) => ({ ...k.publicKey.export({ format: 'jwk' }), kid: k.kid, alg: k.alg, use: 'sig' })),
  };
  return { active, keys, byKid: (kid) => byKid.get(kid), jwks: () => jwks };
}

/**
 * Production: `JWT_KEY_FILES` (all published), `JWT_ACTIVE_KEY_FILE` signs (default: the first).
 * Embedded: one key generated under `dataDir/keys/` on first start.
 */
export function loadKeyStore(config: Config): KeyStore {
  let files = config.tokens.keyFiles;
  if (files.length === 0 && config.tokens.generateKey) {
    const file = path.join(config.dataDir, 'keys', `jwt-${config.tokens.algorithm.toLowerCase()}.pem`);
    if (!fs.existsSync(file)) generateTokenKeyFile(file, config.tokens.algorithm);
    files = [file];
  }
  if (files.length === 0) throw new Error('no token signing key: set JWT_KEY_FILES');
  const keys = files.map(readTokenKey);
  const active = keys.find((k) => k.file === (config.tokens.activeKeyFile ?? files[0]))!;
  return createKeyStore(keys, active);
}
