-- One family per login; every rotation adds a token to it. Tokens are stored only as SHA-256.
CREATE TABLE refresh_families (
  id                   uuid PRIMARY KEY,              -- the session id: `sid` in access tokens
  user_id              uuid NOT NULL REFERENCES users (id),
  amr                  text[] NOT NULL,               -- how the login was authenticated (RFC 8176)
  created_at           timestamptz NOT NULL DEFAULT now(),
  absolute_expires_at  timestamptz NOT NULL,
  revoked_at           timestamptz,
  revoked_reason       text
);
CREATE INDEX refresh_families_user_idx ON refresh_families (user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
  token_hash   bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
  family_id    uuid NOT NULL REFERENCES refresh_families (id),
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,                  -- idle expiry
  rotated_at   timestamptz,                           -- NULL while this is the family's current token
  replaced_by  bytea
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
