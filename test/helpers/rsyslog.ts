import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/**
 * A real rsyslogd for the forwarder's tests: its own config, pid file and work directory in `dir`,
 * an imtcp input (plain TCP, RFC 6587 octet counting) and an imtcp input with the gtls driver
 * (RFC 5425 TLS, a self-signed certificate made here with openssl), each writing what it receives
 * to its own file, one line per message: `PRI|TIMESTAMP|HOSTNAME|APP-NAME|PROCID|MSGID|SD|MSG`.
 * `stop()` and `start()` take the server down and bring it back on the same ports. Each input's
 * queue is saved to the work directory on shutdown, as a relay that must lose nothing is set up
 * (docs/streaming.md): what it accepted but had not written yet is written after the restart.
 */
export interface Rsyslog {
  tcpPort: number;
  tlsPort: number;
  /** The self-signed certificate the TLS input presents (CN localhost, SAN 127.0.0.1). */
  certFile: string;
  tcpLog: string;
  tlsLog: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function untilAccepting(port: number, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`rsyslogd did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startRsyslog(dir: string): Promise<Rsyslog> {
  fs.mkdirSync(dir, { recursive: true });
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile,
    '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'ignore' });
  const [tcpPort, tlsPort] = [await freePort(), await freePort()];
  const tcpLog = path.join(dir, 'tcp.log');
  const tlsLog = path.join(dir, 'tls.log');
  const conf = path.join(dir, 'rsyslog.conf');
  fs.writeFileSync(conf, `
global(workDirectory="${dir}" maxMessageSize="64k"
  defaultNetstreamDriverCAFile="${certFile}" defaultNetstreamDriverCertFile="${certFile}" defaultNetstreamDriverKeyFile="${keyFile}")
module(load="imtcp")
template(name="line" type="string" string="%pri%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\\n")
input(type="imtcp" port="${tcpPort}" address="127.0.0.1" ruleset="plain")
input(type="imtcp" port="${tlsPort}" address="127.0.0.1" ruleset="tls" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
ruleset(name="plain" queue.type="LinkedList" queue.filename="plain" queue.saveOnShutdown="on") { action(type="omfile" file="${tcpLog}" template="line" asyncWriting="off" flushOnTXEnd="on") }
ruleset(name="tls" queue.type="LinkedList" queue.filename="tls" queue.saveOnShutdown="on") { action(type="omfile" file="${tlsLog}" template="line" asyncWriting="off" flushOnTXEnd="on") }
`);
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn('rsyslogd', ['-n', '-f', conf, '-i', path.join(dir, 'rsyslogd.pid')], { stdio: 'ignore' });
    await untilAccepting(tcpPort, 10_000);
    await untilAccepting(tlsPort, 10_000);
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGTERM');
    });
  };
  await start();
  return { tcpPort, tlsPort, certFile, tcpLog, tlsLog, start, stop };
}

/** The messages rsyslog wrote to `file`, parsed from the test template's line. */
export interface ReceivedSyslog {
  pri: number;
  timestamp: string;
  hostname: string;
  appName: string;
  procId: string;
  msgId: string;
  structuredData: string;
  msg: string;
}

export function readSyslogFile(file: string): ReceivedSyslog[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const parts = line.split('|');
      const [pri, timestamp, hostname, appName, procId, msgId, structuredData] = parts;
      return {
        pri: Number(pri),
        timestamp: timestamp!,
        hostname: hostname!,
        appName: appName!,
        procId: procId!,
        msgId: msgId!,
        structuredData: structuredData!,
        msg: parts.slice(7).join('|'),
      };
    });
}

/** rsyslogd and openssl are present (the test fails, never skips, without them: .ci/run installs them). */
export function requireRsyslog(): void {
  execFileSync('rsyslogd', ['-v'], { stdio: 'ignore' });
}
