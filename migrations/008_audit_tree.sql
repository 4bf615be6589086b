-- The Merkle tree over the audit log (RFC 9162 hashing; docs/audit-chain.md, "The Merkle tree").
-- Leaf n-1 is SHA-256(0x00 ‖ canonical(record seq n)). Its hashes are stored as C2SP tlog-tiles of
-- height 8: tile (level, idx) holds the hashes of the tree nodes at height 8·level, indexes
-- idx·256 … idx·256+255, concatenated (32 bytes each). The rightmost tile of each level is partial
-- and grows, in the chain writer's transaction, by appending hashes until it holds 256.
-- Records already in the log get their tiles at the next start-up (or `npm run migrate`), in
-- chunks under the chain's advisory lock: hashing needs the canonical form, which is code.
CREATE TABLE audit_tiles (
  level   smallint NOT NULL CHECK (level BETWEEN 0 AND 7),
  idx     bigint NOT NULL CHECK (idx >= 0),
  hashes  bytea NOT NULL CHECK (octet_length(hashes) BETWEEN 32 AND 8192 AND octet_length(hashes) % 32 = 0),
  PRIMARY KEY (level, idx)
);
-- Hashes do not compress: store them out of line without trying.
ALTER TABLE audit_tiles ALTER COLUMN hashes SET STORAGE EXTERNAL;

-- A tile only grows: an UPDATE may append hashes to a partial tile and change nothing else.
CREATE FUNCTION audit_tiles_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.level <> OLD.level OR NEW.idx <> OLD.idx
     OR octet_length(NEW.hashes) <= octet_length(OLD.hashes)
     OR substring(NEW.hashes FROM 1 FOR octet_length(OLD.hashes)) <> OLD.hashes THEN
    RAISE EXCEPTION 'UPDATE on audit_tiles refused: a tile only grows by appending hashes'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER audit_tiles_append_only
  BEFORE UPDATE ON audit_tiles
  FOR EACH ROW EXECUTE FUNCTION audit_tiles_append_only();
CREATE TRIGGER audit_tiles_refuse_delete
  BEFORE DELETE ON audit_tiles
  FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();
CREATE TRIGGER audit_tiles_refuse_truncate
  BEFORE TRUNCATE ON audit_tiles
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();

-- Checkpoints are now C2SP tlog-checkpoint signed notes over (origin, tree size, root), with the
-- chain head as an extension line. `seq` is the tree size, `hash` the chain head at it, and
-- `signature` the note's Ed25519 signature. Rows written before this migration keep `note` NULL:
-- their signature covers the authtrail-checkpoint-v1 message, and verifiers still accept them.
ALTER TABLE audit_checkpoints
  ADD COLUMN note text,
  ADD COLUMN root_hash bytea CHECK (octet_length(root_hash) = 32),
  ADD CONSTRAINT audit_checkpoints_note_root CHECK ((note IS NULL) = (root_hash IS NULL));

-- Witness cosignatures (C2SP tlog-cosignature) of the checkpoint of size `tree_size`: each
-- `line` is a complete signature line (`— <name> <base64>`) that GET /audit-log/checkpoint
-- appends to the note. Filled by the witness client; append-only like the log.
CREATE TABLE audit_cosignatures (
  -- The seq of an audit_checkpoints row (no foreign key: it would let TRUNCATE fail before the trigger refuses it).
  tree_size    bigint NOT NULL CHECK (tree_size > 0),
  witness      text NOT NULL CHECK (length(witness) BETWEEN 1 AND 256),
  key_id       bytea NOT NULL CHECK (octet_length(key_id) = 4),
  line         text NOT NULL CHECK (line LIKE '— %' AND position(E'\n' IN line) = 0),
  received_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tree_size, witness, key_id)
);

CREATE TRIGGER audit_cosignatures_refuse_update_delete
  BEFORE UPDATE OR DELETE ON audit_cosignatures
  FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();
CREATE TRIGGER audit_cosignatures_refuse_truncate
  BEFORE TRUNCATE ON audit_cosignatures
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();
