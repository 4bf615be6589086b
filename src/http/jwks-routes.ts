import { Router } from 'express';
import type { KeyStore } from '../tokens/keys.js';

/** Five minutes: a key added to the set is visible everywhere well before it starts signing (docs/key-rotation.md). */
export const JWKS_MAX_AGE_SECONDS = 300;

/** `GET /.well-known/jwks.json`: every public key whose tokens may still be valid. */
export function jwksRoutes(keys: KeyStore): Router {
  const router = Router();
  router.get('/.well-known/jwks.json', (_req, res) => {
    res.set('Cache-Control', `public, max-age=${JWKS_MAX_AGE_SECONDS}`).type('application/jwk-set+json').send(JSON.stringify(keys.jwks()));
  });
  return router;
}
