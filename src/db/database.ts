import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { to as copyTo } from 'pg-copy-streams';
import { currentDeadline, DeadlineExceededError } from '../deadline.js';

/** Something that runs one parameterized statement. */
export interface Queryable {
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<{ rows: R[] }>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(script: string): Promise<void>;
}

/**
 * The one database access style of the gateway: parameterized SQL on PostgreSQL, either a real
 * server through `pg` or embedded PGlite. Both parse int8 as a JavaScript number.
 */
export interface Database extends Queryable {
  readonly kind: 'postgres' | 'pglite';
  /** Runs `fn` in one transaction on one connection; commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Runs `COPY (select) TO STDOUT (FORMAT binary)` and yields its bytes: as they arrive, on a
   * connection of its own (PostgreSQL), or at once (PGlite). A row may be cut between two chunks.
   * A consumer that stops early abandons the statement (and, on PostgreSQL, its connection).
   */
  copyOut(select: string): AsyncIterable<Buffer>;
  close(): Promise<void>;
}

export interface PostgresOptions {
  url: string;
  poolMax: number;
  statementTimeoutMs: number;
  connectTimeoutMs: number;
  applicationName?: string;
  /** `lock_timeout` of every session: the longest wait for a lock. Unset: only the statement timeout. */
  lockTimeoutMs?: number;
  /**
   * `idle_in_transaction_session_timeout` of every session: PostgreSQL ends a session that sits
   * idle inside a transaction this long (its client stopped or hung), which releases its locks.
   * Default: twice the statement timeout.
   */
  idleInTransactionTimeoutMs?: number;
  /**
   * Whether calls made for a request are bounded by that request's deadline (src/deadline.ts):
   * they get the time it has left, not a full timeout each, and are refused once it is spent.
   * Default true; off for a pool whose work is shared by many requests (the audit writer's).
   */
  requestDeadlines?: boolean;
  /**
   * Pins every session's `search_path` (e.g. {@link VERIFIER_SEARCH_PATH}), with `row_security`
   * off: sent in the startup packet, where they win over any `ALTER ROLE … SET` or `ALTER DATABASE
   * … SET` (and over an `options` parameter of the URL, whose other settings are kept), and read
   * back on each new connection and after every statement: the program stops
   * ({@link DatabaseSessionError}) when a setting is anything else. Unset: the server's default for
   * the login.
   */
  searchPath?: string;
}

/**
 * The `search_path` of the programs that verify or report on the log (`npm run audit:verify`,
 * `npm run audit:report`): the built-ins only, so that no schema or function a database
 * administrator adds can stand in for the log's tables or for the functions their SQL calls
 * (docs/trust-model.md). Their SQL names every table as `public.<table>`. Temporary objects come
 * last: listed explicitly, `pg_temp` is not searched before `pg_catalog`.
 */
export const VERIFIER_SEARCH_PATH = 'pg_catalog,pg_temp';

/** A session setting the program pins is not what it asked for: the connection is not used. */
export class DatabaseSessionError extends Error {
  readonly code = 'ERR_DATABASE_SESSION';
}

const SEARCH_PATH = /^[a-z_][a-z0-9_]*(,[a-z_][a-z0-9_]*)*$/;

/**
 * The connection string and startup `options` that pin `searchPath`: an `options` parameter of the
 * URL would replace pg's `options` setting entirely, so it is taken out of the URL and sent first,
 * with the search path after it (of two `-c` for one setting, the last wins).
 */
function pinnedStartup(url: string, searchPath: string): { connectionString: string; options: string } {
  if (!SEARCH_PATH.test(searchPath)) throw new RangeError(`search path ${searchPath}: schema names separated by commas, no spaces`);
  // row_security=off: a query that a row-level security policy would filter fails instead, so no
  // policy's code runs in the session and no login is shown other rows than the table holds.
  const pin = `-c search_path=${searchPath} -c row_security=off`;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // A string only pg's own parser reads: sent as it is; the check on connect catches an override.
    return { connectionString: url, options: pin };
  }
  const own = parsed.searchParams.get('options');
  if (own === null) return { connectionString: url, options: pin };
  parsed.searchParams.delete('options');
  return { connectionString: parsed.toString(), options: `${own} ${pin}` };
}

