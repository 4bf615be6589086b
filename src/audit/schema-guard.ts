import type { Queryable } from '../db/database.js';

/** The log's tables; `audit_log` is partitioned by month (migration 013), the others plain. */
const LOG_TABLES = ['audit_log', 'audit_tiles', 'audit_checkpoints', 'audit_cosignatures', 'audit_archives'] as const;

/** Objects created after `initdb` have OIDs from here on (PostgreSQL's FirstNormalObjectId). */
const FIRST_NORMAL_OID = 16384;

/** The log cannot be verified from this session: something in the database would answer for it. */
export class LogSchemaError extends Error {
  readonly code = 'ERR_LOG_SCHEMA';
}

/**
 * Refuses to verify a log whose reading could run a database administrator's code or go through
 * their conversions rather than PostgreSQL's own: a log table that is not a plain table (a view
 * calls functions; a foreign table reads elsewhere) or has inheritance children (read with it; a
 * partition of `audit_log` is a plain table with none), a column of a type that is not built in (a
 * domain or a type with its own casts), or a cast between built-in types that someone created
 * (`CREATE CAST (json AS text) WITH FUNCTION …` takes over `details::text`, whatever the
 * `search_path`). Row-level security needs no check here: the verifier's sessions run with
 * `row_security` off, so a query a policy would touch fails. Run once, before anything is read.
 */
export async function checkLogSchema(db: Pick<Queryable, 'query'>): Promise<void> {
  const problems: string[] = [];
  const { rows: tables } = await db.query<{ name: string; kind: string; parent: string | null }>(
    `SELECT c.relname AS name, c.relkind::text AS kind, NULL::text AS parent
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relname = ANY ($1::text[])
     UNION ALL
     SELECT c.relname, c.relkind::text, p.relname
       FROM pg_catalog.pg_inherits i
       JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
       JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
       JOIN pg_catalog.pg_namespace n ON n.oid = p.relnamespace
      WHERE n.nspname = 'public' AND p.relname = ANY ($1::text[])`,
    [LOG_TABLES],
  );
  if (!tables.some((t) => t.name === 'audit_log' && t.parent === null)) problems.push('there is no table public.audit_log');
  for (const t of tables) {
    if (t.parent !== null && t.parent !== 'audit_log') {
      // A child's rows are read with its parent's, whatever its kind (a foreign table, or a table with children of its own).
      problems.push(`${t.name} inherits from public.${t.parent}, whose reads would include its rows`);
      continue;
    }
    const allowed = t.name === 'audit_log' && t.parent === null ? ['r', 'p'] : ['r'];
    if (!allowed.includes(t.kind)) problems.push(`${t.parent ? `partition ${t.name} of ${t.parent}` : `public.${t.name}`} is not a plain table (relkind ${t.kind})`);
  }
  const { rows: columns } = await db.query<{ tab: string; col: string; type: string }>(
    `SELECT c.relname AS tab, a.attname AS col, pg_catalog.format_type(a.atttypid, NULL) AS type
       FROM pg_catalog.pg_attribute a
       JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relname = ANY ($1::text[]) AND a.attnum > 0 AND NOT a.attisdropped
        AND a.atttypid >= ${FIRST_NORMAL_OID}`,
    [LOG_TABLES],
  );
  for (const c of columns) problems.push(`column ${c.tab}.${c.col} has the type ${c.type}, which is not built in`);
  const { rows: casts } = await db.query<{ source: string; target: string }>(
    `SELECT pg_catalog.format_type(castsource, NULL) AS source, pg_catalog.format_type(casttarget, NULL) AS target
       FROM pg_catalog.pg_cast
      WHERE oid >= ${FIRST_NORMAL_OID} AND castsource < ${FIRST_NORMAL_OID} AND casttarget < ${FIRST_NORMAL_OID}`,
  );
  for (const c of casts) problems.push(`a cast from ${c.source} to ${c.target} was created in this database, which would replace PostgreSQL's own conversion`);
  if (problems.length > 0) {
    throw new LogSchemaError(`the log cannot be verified here, as its reading would go through objects an administrator created: ${problems.join('; ')}`);
  }
}
