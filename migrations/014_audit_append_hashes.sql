-- The chain writer's one-statement append (migration 012) with less to send and to parse per
-- batch: a record's seq and prev_hash follow from the head the writer expects and from the hashes
-- before it, so the server derives them instead of reading them, and the records' hashes come as
-- one bytea of 32 bytes each, in seq order, instead of arrays of hex text. Everything else is as in
-- migration 012: the same lock, the same head check (no row back and nothing stored when the head
-- is elsewhere), the same rows and tiles, committed by the statement itself.
--
-- An overload with other arguments: a gateway of the previous version keeps calling migration
-- 012's function during a rolling upgrade, under the same lock.
CREATE FUNCTION audit_append(
  lock_space integer, lock_key integer, expected_seq bigint, expected_hash bytea,
  r_hashes bytea,
  r_event_id uuid[], r_occurred_at timestamptz[], r_event_type text[], r_outcome text[],
  r_reason text[], r_username text[], r_user_id uuid[], r_ip inet[], r_user_agent text[], r_device_id text[],
  r_mfa_method text[], r_session_id uuid[], r_request_id text[], r_actor_id uuid[], r_details json[],
  r_account text[],
  t_level smallint[], t_idx bigint[], t_hashes bytea[])
RETURNS TABLE (tile_level smallint, tile_idx bigint, tile_width integer)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  n integer := coalesce(cardinality(r_event_id), 0);
  head_seq bigint;
  head_hash bytea;
BEGIN
  -- Every column holds one value per record and there is one hash per record: a short array
  -- would otherwise store NULLs where the writer hashed values.
  IF n = 0 OR octet_length(r_hashes) IS DISTINCT FROM 32 * n
     OR cardinality(r_occurred_at) IS DISTINCT FROM n OR cardinality(r_event_type) IS DISTINCT FROM n
     OR cardinality(r_outcome) IS DISTINCT FROM n OR cardinality(r_reason) IS DISTINCT FROM n
     OR cardinality(r_username) IS DISTINCT FROM n OR cardinality(r_user_id) IS DISTINCT FROM n
     OR cardinality(r_ip) IS DISTINCT FROM n OR cardinality(r_user_agent) IS DISTINCT FROM n
     OR cardinality(r_device_id) IS DISTINCT FROM n OR cardinality(r_mfa_method) IS DISTINCT FROM n
     OR cardinality(r_session_id) IS DISTINCT FROM n OR cardinality(r_request_id) IS DISTINCT FROM n
     OR cardinality(r_actor_id) IS DISTINCT FROM n OR cardinality(r_details) IS DISTINCT FROM n
     OR cardinality(r_account) IS DISTINCT FROM n THEN
    RAISE EXCEPTION 'audit_append: % records, % bytes of hashes and columns of other lengths', n, octet_length(r_hashes)
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM pg_advisory_xact_lock(lock_space, lock_key);
  -- A volatile function's statements each take a new snapshot: this sees every append committed
  -- before the lock was granted.
  SELECT a.seq, a.hash INTO head_seq, head_hash FROM audit_log a ORDER BY a.seq DESC LIMIT 1;
  IF coalesce(head_seq, 0) <> expected_seq OR coalesce(head_hash, expected_hash) <> expected_hash THEN
    RETURN;
  END IF;
  -- Record i (from 1) is seq expected_seq + i; its prev_hash is the hash of record i - 1, or the
  -- head's hash for the first.
  INSERT INTO audit_log (seq, event_id, occurred_at, event_type, outcome, reason, username, user_id, ip,
                         user_agent, device_id, mfa_method, session_id, request_id, actor_id, details,
                         prev_hash, hash, account)
  SELECT expected_seq + r.i, r.event_id, r.occurred_at, r.event_type, r.outcome, r.reason, r.username,
         r.user_id, r.ip, r.user_agent, r.device_id, r.mfa_method, r.session_id, r.request_id, r.actor_id,
         r.details,
         CASE WHEN r.i = 1 THEN expected_hash ELSE substring(r_hashes FROM (r.i::integer - 2) * 32 + 1 FOR 32) END,
         substring(r_hashes FROM (r.i::integer - 1) * 32 + 1 FOR 32),
         r.account
    FROM unnest(r_event_id, r_occurred_at, r_event_type, r_outcome, r_reason, r_username, r_user_id, r_ip,
                r_user_agent, r_device_id, r_mfa_method, r_session_id, r_request_id, r_actor_id, r_details,
                r_account)
         WITH ORDINALITY AS r(event_id, occurred_at, event_type, outcome, reason, username, user_id, ip,
                              user_agent, device_id, mfa_method, session_id, request_id, actor_id, details,
                              account, i);
  RETURN QUERY
    WITH grown AS (
      INSERT INTO audit_tiles AS t (level, idx, hashes)
      SELECT * FROM unnest(t_level, t_idx, t_hashes)
      ON CONFLICT (level, idx) DO UPDATE SET hashes = t.hashes || EXCLUDED.hashes
      RETURNING t.level, t.idx, octet_length(t.hashes))
    SELECT * FROM grown;
END
$$;
