import crypto, { type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export class WitnessKeyError extends Error {
  readonly code = 'ERR_WITNESS_KEY';
}

/** The witness's own Ed25519 key; `generated` when this start created it. */
export interface WitnessKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly generated: boolean;
}

/**
 * Loads the witness key from a PKCS#8 PEM file. When `generate` is set and the file does not
 * exist, creates it (mode 0600, in a 0700 directory, never overwriting a file that appeared meanwhile).
 */
export function loadWitnessKey(file: string, options: { generate: boolean }): WitnessKey {
  let generated = false;
  if (!fs.existsSync(file)) {
    if (!options.generate) throw new WitnessKeyError(`witness key ${file} does not exist (pass --generate-key to create it)`);
    const { privateKey } = crypto.generateKeyPairSync('ed25519');
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(file, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' });
    generated = true;
  }
  let privateKey: KeyObject;
  try {
    privateKey = crypto.createPrivateKey(fs.readFileSync(file));
  } catch (err) {
    throw new WitnessKeyError(`witness key ${file} is not a PKCS#8 PEM private key`, { cause: err });
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new WitnessKeyError(`witness key ${file} is not an Ed25519 key`);
  return { privateKey, publicKey: crypto.createPublicKey(privateKey), generated };
}
