import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { keyIdOf, type SigningKey } from '../../src/audit/checkpoints.js';

/** A fresh Ed25519 checkpoint key in a temporary directory. */
export function tempSigningKey(): SigningKey & { file: string; dir: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authtrail-key-'));
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const file = path.join(dir, 'audit-ed25519.pem');
  fs.writeFileSync(file, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  return { privateKey, publicKey, keyId: keyIdOf(publicKey), file, dir };
}

export function trustOnly(key: SigningKey): Map<string, crypto.KeyObject> {
  return new Map([[key.keyId, key.publicKey]]);
}
