// Attack-first: a superuser points the auditor's login at a clean copy of the log (search_path).
//
// The database administrator (PostgreSQL superuser) is the party the log must be provable against
// (docs/trust-model.md). Without touching the verifier, they can make unqualified names resolve
// elsewhere for the auditor's login only: a schema holding a clean copy of the log's tables, or
// functions that shadow the built-ins the verifier's SQL calls, put first on that login's
// search_path by ALTER ROLE … SET or ALTER DATABASE … SET. The verifier then hashes the clean copy
// (or what the shadowing functions return) and says "intact" while public.audit_log is tampered.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createChainWriter } from '../../src/audit/chain-writer.js';
import { createCheckpointer } from '../../src/audit/checkpoints.js';
import { createLogger } from '../../src/logger.js';
import { tempSigningKey } from '../helpers/audit.js';
import { sampleEvent } from '../helpers/events.js';
import { ADMIN_URL, adminQuery, asSuperuser, createTestDatabase, urlFor, type TestDatabase } from '../helpers/postgres.js';
import { ROOT, runTs } from '../helpers/processes.js';

/** The log's tables a shadow schema copies. */
const LOG_TABLES = ['audit_log', 'audit_tiles', 'audit_checkpoints', 'audit_cosignatures', 'audit_archives'];