/**
 * Refuses a connection whose `search_path` is not `expected`, whose `row_security` is not off, or
 * whose `client_encoding` is not UTF8 (the driver asks for UTF8 in every startup packet, which
 * wins over role and database settings; text is hashed as UTF-8). Run on each new connection
 * (against a login event trigger) and after each statement of a pinned session: code the server
 * runs inside a statement (a view's function, say) can change a setting for the statements after
 * it, and the next one is then never sent.
 */
async function checkSession(client: pg.ClientBase, expected: string): Promise<void> {
  const { rows } = await client.query<{ path: string; encoding: string; rls: string }>(
    `SELECT pg_catalog.current_setting('search_path') AS path, pg_catalog.current_setting('client_encoding') AS encoding,
            pg_catalog.current_setting('row_security') AS rls`,
  );
  const actual = rows[0]?.path;
  const changed = (what: string, value: string | undefined, wanted: string) =>
    new DatabaseSessionError(`the session's ${what} is ${JSON.stringify(value)}, not ${JSON.stringify(wanted)} as this program sets it: something on the server changes it, so the verification stopped`);
  if (actual !== expected) throw changed('search_path', actual, expected);
  if (rows[0]?.encoding !== 'UTF8') throw changed('client_encoding', rows[0]?.encoding, 'UTF8');
  if (rows[0]?.rls !== 'off') throw changed('row_security', rows[0]?.rls, 'off');
}

/** The database could not be reached or stopped answering; callers answer 503, never a guess. */
export class DatabaseUnavailableError extends Error {
  readonly code = 'ERR_DATABASE_UNAVAILABLE';
  constructor(options: { cause: unknown }) {
    super('the database is unavailable', options);
    this.name = 'DatabaseUnavailableError';
  }
}

/**
 * Errors the server reported about a statement (constraint, syntax…) pass through; everything
 * else (refused, reset, timed out, server shutting down: SQLSTATE classes 08, 57P, 53) means
 * the database is unavailable.
 */
function classify(err: unknown): unknown {
  if (err instanceof DatabaseUnavailableError || err instanceof DatabaseSessionError) return err;
  if (err instanceof pg.DatabaseError) {
    const code = err.code ?? '';
    return code.startsWith('08') || code.startsWith('57P') || code.startsWith('53') ? new DatabaseUnavailableError({ cause: err }) : err;
  }
  return err instanceof Error && !(err instanceof TypeError) ? new DatabaseUnavailableError({ cause: err }) : err;
}

const INT8_OID = 20;

function parseInt8(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`int8 value ${value} exceeds the safe integer range`);
  return n;
}

/**
 * Opens a `pg` pool with bounded connect, statement and query times, so a stalled server never
 * holds a caller forever; a call made for a request gets at most the time its deadline has left.
 */
