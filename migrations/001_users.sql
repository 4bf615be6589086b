-- Accounts that can log in. Login, lockout and MFA read these fields.
CREATE TABLE users (
  id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  username             text NOT NULL CHECK (length(username) BETWEEN 1 AND 256),
  -- Unicode NFKC, lower case: the key for uniqueness, lookup and lockout counters.
  username_normalized  text NOT NULL UNIQUE CHECK (length(username_normalized) BETWEEN 1 AND 256),
  password_hash        text NOT NULL,
  roles                text[] NOT NULL DEFAULT '{}' CHECK (roles <@ ARRAY['user', 'security', 'admin']::text[]),
  status               text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  -- TOTP secret sealed with AES-256-GCM; NULL until MFA is confirmed.
  mfa_secret_sealed    bytea,
  -- Secret of an enrollment that has started but is not yet confirmed.
  mfa_pending_secret_sealed bytea,
  mfa_enabled          boolean NOT NULL DEFAULT false,
  -- Last TOTP time step accepted, so each code is accepted once.
  mfa_last_step        bigint,
  password_changed_at  timestamptz NOT NULL DEFAULT now(),
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  CHECK (NOT mfa_enabled OR mfa_secret_sealed IS NOT NULL)
);
