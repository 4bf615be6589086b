-- Single-use recovery codes, stored as SHA-256 (they are 80-bit random values, not passwords).
CREATE TABLE recovery_codes (
  user_id    uuid NOT NULL REFERENCES users (id),
  code_hash  bytea NOT NULL CHECK (octet_length(code_hash) = 32),
  created_at timestamptz NOT NULL DEFAULT now(),
  used_at    timestamptz,
  PRIMARY KEY (user_id, code_hash)
);

-- The `mfa_token` of a two-step login: short-lived, single-use, bound to one user and attempt.
CREATE TABLE mfa_challenges (
  token_hash   bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
  user_id      uuid NOT NULL REFERENCES users (id),
  username     text NOT NULL,                 -- as attempted at the password step
  request_id   text,                          -- the password step's request
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  used_at      timestamptz
);
CREATE INDEX mfa_challenges_expiry_idx ON mfa_challenges (expires_at);
