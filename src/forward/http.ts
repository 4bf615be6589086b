import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { StoredRecord } from '../audit/follow.js';
import { epochMs } from './formats/record-view.js';
import type { Formatted } from './formats/index.js';
import type { HttpSinkConfig } from './sinks-file.js';
import { SinkError, type Sink } from './sink.js';

/**
 * HTTP sinks (docs/streaming.md, "HTTP"): Splunk's HTTP Event Collector (`/services/collector/event`,
 * `Authorization: Splunk <token>`, one `{"time", "host", "source", "sourcetype", "event"}` object
 * per record, concatenated) or a generic JSON webhook (a JSON array per POST, optional
 * `Authorization: Bearer <token>`). By default one keep-alive connection and one request at a
 * time, so the receiver sees batches in seq order; the next batches are read and formatted while one
 * is in flight. `in_flight` > 1 pipelines requests over that many connections, out of order.
 * The token is read from the environment variable the sinks file names, and is never logged: errors
 * carry the status only, never a header or the response body.
 */

/** `url` with the HEC event path when it names only the server (`https://splunk:8088`). */
export function hecUrl(url: string): URL {
  const u = new URL(url);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/services/collector/event';
  return u;
}

export function hecBody(messages: Formatted[], records: StoredRecord[], meta: { host: string; source: string; sourcetype: string; index?: string | undefined }): string {
  return messages
    .map((event, i) =>
      JSON.stringify({
        time: epochMs(records[i]!.occurred_at) / 1000,
        host: meta.host,
        source: meta.source,
        sourcetype: meta.sourcetype,
        ...(meta.index !== undefined ? { index: meta.index } : {}),
        event,
      }),
    )
    .join('\n');
}

export function createHttpSink(config: HttpSinkConfig, defaults: { hostname: string; env?: NodeJS.ProcessEnv }): Sink {
  const env = defaults.env ?? process.env;
  const token = config.token_env !== undefined ? env[config.token_env] : undefined;
  const url = config.mode === 'splunk_hec' ? hecUrl(config.url) : new URL(config.url);
  const secure = url.protocol === 'https:';
  const ca = config.ca_file !== undefined ? fs.readFileSync(config.ca_file) : undefined;
  const agent = secure
    ? new https.Agent({ keepAlive: true, maxSockets: config.in_flight, ...(ca ? { ca } : {}) })
    : new http.Agent({ keepAlive: true, maxSockets: config.in_flight });
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token !== undefined) headers.authorization = config.mode === 'splunk_hec' ? `Splunk ${token}` : `Bearer ${token}`;
  const meta = { host: defaults.hostname, source: config.source, sourcetype: config.sourcetype ?? `authtrail:${config.format}`, index: config.index };

  const post = (body: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = (secure ? https : http).request(
        url,
        { method: 'POST', agent, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, timeout: config.timeout_ms },
        (res) => {
          // The body is read (so the connection is reused) and dropped: it is never logged.
          res.resume();
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) resolve();
            else reject(new SinkError(`${config.name}: HTTP ${status}`, { status }));
          });
          res.on('error', (err) => reject(new SinkError(`${config.name}: response failed: ${err.message}`, { cause: err })));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${config.timeout_ms} ms`)));
      req.on('error', (err) => reject(new SinkError(`${config.name}: ${err.message}`, { cause: err })));
      req.end(body);
    });

  return {
    name: config.name,
    depth: config.in_flight,
    send(messages: Formatted[], records: StoredRecord[]): Promise<void> {
      return post(config.mode === 'splunk_hec' ? hecBody(messages, records, meta) : JSON.stringify(messages));
    },
    close(): Promise<void> {
      agent.destroy();
      return Promise.resolve();
    },
  };
}
