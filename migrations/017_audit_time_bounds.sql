-- Times and seqs the log can hold, for every writer (the runtime role's direct INSERT privilege
-- included, and audit_append's own INSERT):
--
-- * `occurred_at` lies within the years 0001-9999: the only times whose canonical text (`YYYY-…`,
--   docs/audit-chain.md) is one time each. Outside them the text drops the era (2026 BC prints as
--   2026) or has no form at all ('infinity' prints as NULL), so a record could be changed, or
--   written, without its hash showing it. A CHECK: no trigger setting switches it off.
-- * a statement trigger refuses a record dated more than five minutes after the database's clock
--   (the gateway's and the database's clocks must agree to within that), one dated before the
--   record before it or after an already stored record after it, and one whose predecessor
--   (seq - 1) does not exist (seq 1 has none). A record dated ahead would otherwise hold every
--   later record's time back to its own (the writer never stamps a record before the head); one
--   dated 'infinity' or far ahead, or one past a gap or at a seq near 2^63, would make every later
--   append fail: a permanent 503 from one statement of the runtime role.
--
-- A superuser who disables triggers (session_replication_role = replica) or drops the constraint
-- can still write such records: `npm run audit:verify` reports them (hash_mismatch for a time
-- outside 0001-9999, occurred_at_decreased, occurred_at_in_future, seq_gap).
ALTER TABLE audit_log ADD CONSTRAINT audit_log_occurred_at_range
  CHECK (occurred_at >= '0001-01-01 00:00:00+00' AND occurred_at < '10000-01-01 00:00:00+00');

CREATE FUNCTION audit_log_check_times() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
  bad record;
BEGIN
  -- One sort of the statement's records (a transition table has no statistics: a join of it with
  -- itself could be planned as a nested loop, quadratic for a bulk INSERT). Only a record whose
  -- neighbour is not in the statement (its first and last, as a rule) looks in the table.
  WITH r AS (
    SELECT n.seq, n.occurred_at,
           lag(n.seq) OVER w = n.seq - 1 AS prev_in, lag(n.occurred_at) OVER w AS prev_at,
           lead(n.seq) OVER w - 1 = n.seq AS next_in, lead(n.occurred_at) OVER w AS next_at
      FROM new_rows n WINDOW w AS (ORDER BY n.seq)),
  c AS (
    SELECT r.seq, r.occurred_at,
           r.seq <> 1 AND NOT coalesce(r.prev_in, false) AND before_it.n = 0 AS gap,
           CASE WHEN r.prev_in THEN r.prev_at ELSE before_it.at END AS prev_at,
           CASE WHEN r.next_in THEN r.next_at ELSE after_it.at END AS next_at
      FROM r
      -- An aggregate answers one row even when its filter lets none through.
      CROSS JOIN LATERAL (SELECT max(a.occurred_at) AS at, count(*) AS n FROM audit_log a
                           WHERE NOT coalesce(r.prev_in, false) AND a.seq = r.seq - 1) before_it
      -- (seq + 1 would overflow at the largest bigint, which has no successor)
      CROSS JOIN LATERAL (SELECT min(a.occurred_at) AS at FROM audit_log a
                           WHERE NOT coalesce(r.next_in, false)
                             AND a.seq = CASE WHEN r.seq < 9223372036854775807 THEN r.seq + 1 END) after_it)
  SELECT c.seq, c.occurred_at,
         CASE WHEN c.occurred_at > clock_timestamp() + interval '5 minutes' THEN 'is dated more than five minutes after the database''s clock'
              WHEN c.gap THEN 'has no record before it (seq ' || (c.seq - 1) || ' does not exist)'
              WHEN c.occurred_at < c.prev_at THEN 'is dated before the record before it'
              ELSE 'is dated after the record after it' END AS why
    INTO bad
    FROM c
   WHERE c.occurred_at > clock_timestamp() + interval '5 minutes' OR c.gap OR c.occurred_at < c.prev_at OR c.occurred_at > c.next_at
   ORDER BY c.seq
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'audit_log: record % (dated %) %', bad.seq, bad.occurred_at, bad.why
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER audit_log_check_times
  AFTER INSERT ON audit_log REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_check_times();
