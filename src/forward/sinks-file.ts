import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { FORMATS } from './formats/index.js';

/**
 * The sinks file of `npm run audit:forward` (docs/streaming.md, "The sinks file"): a JSON list of
 * where to send the audit log and in which format. Checked whole before anything starts, so a
 * typo stops the forwarder with one message naming every bad field (`sinks[1].url: …`) rather
 * than a sink that silently never delivers. Secrets are never in the file: `token_env` names the
 * environment variable that holds the HEC token or bearer token.
 */

const name = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, { message: 'must be 1 to 64 letters, digits, _ . - (it names the sink\'s cursor and metrics)' });
const ms = (min: number, max: number, dflt: number) => z.number().int().min(min).max(max).default(dflt);

const retry = z
  .object({
    initial_ms: ms(1, 600_000, 200),
    max_ms: ms(1, 3_600_000, 30_000),
  })
  .strict()
  .default({ initial_ms: 200, max_ms: 30_000 })
  .refine((r) => r.max_ms >= r.initial_ms, { message: 'max_ms must be at least initial_ms' });

const common = {
  name,
  format: z.enum(FORMATS),
  /** Records per POST or per syslog write. */
  batch_size: ms(1, 10_000, 500),
  retry,
};

const httpSink = z
  .object({
    ...common,
    type: z.literal('http'),
    url: z.url({ protocol: /^https?$/, message: 'must be an http:// or https:// URL' }),
    mode: z.enum(['splunk_hec', 'webhook']),
    token_env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { message: 'must be the name of an environment variable (the token itself never goes in this file)' })
      .optional(),
    timeout_ms: ms(100, 600_000, 10_000),
    /**
     * Requests in flight at once, each on its own keep-alive connection. 1 (the default) keeps the
     * batches in seq order on arrival; more sends faster to a slow receiver, but batches may then
     * arrive out of order (records within a batch stay in order; order by seq on the receiver).
     */
    in_flight: z.number().int().min(1).max(8).default(1),
    /** Splunk HEC fields of each event. */
    source: z.string().min(1).max(256).default('authtrail'),
    sourcetype: z.string().min(1).max(256).optional(),
    index: z.string().min(1).max(256).optional(),
    ca_file: z.string().min(1).optional(),
  })
  .strict();

const syslogSink = z
  .object({
    ...common,
    type: z.literal('syslog'),
    host: z.string().min(1).max(253),
    port: z.number().int().min(1).max(65535),
    transport: z.enum(['tcp', 'tls']).default('tcp'),
    /** PEM file of the CA (or the self-signed certificate) the server's certificate must chain to; default: the system's. */
    ca_file: z.string().min(1).optional(),
    /** The name the server certificate must carry; default `host`. */
    servername: z.string().min(1).max(253).optional(),
    /** Syslog facility (0–23); default 10, authpriv. */
    facility: z.number().int().min(0).max(23).default(10),
    /** The SD-ID of the structured data carrying seq and event_id (`name@PEN`). */
    sd_id: z
      .string()
      .regex(/^[!-~]{1,32}$/, { message: 'must be 1 to 32 printable ASCII characters' })
      .refine((v) => !/[= \]"]/.test(v), { message: 'must not contain = space ] or "' })
      .default('authtrail@32473'),
    /** HOSTNAME of each message; default this host's name. */
    hostname: z.string().regex(/^[!-~]{1,255}$/, { message: 'must be 1 to 255 printable ASCII characters' }).optional(),
    timeout_ms: ms(100, 600_000, 10_000),
    /**
     * A write counts as delivered once the connection stayed up this long after it: TCP syslog has
     * no acknowledgement, and a server that goes away drops what it had not read yet.
     */
    settle_ms: ms(0, 60_000, 300),
  })
  .strict();

const sink = z.discriminatedUnion('type', [httpSink, syslogSink], {
  error: (issue) => (issue.code === 'invalid_union' ? 'type must be "http" or "syslog"' : undefined),
});

const sinksFile = z
  .object({ sinks: z.array(sink).min(1, { message: 'must list at least one sink' }) })
  .strict()
  .superRefine((file, ctx) => {
    const seen = new Set<string>();
    file.sinks.forEach((s, i) => {
      if (seen.has(s.name)) ctx.addIssue({ code: 'custom', path: ['sinks', i, 'name'], message: `"${s.name}" is used by another sink` });
      seen.add(s.name);
      if (s.type === 'http' && s.mode === 'splunk_hec' && s.token_env === undefined) {
        ctx.addIssue({ code: 'custom', path: ['sinks', i, 'token_env'], message: 'is required for mode splunk_hec' });
      }
      if (s.type === 'syslog' && s.transport === 'tcp' && s.ca_file !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['sinks', i, 'ca_file'], message: 'only applies to transport "tls"' });
      }
    });
  });

export type HttpSinkConfig = z.infer<typeof httpSink>;
export type SyslogSinkConfig = z.infer<typeof syslogSink>;
export type SinkConfig = HttpSinkConfig | SyslogSinkConfig;

/** The sinks file cannot be used; its message names the file and every bad field. The CLI exits 2. */
export class SinksFileError extends Error {
  readonly code = 'ERR_SINKS_FILE';
  constructor(message: string) {
    super(message);
    this.name = 'SinksFileError';
  }
}

const fieldPath = (p: ReadonlyArray<PropertyKey>): string =>
  p.reduce<string>((acc, part) => (typeof part === 'number' ? `${acc}[${part}]` : acc ? `${acc}.${String(part)}` : String(part)), '');

/** Validates the parsed JSON of a sinks file; `where` names it in errors. */
export function parseSinks(json: unknown, where: string, env: NodeJS.ProcessEnv = process.env): SinkConfig[] {
  // A bare list is accepted too: `[{…}]` is `{"sinks": [{…}]}`.
  const parsed = sinksFile.safeParse(Array.isArray(json) ? { sinks: json } : json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${fieldPath(issue.path) || '(top level)'}: ${issue.message}`);
    throw new SinksFileError(`${where}: invalid sinks file\n  - ${problems.join('\n  - ')}`);
  }
  const problems: string[] = [];
  parsed.data.sinks.forEach((s, i) => {
    if (s.type === 'http' && s.token_env !== undefined && !env[s.token_env]) {
      problems.push(`sinks[${i}].token_env: environment variable ${s.token_env} is not set or empty`);
    }
    if (s.ca_file !== undefined) {
      try {
        fs.accessSync(path.resolve(path.dirname(where), s.ca_file), fs.constants.R_OK);
      } catch {
        problems.push(`sinks[${i}].ca_file: cannot read ${s.ca_file}`);
      }
    }
  });
  if (problems.length > 0) throw new SinksFileError(`${where}: invalid sinks file\n  - ${problems.join('\n  - ')}`);
  // ca_file is relative to the sinks file, like any path in a configuration file.
  return parsed.data.sinks.map((s) => (s.ca_file === undefined ? s : { ...s, ca_file: path.resolve(path.dirname(where), s.ca_file) }));
}

/** Reads and validates a sinks file. */
export function loadSinksFile(file: string, env: NodeJS.ProcessEnv = process.env): SinkConfig[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new SinksFileError(`${file}: cannot read the sinks file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new SinksFileError(`${file}: not JSON (${(err as Error).message})`);
  }
  return parseSinks(json, file, env);
}