export function createPostgresDatabase(options: PostgresOptions): Database {
  const queryTimeoutMs = options.statementTimeoutMs + 1000;
  const { searchPath } = options;
  const pool = new pg.Pool({
    ...(searchPath === undefined ? { connectionString: options.url } : pinnedStartup(options.url, searchPath)),
    // pg-pool awaits the hook before handing the connection out, and refuses it when the hook throws
    // (@types/pg declares the hook as returning void).
    // eslint-disable-next-line @typescript-eslint/no-misused-promises
    ...(searchPath === undefined ? {} : { onConnect: (client: pg.ClientBase) => checkSession(client, searchPath) }),
    max: options.poolMax,
    connectionTimeoutMillis: options.connectTimeoutMs,
    statement_timeout: options.statementTimeoutMs,
    query_timeout: queryTimeoutMs,
    idle_in_transaction_session_timeout: options.idleInTransactionTimeoutMs ?? options.statementTimeoutMs * 2,
    ...(options.lockTimeoutMs ? { lock_timeout: options.lockTimeoutMs } : {}),
    application_name: options.applicationName ?? 'authtrail',
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary'): unknown =>
        oid === INT8_OID ? parseInt8 : (pg.types.getTypeParser(oid, format) as unknown)) as typeof pg.types.getTypeParser,
    },
  });
  // An idle client losing its server must not crash the process; the next checkout reconnects.
  pool.on('error', () => {});

  /**
   * How long the next call may take for the request it runs for: undefined when no request
   * deadline bounds it (or it is shorter than the pool's own timeouts anyway); throws when the
   * deadline has no time left for it.
   */
  const budgetMs = (): number | undefined => {
    if (options.requestDeadlines === false) return undefined;
    const deadline = currentDeadline();
    if (!deadline) return undefined;
    const ms = deadline.timeForWorkMs();
    if (ms === Infinity) return undefined;
    if (ms < 1) throw new DatabaseUnavailableError({ cause: new DeadlineExceededError(deadline.ms) });
    return Math.ceil(ms);
  };

  /** A pooled connection, waiting for one no longer than `budget` (or the connect timeout). */
  const checkout = async (budget: number | undefined): Promise<pg.PoolClient> => {
    const pending = pool.connect();
    if (budget === undefined || budget >= options.connectTimeoutMs) {
      return pending.catch((err: unknown) => {
        throw classify(err);
      });
    }
    let timer: NodeJS.Timeout | undefined;
    const outOfTime = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DatabaseUnavailableError({ cause: new DeadlineExceededError(budget) })), budget);
    });
    try {
      return await Promise.race([pending, outOfTime]);
    } catch (err) {
      // A connection that arrives after the caller gave up goes straight back to the pool.
      pending.then((client) => client.release(), () => {});
      throw classify(err);
    } finally {
      clearTimeout(timer);
    }
  };

  const wrap = (client: pg.Pool | pg.PoolClient): Queryable => ({
    async query<R>(text: string, params?: readonly unknown[]) {
      const budget = budgetMs();
      try {
        const values = params as unknown[] | undefined;
        const result =
          budget === undefined || budget >= queryTimeoutMs
            ? await client.query(text, values)
            : await client.query({ text, values, query_timeout: budget } as pg.QueryConfig);
        return { rows: result.rows as R[] };
      } catch (err) {
        throw classify(err);
      }
    },
    async exec(script: string) {
      const budget = budgetMs();
      try {
        await (budget === undefined || budget >= queryTimeoutMs ? client.query(script) : client.query({ text: script, query_timeout: budget } as pg.QueryConfig));
      } catch (err) {
        throw classify(err);
      }
    },
  });

  const pooled = wrap(pool);
  /**
   * Runs one call on the pool. When a deadline leaves less than the connect timeout, the call
   * checks a connection out itself, so that the wait for one is bounded by the deadline too.
   */
  async function onPool<T>(run: (q: Queryable) => Promise<T>): Promise<T> {
    const budget = budgetMs();
    if (searchPath === undefined && (budget === undefined || budget >= options.connectTimeoutMs)) return run(pooled);
    const client = await checkout(budget);
    let broken: Error | undefined;
    try {
      const result = await run(wrap(client));
      if (searchPath !== undefined) await checkSession(client, searchPath);
      return result;
    } catch (err) {
      broken = err as Error; // as pg's own pool.query: a connection whose statement failed is not reused
      throw err;
    } finally {
      client.release(broken);
    }
  }

  return {
    kind: 'postgres',
    query: <R>(text: string, params?: readonly unknown[]) => onPool((q) => q.query<R>(text, params)),
    exec: (script: string) => onPool((q) => q.exec(script)),
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      const client = await checkout(budgetMs());
      // A checked-out client that loses its server emits 'error'; the failing query reports it.
      const onError = (): void => {};
      client.on('error', onError);
      let broken: Error | undefined;
      const tx = wrap(client);
      try {
        await tx.query('BEGIN');
        const result = await fn(tx);
        if (searchPath !== undefined) await checkSession(client, searchPath);
        await tx.query('COMMIT');
        return result;
      } catch (err) {
        if (err instanceof pg.DatabaseError) {
          // The server answered with an error: the connection is sound, roll back and reuse it.
          await client.query('ROLLBACK').catch((rollbackError: unknown) => {
            broken = rollbackError as Error;
          });
        } else {
          // Lost or stalled connection, or an error of ours: discarding the connection makes the
          // server roll back, without waiting on a dead socket for a ROLLBACK answer.
          broken = err as Error;
        }
        throw err;
      } finally {
        client.off('error', onError);
        client.release(broken);
      }
    },
    async *copyOut(select: string) {
      const client = await checkout(budgetMs());
      const onError = (): void => {};
      client.on('error', onError);
      const copy = copyTo(`COPY (${select}) TO STDOUT (FORMAT binary)`);
      // The pool's query timeout bounds the whole statement, as for any query.
      const stream = client.query(copy);
      let finished = false;
      let broken: Error | undefined;
      try {
        for await (const chunk of stream as AsyncIterable<Buffer>) yield chunk;
        finished = true;
        if (searchPath !== undefined) await checkSession(client, searchPath);
      } catch (err) {
        broken = err as Error;
        throw classify(err);
      } finally {
        // pg clears that timeout through the query's callback, which a COPY stream never calls
        // (brianc/node-pg-copy-streams#156): left armed, it would fire on the finished stream.
        (copy as { callback?: () => void }).callback?.();
        client.off('error', onError);
        // A COPY stopped half-way leaves the connection mid-statement: it is closed, never reused.
        client.release(broken ?? (finished ? undefined : new Error('COPY abandoned')));
      }
    },
    async close() {
      await pool.end();
    },
  };
}

