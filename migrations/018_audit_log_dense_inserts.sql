-- Every INSERT into audit_log (the runtime role's direct INSERT privilege included) continues the
-- chain densely and in time order, checked by migration 017's statement trigger, now in full:
--
-- * each new record's predecessor (seq - 1) exists, in the statement or the table (seq 1 has
--   none). A record past a gap, or at a seq near 2^63, would otherwise make every later append fail
--   ("record … is missing"), a permanent 503 from one statement of the runtime role;
-- * each new record is dated no earlier than its predecessor and no later than its successor, if
--   one is already stored: filling a gap backwards cannot make the time decrease;
-- * none is dated more than five minutes after the database's clock (as in 017).
--
-- A superuser who disables triggers can still write anything; `npm run audit:verify` reports it.
CREATE OR REPLACE FUNCTION audit_log_check_times() RETURNS trigger
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
