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
  SELECT n.seq, n.occurred_at,
         CASE WHEN n.occurred_at > clock_timestamp() + interval '5 minutes' THEN 'is dated more than five minutes after the database''s clock'
              WHEN p.seq IS NULL AND n.seq <> 1 AND before_it.n = 0 THEN 'has no record before it (seq ' || (n.seq - 1) || ' does not exist)'
              WHEN n.occurred_at < coalesce(p.occurred_at, before_it.at) THEN 'is dated before the record before it'
              ELSE 'is dated after the record after it' END AS why
    INTO bad
    FROM new_rows n
    LEFT JOIN new_rows p ON p.seq = n.seq - 1
    -- (seq + 1 would overflow at the largest bigint, which has no successor)
    LEFT JOIN new_rows s ON s.seq = CASE WHEN n.seq < 9223372036854775807 THEN n.seq + 1 END
    -- Only the statement's first and last records look outside it: two lookups a statement.
    LEFT JOIN LATERAL (SELECT max(a.occurred_at) AS at, count(*) AS n FROM audit_log a WHERE p.seq IS NULL AND a.seq = n.seq - 1) before_it ON true
    LEFT JOIN LATERAL (SELECT min(a.occurred_at) AS at FROM audit_log a WHERE s.seq IS NULL AND a.seq = CASE WHEN n.seq < 9223372036854775807 THEN n.seq + 1 END) after_it ON true
   WHERE n.occurred_at > clock_timestamp() + interval '5 minutes'
      OR (p.seq IS NULL AND n.seq <> 1 AND before_it.n = 0)
      OR n.occurred_at < coalesce(p.occurred_at, before_it.at)
      OR n.occurred_at > coalesce(s.occurred_at, after_it.at)
   ORDER BY n.seq
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'audit_log: record % (dated %) %', bad.seq, bad.occurred_at, bad.why
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END
$$;
