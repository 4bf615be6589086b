import { spawn, type ChildProcess } from 'node:child_process';
import { createChainWriter } from '../src/audit/chain-writer.js';
import { readCursor } from '../src/audit/follow.js';
import { createLogger } from '../src/logger.js';
import { runForwarder } from '../src/forward/forwarder.js';
import { parseSinks } from '../src/forward/sinks-file.js';
import { sampleEvent } from '../test/helpers/events.js';
import { benchDatabase, fmt, rate } from './lib.js';

const CONCURRENCY = 64;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const POOL = 10;

/**
 * A receiver in its own process, so it does not share the forwarder's event loop: an HTTP server
 * answering 200 to every POST (a Splunk HEC stand-in that counts events and parses nothing) and a
 * TCP server that reads and drops syslog frames. It prints its two ports as one JSON line.
 */
const RECEIVER = `
const http = require('node:http');
const net = require('node:net');
let events = 0;
const web = http.createServer((req, res) => {
  req.on('data', (c) => { for (const b of c) if (b === 10) events++; });
  req.on('end', () => { events++; res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"text":"Success","code":0}'); });
});
web.keepAliveTimeout = 60000;
const tcp = net.createServer((s) => { s.on('data', () => {}); s.on('error', () => {}); });
web.listen(0, '127.0.0.1', () => tcp.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ http: web.address().port, tcp: tcp.address().port }));
}));
`;

async function startReceiver(): Promise<{ child: ChildProcess; http: number; tcp: number }> {
  const child = spawn(process.execPath, ['-e', RECEIVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const ports = await new Promise<{ http: number; tcp: number }>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`receiver exited with ${code}`)));
    child.stdout.once('data', (d: Buffer) => resolve(JSON.parse(d.toString()) as { http: number; tcp: number }));
  });
  return { child, ...ports };
}

/**
 * Records per second the forwarder delivers against records per second the chain writer appends
 * (64 concurrent callers, as bench/audit.ts), in the same run: first the writer fills the log for
 * BENCH_SECONDS, then the forwarder (in this process, as `npm run audit:forward` runs it) delivers
 * that whole backlog from cursor 0, once to an HTTP sink in OCSF (Splunk HEC body) and once to a
 * syslog TCP sink in CEF. It must keep up: ratio ≥ 1.
 */
export async function benchForward(): Promise<void> {
  const bench = await benchDatabase();
  const receiver = await startReceiver();
  try {
    console.log(`\n## Audit forwarder (PostgreSQL, ${CONCURRENCY} concurrent appenders, pool ${POOL}, ${SECONDS} s of appends)`);
    const db = bench.open(POOL);
    const writer = createChainWriter(db, { batchMax: 256, writeTimeoutMs: 30_000 });
    const appended = await rate(CONCURRENCY, SECONDS, (w) => writer.recordEvent(sampleEvent(w)));
    await writer.close();
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log');
    const total = rows[0]!.n;
    console.log(`appended (recordEvent)                  ${fmt(appended).padStart(9)} records/s   (${fmt(total)} records)`);

    const sinks = parseSinks(
      [
        { name: 'bench-hec', type: 'http', mode: 'splunk_hec', url: `http://127.0.0.1:${receiver.http}`, token_env: 'BENCH_HEC_TOKEN', format: 'ocsf', batch_size: 1000 },
        { name: 'bench-syslog', type: 'syslog', transport: 'tcp', host: '127.0.0.1', port: receiver.tcp, format: 'cef', batch_size: 1000 },
      ],
      'bench sinks',
      { BENCH_HEC_TOKEN: 'bench' },
    );
    const forwardDb = bench.open(4);
    const results: Record<string, number> = {};
    for (const sink of sinks) {
      const stop = new AbortController();
      const started = performance.now();
      const running = runForwarder({
        db: forwardDb,
        sinks: [sink],
        holder: `bench-${sink.name}`,
        leaseTtlMs: 60_000,
        idleMs: 20,
        acceptGap: new Set(),
        context: { hostname: 'bench', version: '0' },
        logger: createLogger('silent'),
        signal: stop.signal,
        env: { BENCH_HEC_TOKEN: 'bench' },
      });
      while ((await readCursor(forwardDb, `forward:${sink.name}`)) < total) await new Promise((r) => setTimeout(r, 10));
      results[sink.name] = total / ((performance.now() - started) / 1000);
      stop.abort();
      await running;
    }
    const http = results['bench-hec']!;
    const syslog = results['bench-syslog']!;
    console.log(`forwarded, HTTP (Splunk HEC, OCSF)      ${fmt(http).padStart(9)} records/s   (pages of 1,000, one keep-alive connection)`);
    console.log(`forwarded, syslog TCP (CEF)             ${fmt(syslog).padStart(9)} records/s   (pages of 1,000, up to 8 in flight)`);
    console.log(`ratio forwarded / appended  ${(Math.min(http, syslog) / appended).toFixed(2)}x   (target >= 1; the slower sink: ${http <= syslog ? 'HTTP' : 'syslog'})`);
  } finally {
    receiver.child.kill();
    await bench.drop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await benchForward();
