// A downstream service that trusts the gateway's access tokens without calling it per request.
// Run: AUTHTRAIL_JWKS_URL=http://localhost:3000/.well-known/jwks.json node --import tsx examples/downstream/server.ts
// (a service that installs this package imports 'authtrail/verifier' the same way).
import express from 'express';
import { createVerifier } from 'authtrail/verifier';

const verifier = createVerifier({
  jwksUrl: process.env.AUTHTRAIL_JWKS_URL ?? 'http://localhost:3000/.well-known/jwks.json',
  issuer: process.env.AUTHTRAIL_ISSUER ?? 'authtrail',
  audience: process.env.AUTHTRAIL_AUDIENCE ?? 'authtrail-api',
  minRefetchIntervalMs: Number(process.env.JWKS_MIN_REFETCH_MS ?? 30_000),
  cacheMaxAgeMs: Number(process.env.JWKS_CACHE_MAX_AGE_MS ?? 600_000),
});

const app = express();
app.get('/healthz', (_req, res) => {
  res.json({ status: 'ok', jwks_fetches: verifier.fetches });
});
app.get('/whoami', verifier.middleware(), (req, res) => {
  res.json({ sub: req.auth!.sub, roles: req.auth!.roles, amr: req.auth!.amr });
});

const server = app.listen(Number(process.env.PORT ?? 4000), '127.0.0.1', () => {
  const address = server.address();
  console.log(JSON.stringify({ msg: 'listening', port: typeof address === 'object' && address ? address.port : null }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
