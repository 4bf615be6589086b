import express, { type RequestHandler } from 'express';
import { HttpError } from './errors.js';

/** Largest JSON body accepted on any route. */
export const JSON_BODY_LIMIT = '10kb';

/**
 * Compressed bodies are refused (415): a login body is small, and inflating client data only adds
 * decompression bombs and broken streams to what a client can send.
 */
const parseJson = express.json({ limit: JSON_BODY_LIMIT, strict: true, type: () => true, inflate: false });

/** JSON routes: 415 unless the body is declared `application/json`, 413 past the limit, 400 when malformed. */
export function jsonBody(): RequestHandler[] {
  const requireJson: RequestHandler = (req, _res, next) => {
    if (!req.is('application/json')) {
      next(new HttpError('unsupported_media_type', { detail: 'The request body must be application/json' }));
      return;
    }
    next();
  };
  return [requireJson, parseJson];
}

const hasBody = (req: Parameters<RequestHandler>[0]): boolean =>
  req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;

/** Like {@link jsonBody}, but a request without a body is fine (the refresh cookie carries the token). */
export function optionalJsonBody(): RequestHandler {
  const [requireJson, parse] = jsonBody() as [RequestHandler, RequestHandler];
  return (req, res, next) => {
    if (!hasBody(req)) {
      req.body = {};
      next();
      return;
    }
    void requireJson(req, res, (err?: unknown) => (err ? next(err) : void parse(req, res, next)));
  };
}