describe('attack: a superuser shadows the log for the verifying login (search_path)', () => {
  let template: TestDatabase;
  let key: ReturnType<typeof tempSigningKey>;
  let file: string;
  const suffix = crypto.randomBytes(4).toString('hex');
  // Roles are the server's, not one database's: names of this file only, dropped at the end.
  const auditor = `authtrail_sp_auditor_${suffix}`;
  const app = `authtrail_sp_app_${suffix}`;
  const copies: TestDatabase[] = [];

  before(async () => {
    key = tempSigningKey();
    file = path.join(key.dir, 'checkpoints.jsonl');
    template = await createTestDatabase();
    const writer = createChainWriter(template.db, { batchMax: 4, writeTimeoutMs: 5000 });
    const checkpointer = createCheckpointer({
      db: template.db, writer, key, file, everyRecords: 5, everySeconds: 3600, logger: createLogger('silent'), origin: 'searchpath.example/log',
    });
    for (let i = 1; i <= 20; i++) await writer.recordEvent(sampleEvent(i));
    await writer.close();
    await checkpointer.close();
    await template.db.close();
    await adminQuery(`CREATE ROLE ${auditor} LOGIN`);
    await adminQuery(`CREATE ROLE ${app} LOGIN`);
    // The grants as an operator runs them (docs/runtime-role.sql), for this file's roles.
    const grants = fs.readFileSync(path.join(ROOT, 'docs/runtime-role.sql'), 'utf8').replaceAll('authtrail_auditor', auditor).replaceAll('authtrail_app', app);
    await adminQuery(grants, [], template.name);
  });

  after(async () => {
    await Promise.all(copies.map((c) => c.drop()));
    await template?.drop();
    await adminQuery(`DROP ROLE IF EXISTS ${auditor}`);
    await adminQuery(`DROP ROLE IF EXISTS ${app}`);
    fs.rmSync(key.dir, { recursive: true, force: true });
  });

  async function freshCopy(): Promise<TestDatabase> {
    const copy = await createTestDatabase({ template: template.name });
    copies.push(copy);
    await adminQuery(`GRANT CONNECT ON DATABASE ${copy.name} TO ${auditor}, ${app}`);
    return copy;
  }

  /** Schema `shadow`: a clean copy of every table of the log (made before the tampering), readable and writable by both logins. */
  async function shadowTables(copy: TestDatabase): Promise<void> {
    await adminQuery(
      [
        'CREATE SCHEMA shadow',
        ...LOG_TABLES.flatMap((t) => [`CREATE TABLE shadow.${t} (LIKE public.${t} INCLUDING ALL)`, `INSERT INTO shadow.${t} SELECT * FROM public.${t}`]),
        `GRANT USAGE ON SCHEMA shadow TO ${auditor}, ${app}`,
        `GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA shadow TO ${auditor}, ${app}`,
      ].join(';\n'),
      [],
      copy.name,
    );
  }

  /** Runs `sql` as `role` on `copy`, in a new session (so role and database settings apply). */
  async function asRole<R extends pg.QueryResultRow>(copy: TestDatabase, role: string, sql: string): Promise<R[]> {
    const client = new pg.Client({ connectionString: urlFor(copy.name, { user: role }) });
    await client.connect();
    try {
      return (await client.query<R>(sql)).rows;
    } finally {
      await client.end();
    }
  }

  /** Sets `role`'s own search_path for the duration of `fn` (ALTER ROLE … SET), then resets it. */
  async function withRolePath<T>(role: string, searchPath: string, fn: () => Promise<T>): Promise<T> {
    await adminQuery(`ALTER ROLE ${role} SET search_path = ${searchPath}`);
    try {
      return await fn();
    } finally {
      await adminQuery(`ALTER ROLE ${role} RESET search_path`);
    }
  }

  const verify = (copy: TestDatabase, params?: string) =>
    runTs('src/cli/audit-verify.ts', ['--json', '--database-url', urlFor(copy.name, { user: auditor, ...(params ? { params } : {}) }), '--trusted-key', key.file, '--checkpoint-file', file]);

  function assertTampered(run: { code: number | null; stdout: string; stderr: string }, seq: number): void {
    assert.equal(run.code, 1, `the verifier was shown something else than public.audit_log: ${run.stdout}${run.stderr}`);
    const result = JSON.parse(run.stdout) as { problem: string; first_invalid_seq: number };
    assert.deepEqual([result.problem, result.first_invalid_seq], ['hash_mismatch', seq]);
  }

  it('when the untouched log is verified by the auditor\'s login, then it is intact', async () => {
    const copy = await freshCopy();
    const run = await verify(copy);
    assert.equal(run.code, 0, run.stdout + run.stderr);
  });

  it("when the auditor's role has the server send text in another encoding (ALTER ROLE … SET client_encoding), then the untouched log still verifies from its UTF-8 bytes", async () => {
    const copy = await freshCopy();
    const { rows } = await copy.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE details::text ~ '[^\\x01-\\x7f]'`);
    assert.ok(rows[0]!.n > 0, 'the log holds non-ASCII text');
    await adminQuery(`ALTER ROLE ${auditor} SET client_encoding = 'LATIN1'`);
    try {
      const run = await verify(copy);
      assert.equal(run.code, 0, run.stdout + run.stderr);
    } finally {
      await adminQuery(`ALTER ROLE ${auditor} RESET client_encoding`);
    }
  });

  it("when the auditor's role puts a schema with a clean copy of the log's tables first (ALTER ROLE … SET search_path), then audit:verify still reports the edited record", async () => {
    const copy = await freshCopy();
    await shadowTables(copy);
    await asSuperuser(copy.name, `UPDATE public.audit_log SET outcome = 'success', reason = NULL WHERE seq = 7`);
    await withRolePath(auditor, 'shadow, public', async () => {
      // The trap is set: that login's unqualified names now mean the clean copy.
      const seen = await asRole<{ outcome: string }>(copy, auditor, 'SELECT outcome FROM audit_log WHERE seq = 7');
      assert.deepEqual(seen, [{ outcome: 'failure' }]);
      assertTampered(await verify(copy), 7);
      // The auditor's own connection options (another time zone) do not undo the defence.
      assertTampered(await verify(copy, `options=${encodeURIComponent('-c TimeZone=Pacific/Chatham')}`), 7);
    });
  });

  it('when the database puts the clean copy first for every login (ALTER DATABASE … SET search_path), then audit:verify still reports the edited record', async () => {
    const copy = await freshCopy();
    await shadowTables(copy);
    await asSuperuser(copy.name, `UPDATE public.audit_log SET username = 'someone-else@example.com', account = 'someone-else@example.com' WHERE seq = 9`);
    await adminQuery(`ALTER DATABASE ${copy.name} SET search_path = shadow, public`);
    const seen = await asRole<{ username: string }>(copy, auditor, 'SELECT username FROM audit_log WHERE seq = 9');
    assert.notEqual(seen[0]?.username, 'someone-else@example.com', 'the trap is set');
    assertTampered(await verify(copy), 9);
  });

  it('when a shadowing inet_send undoes an edited address for the auditor (search_path shadow, pg_catalog, public), then audit:verify still reports it', async () => {
    const copy = await freshCopy();
    const { rows } = await adminQuery(`SELECT host(ip) AS ip FROM public.audit_log WHERE seq = 8`, [], copy.name);
    const original = (rows[0] as { ip: string }).ip;
    await asSuperuser(copy.name, `UPDATE public.audit_log SET ip = '203.0.113.99' WHERE seq = 8`);
    // Listing pg_catalog after shadow lets shadow's functions win over the built-ins of the same signature.
    await adminQuery(
      `CREATE SCHEMA shadow;
       CREATE FUNCTION shadow.inet_send(inet) RETURNS bytea LANGUAGE sql IMMUTABLE AS
         $$ SELECT pg_catalog.inet_send(CASE WHEN $1 OPERATOR(pg_catalog.=) '203.0.113.99'::inet THEN '${original}'::inet ELSE $1 END) $$;
       GRANT USAGE ON SCHEMA shadow TO ${auditor}`,
      [],
      copy.name,
    );
    await withRolePath(auditor, 'shadow, pg_catalog, public', async () => {
      const seen = await asRole<{ bytes: Buffer }>(copy, auditor, 'SELECT substring(inet_send(ip) FROM 5) AS bytes FROM public.audit_log WHERE seq = 8');
      assert.deepEqual([...seen[0]!.bytes], original.split('.').map(Number), 'the trap is set: the edited address reads as the original');
      assertTampered(await verify(copy), 8);
    });
  });

  it('when a shadowing to_char undoes an edited time for the auditor (search_path shadow, pg_catalog, public), then audit:verify still reports it', async () => {
    const copy = await freshCopy();
    await asSuperuser(copy.name, `UPDATE public.audit_log SET occurred_at = occurred_at + interval '1 second' WHERE seq = 12`);
    const { rows } = await adminQuery(`SELECT (occurred_at AT TIME ZONE 'UTC')::text AS at FROM public.audit_log WHERE seq = 12`, [], copy.name);
    const edited = (rows[0] as { at: string }).at;
    await adminQuery(
      `CREATE SCHEMA shadow;
       CREATE FUNCTION shadow.to_char(timestamp, text) RETURNS text LANGUAGE sql STABLE AS
         $$ SELECT pg_catalog.to_char(CASE WHEN $1 OPERATOR(pg_catalog.=) '${edited}'::timestamp
                                           THEN $1 OPERATOR(pg_catalog.-) interval '1 second' ELSE $1 END, $2) $$;
       GRANT USAGE ON SCHEMA shadow TO ${auditor}`,
      [],
      copy.name,
    );
    await withRolePath(auditor, 'shadow, pg_catalog, public', async () => {
      const seen = await asRole<{ shadowed: boolean }>(
        copy, auditor,
        `SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'HH24:MI:SS.US') <> pg_catalog.to_char(occurred_at AT TIME ZONE 'UTC', 'HH24:MI:SS.US') AS shadowed FROM public.audit_log WHERE seq = 12`,
      );
      assert.deepEqual(seen, [{ shadowed: true }], 'the trap is set');
      assertTampered(await verify(copy), 12);
    });
  });

  /** Functions in schema shadow that undo an edited address for whoever resolves names there, and a taint that points the calling session's search_path at them. */
  async function shadowFunctions(copy: TestDatabase): Promise<void> {
    await adminQuery(
      `CREATE SCHEMA shadow;
       GRANT USAGE ON SCHEMA shadow TO ${auditor}, ${app};
       CREATE FUNCTION shadow.inet_send(inet) RETURNS bytea LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS
         $$ SELECT CASE WHEN $1 OPERATOR(pg_catalog.=) '203.0.113.66'::inet THEN pg_catalog.inet_send('10.0.0.0'::inet) ELSE pg_catalog.inet_send($1) END $$;
       CREATE FUNCTION public.taint() RETURNS boolean LANGUAGE sql VOLATILE AS
         $$ SELECT pg_catalog.set_config('search_path', 'shadow, pg_catalog, pg_temp', false) IS NOT NULL $$;
       GRANT EXECUTE ON FUNCTION public.taint() TO ${auditor}, ${app}`,
      [],
      copy.name,
    );
    await asSuperuser(copy.name, `UPDATE public.audit_log SET ip = '203.0.113.66' WHERE seq = 6`);
  }

  it("when row-level security policies run code in the auditor's session (a predicate that repoints its search_path), then audit:verify refuses to read (exit 2), never reports intact", async () => {
    const copy = await freshCopy();
    await shadowFunctions(copy);
    await adminQuery(
      LOG_TABLES.flatMap((t) => [
        `ALTER TABLE public.${t} ENABLE ROW LEVEL SECURITY`,
        `CREATE POLICY taint ON public.${t} FOR SELECT TO ${auditor} USING (public.taint())`,
        `CREATE POLICY gateway ON public.${t} TO ${app} USING (true) WITH CHECK (true)`,
      ]).join(';\n'),
      [],
      copy.name,
    );
    const run = await verify(copy);
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /row-level security/);
  });

  it("when a cast created by the administrator takes over details::text and hands back an edited record's original JSON, then audit:verify refuses to read (exit 2), never reports intact", async () => {
    const copy = await freshCopy();
    const { rows } = await copy.db.query<{ details: string }>('SELECT details::text AS details FROM audit_log WHERE seq = 6');
    const original = rows[0]!.details;
    const edited = original.replace('"attempt":6', '"attempt":666');
    assert.notEqual(edited, original);
    await asSuperuser(copy.name, `UPDATE public.audit_log SET details = $1::json WHERE seq = 6`, [edited]);
    await adminQuery(
      `CREATE FUNCTION public.launder(json) RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS
         $$ SELECT replace(textin(json_out($1)), '"attempt":666', '"attempt":6') $$;
       CREATE CAST (json AS text) WITH FUNCTION public.launder(json)`,
      [],
      copy.name,
    );
    const seen = await asRole<{ details: string }>(copy, auditor, 'SELECT details::text AS details FROM public.audit_log WHERE seq = 6');
    assert.deepEqual(seen, [{ details: original }], 'the cast hands the auditor the original text, whatever its search_path');
    const run = await verify(copy);
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /a cast from json to text was created in this database/);
  });

  it('when a log table is given an inheritance child (whose rows its reads include, a foreign table say), then audit:verify refuses to read (exit 2)', async () => {
    const copy = await freshCopy();
    await adminQuery(
      `CREATE TABLE public.tiles_extra () INHERITS (public.audit_tiles);
       INSERT INTO public.tiles_extra (level, idx, hashes) VALUES (5, 0, '\\x${'00'.repeat(32)}')`,
      [],
      copy.name,
    );
    const run = await verify(copy);
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.match(run.stderr, /tiles_extra inherits from public\.audit_tiles/);
  });

  it("when a log table is replaced by a view (whose function could repoint the auditor's search_path mid-session), then audit:verify refuses to read (exit 2)", async () => {
    const copy = await freshCopy();
    await shadowFunctions(copy);
    await adminQuery(
      `ALTER TABLE public.audit_tiles RENAME TO audit_tiles_real;
       CREATE VIEW public.audit_tiles AS SELECT * FROM public.audit_tiles_real WHERE public.taint();
       GRANT SELECT ON public.audit_tiles TO ${auditor}`,
      [],
      copy.name,
    );
    const run = await verify(copy);
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /public\.audit_tiles is not a plain table \(relkind v\)/);
  });

  it("when the session's search_path is changed after the startup packet asked for it (here by a proxy rewriting that packet; on PostgreSQL 17 a login event trigger could), then audit:verify reads nothing and exits 2", async () => {
    const copy = await freshCopy();
    const target = new URL(ADMIN_URL);
    // Same length, so the packet's length word stays right.
    const [asked, given] = ['search_path=pg_catalog,pg_temp', 'search_path=shadow,pg_catalog '];
    let rewritten = 0;
    const proxy = net.createServer((client) => {
      const upstream = net.connect(Number(target.port || 5432), target.hostname);
      client.on('data', (d: Buffer) => {
        const text = d.toString('latin1');
        if (text.includes(asked)) rewritten++;
        upstream.write(Buffer.from(text.replace(asked, given), 'latin1'));
      });
      upstream.on('data', (d: Buffer) => client.write(d));
      for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
        a.on('error', () => a.destroy());
        a.on('close', () => b.destroy());
      }
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const url = new URL(urlFor(copy.name, { user: auditor }));
      url.hostname = '127.0.0.1';
      url.port = String((proxy.address() as net.AddressInfo).port);
      const run = await runTs('src/cli/audit-verify.ts', ['--json', '--database-url', url.toString(), '--trusted-key', key.file]);
      assert.ok(rewritten > 0, 'the verifier asked for its search_path in the startup packet');
      assert.equal(run.code, 2, run.stdout + run.stderr);
      assert.equal(run.stdout, '');
      assert.match(run.stderr, /search_path is "shadow,pg_catalog", not "pg_catalog,pg_temp"/);
    } finally {
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });

  it("when the report's login is pointed at a clean copy (ALTER ROLE … SET search_path), then audit:report still says the log is not intact", async () => {
    const copy = await freshCopy();
    await shadowTables(copy);
    await asSuperuser(copy.name, `UPDATE public.audit_log SET outcome = 'success', reason = NULL WHERE seq = 4`);
    const out = fs.mkdtempSync(path.join(key.dir, 'report-'));
    await withRolePath(app, 'shadow, pg_catalog, public', async () => {
      const run = await runTs('src/cli/audit-report.ts', [
        '--from', '2000-01-01T00:00:00Z', '--to', new Date().toISOString(), '--out', out,
        '--database-url', urlFor(copy.name, { user: app }), '--key', key.file, '--origin', 'searchpath.example/log', '--checkpoint-file', file,
      ]);
      assert.equal(run.code, 1, `the report was made from something else than public.audit_log: ${run.stdout}${run.stderr}`);
      assert.match(run.stdout, /LOG NOT INTACT at seq 4/);
    });
    // The read was recorded where the log is, not in the shadow copy.
    const { rows } = await adminQuery(`SELECT (SELECT count(*) FROM public.audit_log)::int AS public, (SELECT count(*) FROM shadow.audit_log)::int AS shadow`, [], copy.name);
    assert.deepEqual(rows[0], { public: 21, shadow: 20 });
  });
});
