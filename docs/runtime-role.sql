-- Least-privilege runtime role for the gateway (run as the database owner after `npm run migrate`).
-- The gateway then connects as authtrail_app with MIGRATE_ON_START=false (or true: with nothing
-- pending, start-up only reads schema_migrations). Replace authtrail_app with your role's name;
-- create it first, e.g.  CREATE ROLE authtrail_app LOGIN PASSWORD '...';
-- and GRANT CONNECT ON DATABASE <your database> TO authtrail_app;
-- (and REVOKE CONNECT ON DATABASE <your database> FROM PUBLIC: any login to the database can take
-- the chain writer's advisory lock and hold it, which stops every append; docs/trust-model.md)
GRANT USAGE ON SCHEMA public TO authtrail_app;
GRANT SELECT ON schema_migrations TO authtrail_app;
-- The audit trail: append and read, never change. UPDATE, DELETE and TRUNCATE are not granted,
-- and the triggers of migration 003 refuse them even to the owner.
GRANT SELECT, INSERT ON audit_log, audit_checkpoints, audit_cosignatures TO authtrail_app;
-- audit_log is partitioned by month (migration 013, docs/archives.md): the gateway has the coming
-- months' partitions made through this function (SECURITY DEFINER: it can make nothing else) and
-- counts stray rows of the DEFAULT partition; it reads where the hot log starts in audit_archives.
-- It cannot detach or drop a partition: only the owner can (npm run audit:archive runs as the owner).
GRANT EXECUTE ON FUNCTION audit_log_ensure_partitions(integer), audit_log_default_rows() TO authtrail_app;
GRANT SELECT ON audit_archives TO authtrail_app;
-- The Merkle tree's tiles: UPDATE only ever appends hashes to a partial tile (the trigger of
-- migration 008 refuses any other change, and DELETE and TRUNCATE, even to the owner).
GRANT SELECT, INSERT, UPDATE ON audit_tiles TO authtrail_app;
GRANT SELECT, INSERT, UPDATE ON users TO authtrail_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON refresh_families, refresh_tokens TO authtrail_app;
-- DELETE on users only removes an account whose creation could not be recorded in the audit trail.
GRANT DELETE ON users TO authtrail_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON recovery_codes, mfa_challenges TO authtrail_app;
-- Followers of the log (alert engine, `npm run audit:forward`): leases and forward-only cursors.
GRANT SELECT, INSERT, UPDATE ON audit_leases, audit_cursors TO authtrail_app;

-- An external auditor's own read-only login: the log, its checkpoints, cosignatures and tiles,
-- nothing else (no users, no sessions, no secrets). Create the role first, e.g.
--   CREATE ROLE authtrail_auditor LOGIN PASSWORD '...';
--   GRANT CONNECT ON DATABASE <your database> TO authtrail_auditor;
-- then this grants it, or does nothing while no such role exists. `npm run audit:verify` needs
-- no more than this.
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'authtrail_auditor') THEN
    GRANT USAGE ON SCHEMA public TO authtrail_auditor;
    GRANT SELECT ON audit_log, audit_checkpoints, audit_tiles, audit_cosignatures, audit_archives TO authtrail_auditor;
  END IF;
END
$$;

-- The SIEM forwarder's own login (`npm run audit:forward`, docs/streaming.md): it reads the log and
-- moves its leases and cursors, nothing else (no users, no sessions, no secrets, no writes to the
-- log). Create the role first, e.g.
--   CREATE ROLE authtrail_forwarder LOGIN PASSWORD '...';
--   GRANT CONNECT ON DATABASE <your database> TO authtrail_forwarder;
-- then this grants it, or does nothing while no such role exists.
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'authtrail_forwarder') THEN
    GRANT USAGE ON SCHEMA public TO authtrail_forwarder;
    GRANT SELECT ON audit_log TO authtrail_forwarder;
    GRANT SELECT, INSERT, UPDATE ON audit_leases, audit_cursors TO authtrail_forwarder;
  END IF;
END
$$;
