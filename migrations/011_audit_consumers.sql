-- Readers that follow the audit log in seq order (the SIEM forwarder's sinks, the alert engine):
-- where each has got to, and which process may advance it.
--
-- A cursor is the seq of the last record a consumer has fully handled; it only moves forward, and
-- only under a live lease. A lease names the one process of the cluster that does a kind of work
-- (`forwarder`, `alerts`) until `lease_until`; it renews the lease while it works, and another
-- process takes over once the lease has run out. `epoch` grows at each takeover and fences the
-- cursor: a process that stalled past its lease (SIGSTOP, a frozen VM) can no longer move a cursor
-- when it wakes up, so at worst records are handled twice, never skipped.
CREATE TABLE audit_leases (
  name         text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 128),
  holder       text NOT NULL CHECK (length(holder) BETWEEN 1 AND 256),
  epoch        bigint NOT NULL CHECK (epoch > 0),
  lease_until  timestamptz NOT NULL
);

CREATE TABLE audit_cursors (
  name        text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 256),
  seq         bigint NOT NULL CHECK (seq >= 0),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A cursor never moves backwards, whoever updates it.
CREATE FUNCTION audit_cursor_forward_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.name <> OLD.name OR NEW.seq < OLD.seq THEN
    RAISE EXCEPTION 'UPDATE on audit_cursors refused: a cursor only moves forward'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER audit_cursor_forward_only
  BEFORE UPDATE ON audit_cursors
  FOR EACH ROW EXECUTE FUNCTION audit_cursor_forward_only();
