import fs from 'node:fs/promises';
import path from 'node:path';
import express, { Router, type RequestHandler, type Response } from 'express';
import { HttpError } from './errors.js';

/**
 * The console's Content-Security-Policy: its own scripts, styles, images and API calls only; no
 * inline script or style attribute, no other host, no framing. The API keeps helmet's defaults.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const withConsoleCsp: RequestHandler = (_req, res, next) => {
  res.set('Content-Security-Policy', CONSOLE_CSP);
  next();
};

/** Vite names every built asset by its content hash: cached for good. */
function assetHeaders(res: Response, file: string): void {
  res.set('Cache-Control', file.includes(`${path.sep}assets${path.sep}`) ? 'public, max-age=31536000, immutable' : 'no-cache');
}

/**
 * The security console (README, "Console"): the built single-page app of `console/` under
 * `/console`, every client route (`/console/history`, `/console/setup`, …) answered with its
 * index.html, and `/` redirected to it. Everything it shows it reads through the API, so every
 * read is recorded as usual.
 */
export function consoleRoutes(dir: string): Router {
  const index = path.join(dir, 'index.html');

  const app: RequestHandler = async (req, res, next) => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || req.path.startsWith('/assets/')) {
      next();
      return;
    }
    let html: Buffer;
    try {
      html = await fs.readFile(index);
    } catch {
      throw new HttpError('not_found', { detail: 'The console is not built: run npm run build' });
    }
    res.set('Cache-Control', 'no-cache').type('html').send(html);
  };

  const router = Router();
  router.get('/', (_req, res) => {
    res.status(302).location('/console/').end();
  });
  router.use('/console', withConsoleCsp, express.static(dir, { index: false, redirect: false, setHeaders: assetHeaders }), app);
  return router;
}
