-- The chain writer's append (migration 014's overload) refuses, before it commits anything, tiles
-- that do not bring the Merkle tree to the new head: the tiles sent must bring level 0 exactly to
-- it. Before this, a call without tiles stored records that no tile covered, and answered no row,
-- which the writer reads as "the head moved, nothing stored". The refusal raises: the statement
-- stores neither records nor tiles. Everything else is as in migration 014. Migration 012's
-- overload (for a gateway of the previous version during a rolling upgrade) is unchanged; whatever
-- wrote a record, `npm run audit:verify` reports records in no tile (`tree_size_mismatch`).
--
-- The time rules (`occurred_at` never decreasing along seq, never ahead of the clock) are the
-- table's own, for every writer: migration 017.
CREATE OR REPLACE FUNCTION audit_append(
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
  new_head bigint;
  covered boolean := false;
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
  -- The level-0 tile of the new head must hold exactly its leaf and those before it.
  new_head := expected_seq + n;
  FOR tile_level, tile_idx, tile_width IN
    WITH grown AS (
      INSERT INTO audit_tiles AS t (level, idx, hashes)
      SELECT * FROM unnest(t_level, t_idx, t_hashes)
      ON CONFLICT (level, idx) DO UPDATE SET hashes = t.hashes || EXCLUDED.hashes
      RETURNING t.level, t.idx, octet_length(t.hashes))
    SELECT * FROM grown
  LOOP
    IF tile_level = 0 AND tile_idx = (new_head - 1) / 256 AND tile_width = 32 * ((new_head - 1) % 256 + 1) THEN
      covered := true;
    END IF;
    RETURN NEXT;
  END LOOP;
  IF NOT covered THEN
    RAISE EXCEPTION 'audit_append: the tiles sent do not bring the tree to record %', new_head
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
END
$$;
