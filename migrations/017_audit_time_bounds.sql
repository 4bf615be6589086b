-- Times the log can hold, for every writer (the runtime role's direct INSERT privilege included):
--
-- * `occurred_at` lies within the years 0001-9999: the only times whose canonical text (`YYYY-…`,
--   docs/audit-chain.md) is one time each. Outside them the text drops the era (2026 BC prints as
--   2026) or has no form at all ('infinity' prints as NULL), so a record could be changed, or
--   written, without its hash showing it. A CHECK: no trigger setting switches it off.
-- * no statement inserts a record dated more than five minutes after the database's clock (the
--   gateway's and the database's clocks must agree to within that), nor one dated before the
--   record before it. A record dated in the future would otherwise hold every later record's time
--   back to its own (the writer never stamps a record before the head), and one dated 'infinity'
--   or far ahead would leave no time the next record could take.
--
-- A superuser who disables triggers (session_replication_role = replica) or drops the constraint
-- can still write such records: `npm run audit:verify` reports them (hash_mismatch for a time
-- outside 0001-9999, occurred_at_decreased, occurred_at_in_future).
ALTER TABLE audit_log ADD CONSTRAINT audit_log_occurred_at_range
  CHECK (occurred_at >= '0001-01-01 00:00:00+00' AND occurred_at < '10000-01-01 00:00:00+00');

CREATE FUNCTION audit_log_check_times() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
  bad record;
BEGIN
  SELECT n.seq, n.occurred_at, n.occurred_at > clock_timestamp() + interval '5 minutes' AS future INTO bad
    FROM new_rows n
    LEFT JOIN new_rows p ON p.seq = n.seq - 1
   WHERE n.occurred_at > clock_timestamp() + interval '5 minutes'
      OR n.occurred_at < p.occurred_at
      -- The record before the first of the statement's records is in the table: one lookup.
      OR (p.seq IS NULL AND n.occurred_at < (SELECT max(a.occurred_at) FROM audit_log a WHERE a.seq = n.seq - 1))
   ORDER BY n.seq
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'audit_log: record % is dated %, %', bad.seq, bad.occurred_at,
      CASE WHEN bad.future THEN 'more than five minutes after the database''s clock' ELSE 'before the record before it' END
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER audit_log_check_times
  AFTER INSERT ON audit_log REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_check_times();
