import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * AES-256-GCM for secrets at rest. Layout: version (1 byte) ‖ IV (12) ‖ tag (16) ‖ ciphertext.
 * The associated data binds a sealed value to its owner (the user id), so a ciphertext copied to
 * another row does not open.
 */
export interface SecretBox {
  seal(plaintext: Buffer, associatedData: string): Buffer;
  /** Throws when the value was altered, moved to another owner, or sealed under another key. */
  open(sealed: Buffer, associatedData: string): Buffer;
}

export function createSecretBox(key: Buffer): SecretBox {
  if (key.length !== 32) throw new Error('the MFA encryption key must be 32 bytes');
  return {
    seal(plaintext, associatedData) {
      const iv = crypto.randomBytes(IV_BYTES);
      const cipher = crypto.createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(associatedData, 'utf8'));
      const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), ciphertext]);
    },
    open(sealed, associatedData) {
      if (sealed[0] !== VERSION || sealed.length < 1 + IV_BYTES + TAG_BYTES) throw new Error('not a sealed secret of a known version');
      const iv = sealed.subarray(1, 1 + IV_BYTES);
      const tag = sealed.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES);
      const decipher = crypto.createDecipheriv('aes-256-gcm', key, iv);
      decipher.setAAD(Buffer.from(associatedData, 'utf8'));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(sealed.subarray(1 + IV_BYTES + TAG_BYTES)), decipher.final()]);
    },
  };
}

/** Reads the base64 key file; in embedded mode creates it (mode 0600) on first start. */
export function loadSecretBoxKey(file: string, options: { generate: boolean }): Buffer {
  if (!fs.existsSync(file)) {
    if (!options.generate) throw new Error(`MFA encryption key ${file} does not exist`);
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(file, `${crypto.randomBytes(32).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  }
  const key = Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'base64');
  if (key.length !== 32) throw new Error(`MFA encryption key ${file} must hold 32 bytes, base64`);
  return key;
}
