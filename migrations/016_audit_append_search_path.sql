-- The chain writer's append (migrations 012 and 014) named audit_log, audit_tiles and the built-ins
-- it calls without a schema, so they were looked up on the caller's search_path: a session whose
-- path puts another schema first (a role's or database's setting) would append there, and one whose
-- path holds only pg_catalog — as `npm run audit:verify` and `npm run audit:report` pin it
-- (docs/trust-model.md) — could not append at all, yet the report records its read through it.
-- Both overloads now resolve names in public alone, after pg_catalog (implicitly first) and with
-- pg_temp last, whoever calls them.
ALTER FUNCTION public.audit_append(
  integer, integer, bigint, bytea,
  bigint[], uuid[], timestamptz[], text[], text[], text[], text[], uuid[], inet[], text[], text[],
  text[], uuid[], text[], uuid[], json[], bytea[], bytea[], text[],
  smallint[], bigint[], bytea[]) SET search_path = public, pg_temp;
ALTER FUNCTION public.audit_append(
  integer, integer, bigint, bytea,
  bytea,
  uuid[], timestamptz[], text[], text[], text[], text[], uuid[], inet[], text[], text[],
  text[], uuid[], text[], uuid[], json[], text[],
  smallint[], bigint[], bytea[]) SET search_path = public, pg_temp;
