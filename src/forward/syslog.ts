import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { StoredRecord } from '../audit/follow.js';
import { formattedText, type Formatted } from './formats/index.js';
import type { Severity } from './formats/record-view.js';
import { severityOf } from './formats/record-view.js';
import type { SyslogSinkConfig } from './sinks-file.js';
import { SinkError, type Sink } from './sink.js';

/**
 * Syslog over TCP (RFC 6587 octet counting) or TLS (RFC 5425) with RFC 5424 messages
 * (docs/streaming.md, "Syslog"). One connection per sink, so messages arrive in seq order. TCP
 * syslog has no acknowledgement: a write is only in the kernel's buffer, and a server that goes
 * away discards what it had not read. So a batch counts as delivered (and the sink's cursor moves
 * past it) only once the connection has stayed up `settle_ms` after the write; if it breaks before,
 * every unsettled batch fails and the sink resends from its cursor — duplicates, never a loss.
 * Batches are pipelined (several settle at once) so the wait costs no throughput.
 */

/** RFC 5424 severity per record severity: informational, notice, warning, critical. */
const SYSLOG_SEVERITY: Record<Severity, number> = { info: 6, low: 5, medium: 4, high: 2 };

/** PARAM-VALUE escaping (RFC 5424 §6.3.3): `"`, `\` and `]` get a backslash. */
export const sdValue = (value: string): string => value.replace(/["\\\]]/g, (c) => `\\${c}`);

/** A header field: printable US-ASCII without spaces, at most `max` characters, else NILVALUE. */
function headerField(value: string, max: number): string {
  if (value.length <= max && /^[!-~]+$/.test(value)) return value;
  const cleaned = value.replace(/[^!-~]/g, '_').slice(0, max);
  return cleaned === '' ? '-' : cleaned;
}

export interface SyslogFields {
  facility: number;
  hostname: string;
  sdId: string;
  procId: string;
}

/** One RFC 5424 message for one record (without framing). */
export function syslogMessage(record: StoredRecord, msg: string, fields: SyslogFields): string {
  const pri = fields.facility * 8 + SYSLOG_SEVERITY[severityOf(record)];
  const sd = `[${fields.sdId} seq="${record.seq}" event_id="${sdValue(record.event_id)}" hash="${sdValue(record.hash)}"]`;
  // occurred_at is already an RFC 3339 UTC time with six fraction digits, which RFC 5424 allows.
  return `<${pri}>1 ${record.occurred_at} ${headerField(fields.hostname, 255)} authtrail ${headerField(fields.procId, 128)} ${headerField(record.event_type, 32)} ${sd} ${msg}`;
}

/** RFC 6587 octet-counting frame: the message's length in bytes, a space, the message. */
export function octetFrame(message: string): Buffer {
  const body = Buffer.from(message, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length} `, 'ascii'), body]);
}

interface Pending {
  resolve: () => void;
  reject: (err: Error) => void;
  timer?: NodeJS.Timeout;
}

export function createSyslogSink(config: SyslogSinkConfig, defaults: { hostname: string }): Sink {
  const ca = config.ca_file !== undefined ? fs.readFileSync(config.ca_file) : undefined;
  const fields: SyslogFields = { facility: config.facility, hostname: config.hostname ?? defaults.hostname, sdId: config.sd_id, procId: String(process.pid) };
  let socket: net.Socket | undefined;
  let connecting: Promise<net.Socket> | undefined;
  /** Batches written on the current connection and not settled yet. */
  const unsettled = new Set<Pending>();

  const broken = (socketNow: net.Socket, err: Error): void => {
    if (socket === socketNow) socket = undefined;
    socketNow.destroy();
    for (const p of unsettled) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    unsettled.clear();
  };

  const connect = (): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const options = { host: config.host, port: config.port };
      const s =
        config.transport === 'tls'
          ? tls.connect({ ...options, ca, servername: config.servername ?? (net.isIP(config.host) ? undefined : config.host), rejectUnauthorized: true })
          : net.connect(options);
      const timer = setTimeout(() => s.destroy(new Error(`connect timeout after ${config.timeout_ms} ms`)), config.timeout_ms);
      const ready = config.transport === 'tls' ? 'secureConnect' : 'connect';
      s.once(ready, () => {
        clearTimeout(timer);
        s.setNoDelay(true);
        s.setKeepAlive(true, 10_000);
        s.off('error', onConnectError);
        s.on('error', (err: Error) => broken(s, new SinkError(`syslog connection failed: ${err.message}`, { cause: err })));
        s.on('close', () => broken(s, new SinkError('syslog server closed the connection')));
        // The server never speaks in syslog over TCP; anything it sends is read and ignored.
        s.on('data', () => {});
        s.on('end', () => broken(s, new SinkError('syslog server closed the connection')));
        resolve(s);
      });
      const onConnectError = (err: Error) => {
        clearTimeout(timer);
        s.destroy();
        reject(new SinkError(`syslog ${config.transport} connect to ${config.host}:${config.port} failed: ${err.message}`, { cause: err }));
      };
      s.once('error', onConnectError);
    });

  const open = async (): Promise<net.Socket> => {
    if (socket && !socket.destroyed) return socket;
    connecting ??= connect().finally(() => {
      connecting = undefined;
    });
    socket = await connecting;
    return socket;
  };

  return {
    name: config.name,
    depth: 8,
    async send(messages: Formatted[], records: StoredRecord[]): Promise<void> {
      const s = await open();
      let text = '';
      for (let i = 0; i < records.length; i++) {
        const message = syslogMessage(records[i]!, formattedText(messages[i]!), fields);
        text += `${Buffer.byteLength(message)} ${message}`;
      }
      const frames = Buffer.from(text, 'utf8');
      await new Promise<void>((resolve, reject) => {
        const pending: Pending = { resolve, reject };
        unsettled.add(pending);
        const writeTimer = setTimeout(() => broken(s, new SinkError(`syslog write timeout after ${config.timeout_ms} ms`)), config.timeout_ms);
        s.write(frames, (err) => {
          clearTimeout(writeTimer);
          if (err) return broken(s, new SinkError(`syslog write failed: ${err.message}`, { cause: err }));
          if (!unsettled.has(pending)) return; // the connection broke meanwhile: already rejected
          pending.timer = setTimeout(() => {
            unsettled.delete(pending);
            resolve();
          }, config.settle_ms);
        });
      });
    },
    close(): Promise<void> {
      socket?.end();
      socket?.destroy();
      socket = undefined;
      return Promise.resolve();
    },
  };
}