/** Refuses a second process on the same embedded data directory: PGlite is single-process. */
function lockDataDirectory(dir: string): () => void {
  const lockFile = path.join(dir, 'gateway.pid');
  fs.mkdirSync(dir, { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
      return () => fs.rmSync(lockFile, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(fs.readFileSync(lockFile, 'utf8'));
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new Error(
          `embedded database ${dir} is in use by process ${pid}; embedded mode serves one instance only (set DATABASE_URL for more)`,
        );
      }
      fs.rmSync(lockFile, { force: true });
    }
  }
  throw new Error(`could not lock embedded database directory ${dir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Opens embedded PostgreSQL (PGlite) persisted in `dir`; `dir` undefined keeps it in memory.
 * `searchPath` pins its one session's `search_path` (as {@link PostgresOptions.searchPath}), set
 * once it is open, after whatever settings the data directory holds.
 */
export async function createEmbeddedDatabase(dir: string | undefined, options: { searchPath?: string } = {}): Promise<Database> {
  const { searchPath } = options;
  if (searchPath !== undefined && !SEARCH_PATH.test(searchPath)) throw new RangeError(`search path ${searchPath}: schema names separated by commas, no spaces`);
  const unlock = dir ? lockDataDirectory(dir) : () => {};
  let db: PGlite;
  try {
    db = await PGlite.create(dir, { parsers: { [INT8_OID]: parseInt8 } });
  } catch (err) {
    unlock();
    throw err;
  }
  if (searchPath !== undefined) {
    try {
      await db.exec(`SET search_path = ${searchPath}; SET row_security = off`);
    } catch (err) {
      await db.close().catch(() => {});
      unlock();
      throw err;
    }
  }

  const wrap = (q: Pick<PGlite, 'query' | 'exec'>): Queryable => ({
    async query<R>(text: string, params?: readonly unknown[]) {
      const result = await q.query<R>(text, params as unknown[] | undefined);
      return { rows: result.rows };
    },
    async exec(script: string) {
      await q.exec(script);
    },
  });

  return {
    kind: 'pglite',
    ...wrap(db),
    transaction: (fn) => db.transaction((tx) => fn(wrap(tx))),
    async *copyOut(select: string) {
      const { blob } = await db.query(`COPY (${select}) TO '/dev/blob' (FORMAT binary)`);
      if (!blob) throw new Error('COPY gave no output');
      yield Buffer.from(await blob.arrayBuffer());
    },
    async close() {
      try {
        await db.close();
      } finally {
        unlock();
      }
    },
  };
}
