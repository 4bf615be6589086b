import express, { type RequestHandler } from 'express';
import { HttpError } from './errors.js';

/** Largest JSON body accepted on any route. */
export const JSON_BODY_LIMIT = '10kb';

const parseJson = express.json({ limit: JSON_BODY_LIMIT, strict: true, type: () => true });

/** JSON routes: 415 unless the body is declared `application/json`, 413 past the limit, 400 when malformed. */
export function jsonBody(): RequestHandler[] {
  const requireJson: RequestHandler = (req, _res, next) => {
    if (!req.is('application/json')) {
      next(new HttpError(415, 'unsupported_media_type', 'The request body must be application/json'));
      return;
    }
    next();
  };
  return [requireJson, parseJson];
}
