import http from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Queryable } from '../db/database.js';
import { registerForwardCursorGauges } from './cursor-metrics.js';

/**
 * The forwarder's own Prometheus metrics (`--metrics-port`): per sink its cursor and lag (read
 * from the database, so a standby shows them too), records delivered, failed deliveries and the
 * time of the last success; and whether this process is the active forwarder.
 */
export interface ForwarderMetrics {
  registry: Registry;
  leading(on: boolean): void;
  delivered(sink: string, count: number): void;
  failed(sink: string): void;
  blocked(sink: string, on: boolean): void;
}

export function createForwarderMetrics(db: Pick<Queryable, 'query'>, sinks: readonly string[]): ForwarderMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'authtrail_forwarder_' });
  registerForwardCursorGauges(registry, db, 1000, sinks);
  const leading = new Gauge({ name: 'authtrail_forwarder_leading', help: '1 while this process is the active forwarder of the cluster (holds the forwarder lease).', registers: [registry] });
  const delivered = new Counter({ name: 'authtrail_forward_delivered_total', help: 'Records delivered to the sink by this process (resends after a failure count again).', labelNames: ['sink'] as const, registers: [registry] });
  const failures = new Counter({ name: 'authtrail_forward_failures_total', help: 'Failed deliveries to the sink (each is retried).', labelNames: ['sink'] as const, registers: [registry] });
  const lastSuccess = new Gauge({ name: 'authtrail_forward_last_success_timestamp_seconds', help: 'When the sink last accepted a batch (Unix time).', labelNames: ['sink'] as const, registers: [registry] });
  const gap = new Gauge({ name: 'authtrail_forward_gap_blocked', help: '1 while the sink is stopped at records archived before they were delivered.', labelNames: ['sink'] as const, registers: [registry] });
  leading.set(0);
  // Every series exists from the start, so rate() and absent-success alerts work from the first scrape.
  for (const sink of sinks) {
    delivered.inc({ sink }, 0);
    failures.inc({ sink }, 0);
    gap.set({ sink }, 0);
  }
  return {
    registry,
    leading: (on) => leading.set(on ? 1 : 0),
    delivered(sink, count) {
      delivered.inc({ sink }, count);
      lastSuccess.set({ sink }, Date.now() / 1000);
      gap.set({ sink }, 0);
    },
    failed: (sink) => failures.inc({ sink }),
    blocked: (sink, on) => gap.set({ sink }, on ? 1 : 0),
  };
}

/** Serves `GET /metrics` (and `/healthz`) on `host:port`; resolves with the bound port. */
export function serveMetrics(registry: Registry, host: string, port: number): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/metrics') {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        },
        () => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end('metrics unavailable\n');
        },
      );
      return;
    }
    if (req.method === 'GET' && path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const address = server.address();
      resolve({ server, port: typeof address === 'object' && address ? address.port : port });
    });
  });
}
