-- The append-only, hash-chained record of every authentication decision (SPEC §5).
-- docs/audit-chain.md defines how `hash` is computed from these columns.
CREATE TABLE audit_log (
  seq          bigint PRIMARY KEY CHECK (seq > 0),
  event_id     uuid NOT NULL UNIQUE,
  occurred_at  timestamptz NOT NULL,
  event_type   text NOT NULL CHECK (event_type ~ '^[a-z][a-z_]*(\.[a-z][a-z_]*)*$'),
  outcome      text NOT NULL CHECK (outcome IN ('success', 'failure')),
  reason       text,
  username     text,
  user_id      uuid,
  ip           inet CHECK (ip IS NULL OR masklen(ip) = CASE family(ip) WHEN 4 THEN 32 ELSE 128 END),
  user_agent   text,
  device_id    text,
  mfa_method   text CHECK (mfa_method IN ('none', 'totp', 'recovery_code')),
  session_id   uuid,
  request_id   text,
  actor_id     uuid,
  -- `json`, not `jsonb`: the exact text that was hashed is kept byte for byte.
  details      json,
  prev_hash    bytea NOT NULL UNIQUE CHECK (octet_length(prev_hash) = 32),
  hash         bytea NOT NULL UNIQUE CHECK (octet_length(hash) = 32)
);

-- Signed statements "the chain head was (seq, hash) at signed_at", also exported outside the database.
CREATE TABLE audit_checkpoints (
  seq        bigint PRIMARY KEY CHECK (seq > 0),
  hash       bytea NOT NULL CHECK (octet_length(hash) = 32),
  signed_at  timestamptz NOT NULL,
  key_id     text NOT NULL,
  signature  bytea NOT NULL CHECK (octet_length(signature) = 64)
);
