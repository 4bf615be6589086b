-- The chain writer pipelines its appends (docs/audit-chain.md, "How records are written"): while
-- one batch is in the server, the next, computed after the head that batch will leave, is sent
-- behind it on another connection. The two calls may reach the chain's lock in either order. A
-- batch that gets the lock first finds the head short of what it expects; instead of "the head is
-- elsewhere" (no row), it now answers "behind" — one row with tile_level -1 and the head's seq —
-- so the writer sends it again once the batch before it has committed, rather than computing it
-- again from a fresh read of the head. Nothing else changes.
CREATE OR REPLACE FUNCTION audit_append(
  lock_space integer, lock_key integer, expected_seq bigint, expected_hash bytea,
  r_seq bigint[], r_event_id uuid[], r_occurred_at timestamptz[], r_event_type text[], r_outcome text[],
  r_reason text[], r_username text[], r_user_id uuid[], r_ip inet[], r_user_agent text[], r_device_id text[],
  r_mfa_method text[], r_session_id uuid[], r_request_id text[], r_actor_id uuid[], r_details json[],
  r_prev_hash bytea[], r_hash bytea[], r_account text[],
  t_level smallint[], t_idx bigint[], t_hashes bytea[])
RETURNS TABLE (tile_level smallint, tile_idx bigint, tile_width integer)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  head_seq bigint;
  head_hash bytea;
BEGIN
  PERFORM pg_advisory_xact_lock(lock_space, lock_key);
  -- A volatile function's statements each take a new snapshot: this sees every append committed
  -- before the lock was granted.
  SELECT a.seq, a.hash INTO head_seq, head_hash FROM audit_log a ORDER BY a.seq DESC LIMIT 1;
  IF coalesce(head_seq, 0) < expected_seq THEN
    tile_level := -1;
    tile_idx := coalesce(head_seq, 0);
    tile_width := 0;
    RETURN NEXT;
    RETURN;
  END IF;
  IF coalesce(head_seq, 0) <> expected_seq OR coalesce(head_hash, expected_hash) <> expected_hash THEN
    RETURN;
  END IF;
  INSERT INTO audit_log (seq, event_id, occurred_at, event_type, outcome, reason, username, user_id, ip,
                         user_agent, device_id, mfa_method, session_id, request_id, actor_id, details,
                         prev_hash, hash, account)
  SELECT * FROM unnest(r_seq, r_event_id, r_occurred_at, r_event_type, r_outcome, r_reason, r_username,
                       r_user_id, r_ip, r_user_agent, r_device_id, r_mfa_method, r_session_id, r_request_id,
                       r_actor_id, r_details, r_prev_hash, r_hash, r_account);
  RETURN QUERY
    WITH grown AS (
      INSERT INTO audit_tiles AS t (level, idx, hashes)
      SELECT * FROM unnest(t_level, t_idx, t_hashes)
      ON CONFLICT (level, idx) DO UPDATE SET hashes = t.hashes || EXCLUDED.hashes
      RETURNING t.level, t.idx, octet_length(t.hashes))
    SELECT * FROM grown;
END
$$;
