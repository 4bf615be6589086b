-- audit_log partitioned by month of occurred_at (docs/archives.md), so that closed months can be
-- archived as signed segments and then detached and dropped: history leaves the database without
-- a DELETE, and never without a verified copy.
--
-- PostgreSQL requires a partitioned table's unique constraints to include the partition key: the
-- primary key becomes (seq, occurred_at). Each partition keeps its own unique indexes on seq,
-- event_id, prev_hash and hash; across partitions the chain writer's advisory lock and head guard
-- keep seq dense and the chain unforked, and `npm run audit:verify` reports any duplicate.
-- Existing rows are not copied: the old table is renamed and attached as the partition
-- `audit_log_legacy`, covering everything before its last record's month ends.

-- A table about to hold part of audit_log: its own unique indexes (a partitioned table cannot have
-- them without the partition key) and the TRUNCATE guard (statement triggers are not inherited,
-- so `TRUNCATE audit_log_y2026m03` would otherwise bypass the parent's).
CREATE FUNCTION audit_log_guard_partition(part regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  name text := (SELECT relname FROM pg_class WHERE oid = part);
BEGIN
  EXECUTE format('CREATE UNIQUE INDEX %I ON %s (seq)', name || '_seq_key', part);
  EXECUTE format('CREATE UNIQUE INDEX %I ON %s (event_id)', name || '_event_id_key', part);
  EXECUTE format('CREATE UNIQUE INDEX %I ON %s (prev_hash)', name || '_prev_hash_key', part);
  EXECUTE format('CREATE UNIQUE INDEX %I ON %s (hash)', name || '_hash_key', part);
  EXECUTE format('CREATE TRIGGER audit_log_refuse_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change()', part);
END
$$;

-- Creates the partition of the UTC month that holds `month_start` (named audit_log_yYYYYmMM), unless
-- it exists or another partition already covers part of that month; returns its name, else NULL.
-- The table is built and checked on its own and then attached, which locks audit_log only in SHARE
-- UPDATE EXCLUSIVE mode: appends and reads go on. An attach that finds rows of that month in the
-- DEFAULT partition fails (check_violation): the caller raises the alarm (docs/archives.md).
CREATE FUNCTION audit_log_add_month(month_start timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  lo_utc timestamp := date_trunc('month', month_start AT TIME ZONE 'UTC');
  hi_utc timestamp := date_trunc('month', month_start AT TIME ZONE 'UTC') + interval '1 month';
  lo text := to_char(lo_utc, 'YYYY-MM-DD HH24:MI:SS') || '+00';
  hi text := to_char(hi_utc, 'YYYY-MM-DD HH24:MI:SS') || '+00';
  name text := 'audit_log_y' || to_char(lo_utc, 'YYYY') || 'm' || to_char(lo_utc, 'MM');
BEGIN
  IF to_regclass(name) IS NOT NULL THEN
    RETURN NULL;
  END IF;
  EXECUTE format('CREATE TABLE %I (LIKE audit_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)', name);
  EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (occurred_at >= %L AND occurred_at < %L)', name, name || '_range', lo, hi);
  PERFORM audit_log_guard_partition(name::regclass);
  BEGIN
    EXECUTE format('ALTER TABLE audit_log ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
  EXCEPTION WHEN invalid_object_definition THEN
    -- "would overlap partition …": that month is (partly) held by another partition, e.g. the legacy one.
    EXECUTE format('DROP TABLE %I', name);
    RETURN NULL;
  END;
  EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', name, name || '_range');
  RETURN name;
END
$$;

-- What the gateway calls at start and every hour: the partitions of the current UTC month and of the
-- `months_ahead` months after it. SECURITY DEFINER so that the runtime role, which owns nothing and
-- may not create or drop tables, can have them made; it can make nothing else. Returns the
-- partitions it created.
CREATE FUNCTION audit_log_ensure_partitions(months_ahead integer DEFAULT 3) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET lock_timeout = '2s' AS $$
DECLARE
  created text;
BEGIN
  IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 24 THEN
    RAISE EXCEPTION 'months_ahead must be 0 to 24' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOR i IN 0..months_ahead LOOP
    created := audit_log_add_month(((date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i)) AT TIME ZONE 'UTC'));
    IF created IS NOT NULL THEN
      RETURN NEXT created;
    END IF;
  END LOOP;
END
$$;


DO $$
BEGIN
  -- A SECURITY DEFINER function resolves names in its own schema only (and pg_temp last).
  EXECUTE format('ALTER FUNCTION audit_log_ensure_partitions(integer) SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION audit_log_ensure_partitions(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_log_add_month(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_log_guard_partition(regclass) FROM PUBLIC;

-- The old table keeps its rows, its check constraints and its unique indexes, under new names.
ALTER TABLE audit_log RENAME TO audit_log_legacy;
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'audit_log_legacy'::regclass LOOP
    EXECUTE format('ALTER INDEX %I RENAME TO %I', r.relname, 'audit_log_legacy' || substr(r.relname, length('audit_log') + 1));
  END LOOP;
END
$$;

-- The new parent: the same columns in the same order, the same check constraints (same names).
CREATE TABLE audit_log (LIKE audit_log_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)
  PARTITION BY RANGE (occurred_at);
ALTER TABLE audit_log ADD CONSTRAINT audit_log_pkey PRIMARY KEY (seq, occurred_at);
-- The indexes of migrations 006 and 007, now on every partition.
CREATE INDEX audit_log_user_id_idx ON audit_log (user_id, seq DESC) WHERE user_id IS NOT NULL;
CREATE INDEX audit_log_ip_idx ON audit_log (ip, seq DESC) WHERE ip IS NOT NULL;
CREATE INDEX audit_log_device_id_idx ON audit_log (device_id, seq DESC) WHERE device_id IS NOT NULL;
CREATE INDEX audit_log_event_type_idx ON audit_log (event_type, seq DESC);
CREATE INDEX audit_log_occurred_at_idx ON audit_log (occurred_at);
CREATE INDEX audit_log_account_idx ON audit_log (account, seq DESC) WHERE account IS NOT NULL;
-- The append-only guard of migration 003: the row trigger is cloned onto every partition.
CREATE TRIGGER audit_log_refuse_update_delete
  BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();
CREATE TRIGGER audit_log_refuse_truncate
  BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();

-- Whoever could read or append to the old table can to the new one (docs/runtime-role.sql).
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN
    SELECT a.privilege_type, a.grantee
      FROM pg_class c, aclexplode(c.relacl) a
     WHERE c.oid = 'audit_log_legacy'::regclass AND a.grantee <> c.relowner
  LOOP
    EXECUTE format('GRANT %s ON audit_log TO %s', r.privilege_type,
                   CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
  END LOOP;
END
$$;

-- Existing records: attached as they are (no row copied or rewritten), as the partition of every
-- time before the month after the newest one (or before the current month). An empty old table is
-- simply dropped.
DO $$
DECLARE
  upper_bound text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM audit_log_legacy) THEN
    DROP TABLE audit_log_legacy;
    RETURN;
  END IF;
  -- The month after the newest record, or the current month when that is later: no month left uncovered.
  SELECT to_char(greatest(date_trunc('month', max(occurred_at) AT TIME ZONE 'UTC') + interval '1 month',
                          date_trunc('month', now() AT TIME ZONE 'UTC')), 'YYYY-MM-DD HH24:MI:SS') || '+00'
    INTO upper_bound FROM audit_log_legacy;
  -- A partition may not have its own primary key: seq stays unique through a unique constraint.
  ALTER TABLE audit_log_legacy ADD CONSTRAINT audit_log_legacy_seq_key UNIQUE (seq);
  ALTER TABLE audit_log_legacy DROP CONSTRAINT audit_log_legacy_pkey;
  -- The parent's row trigger is cloned onto the partition under the same name.
  DROP TRIGGER audit_log_refuse_update_delete ON audit_log_legacy;
  -- Checked once here, so that ATTACH need not scan the table again.
  EXECUTE format('ALTER TABLE audit_log_legacy ADD CONSTRAINT audit_log_legacy_range CHECK (occurred_at < %L)', upper_bound);
  EXECUTE format('ALTER TABLE audit_log ATTACH PARTITION audit_log_legacy FOR VALUES FROM (MINVALUE) TO (%L)', upper_bound);
  ALTER TABLE audit_log_legacy DROP CONSTRAINT audit_log_legacy_range;
END
$$;

-- The net: a record whose month has no partition (the gateway creates them months ahead, so only a
-- clock far off, or a database no gateway has maintained for months, puts one here) is stored
-- rather than refused. The gateway reports rows here as an alarm; it never archives this partition.
CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;
SELECT audit_log_guard_partition('audit_log_default'::regclass);

-- Rows in the DEFAULT partition (counted up to 10,000): anything above 0 is the gateway's alarm.
-- SECURITY DEFINER because the runtime role reads audit_log only through the parent.
CREATE FUNCTION audit_log_default_rows() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER AS $$
  SELECT count(*) FROM (SELECT 1 FROM audit_log_default LIMIT 10000) AS stray
$$;
DO $$
BEGIN
  EXECUTE format('ALTER FUNCTION audit_log_default_rows() SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION audit_log_default_rows() FROM PUBLIC;

SELECT audit_log_ensure_partitions(3);

-- One row per archived segment (docs/archives.md): the segment's signed manifest, exactly as written
-- next to the records in the archive directory, and the fields the gateway and the verifier look
-- up. The hot log starts after the newest row's last_seq. Append-only like the log.
CREATE TABLE audit_archives (
  first_seq        bigint PRIMARY KEY CHECK (first_seq > 0),
  last_seq         bigint NOT NULL UNIQUE CHECK (last_seq >= first_seq),
  end_hash         bytea NOT NULL CHECK (octet_length(end_hash) = 32),
  tree_root        bytea NOT NULL CHECK (octet_length(tree_root) = 32),
  segment          text NOT NULL UNIQUE CHECK (segment ~ '^authtrail-audit-[0-9]{20}-[0-9]{20}$'),
  file_sha256      bytea NOT NULL CHECK (octet_length(file_sha256) = 32),
  manifest         text NOT NULL,
  manifest_sha256  bytea NOT NULL UNIQUE CHECK (octet_length(manifest_sha256) = 32),
  last_occurred_at timestamptz NOT NULL,
  archived_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER audit_archives_refuse_update_delete
  BEFORE UPDATE OR DELETE ON audit_archives
  FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();
CREATE TRIGGER audit_archives_refuse_truncate
  BEFORE TRUNCATE ON audit_archives
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();

-- Roles that read the log read where it starts; roles that append to it may have its months made.
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN
    SELECT a.privilege_type, a.grantee
      FROM pg_class c, aclexplode(c.relacl) a
     WHERE c.oid = 'audit_log'::regclass AND a.grantee <> c.relowner AND a.grantee <> 0 AND a.privilege_type IN ('SELECT', 'INSERT')
  LOOP
    IF r.privilege_type = 'SELECT' THEN
      EXECUTE format('GRANT SELECT ON audit_archives TO %I', pg_get_userbyid(r.grantee));
    ELSE
      EXECUTE format('GRANT EXECUTE ON FUNCTION audit_log_ensure_partitions(integer), audit_log_default_rows() TO %I', pg_get_userbyid(r.grantee));
    END IF;
  END LOOP;
END
$$;
