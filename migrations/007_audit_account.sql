-- The account a record concerns, as the gateway keys it: normalizeUsername(username) from
-- src/users/usernames.ts (NFKC, then lower case, then trim of all Unicode white space). Searches
-- and summaries match on this column, so they can never normalize differently from login and
-- lockout: the SQL of migration 006 trimmed only ASCII spaces, and "carol" padded with U+3000,
-- U+00A0 or U+2003 logged in as carol but was missed by a search for her.
--
-- Derived from `username` and NOT part of the hashed record (docs/audit-chain.md); the verifier
-- recomputes it for every row it walks. The chain writer fills it from the JavaScript function.
ALTER TABLE audit_log ADD COLUMN account text;

-- Existing rows, computed in SQL as close to the JavaScript as PostgreSQL allows:
--   normalize(…, NFKC), then lower() under an ICU root collation, which lower-cases exactly like
--   String.prototype.toLowerCase (full mappings: İ → i̇, final sigma → ς), falling back to
--   pg_unicode_fast (PostgreSQL 18) and then to the database's default collation,
--   then remove leading and trailing characters String.prototype.trim removes: ECMAScript
--   WhiteSpace and LineTerminator.
-- The append-only trigger is switched off for this one statement only, inside the migration's
-- transaction; `npm run audit:verify` afterwards reports any row whose backfilled value differs
-- from the JavaScript function (`account_mismatch`).
ALTER TABLE audit_log DISABLE TRIGGER audit_log_refuse_update_delete;
DO $$
DECLARE
  lower_collation text;
BEGIN
  SELECT c.collname INTO lower_collation
    FROM pg_collation c
   WHERE c.collname IN ('und-x-icu', 'pg_unicode_fast')
     AND c.collencoding IN (-1, pg_char_to_encoding(current_setting('server_encoding')))
   ORDER BY c.collname = 'und-x-icu' DESC
   LIMIT 1;
  EXECUTE format(
    $sql$UPDATE audit_log
            SET account = regexp_replace(lower(normalize(username, NFKC)%s),
                  '^[\t\n\u000b\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+|[\t\n\u000b\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+$',
                  '', 'g')
          WHERE username IS NOT NULL$sql$,
    CASE WHEN lower_collation IS NULL THEN '' ELSE format(' COLLATE %I', lower_collation) END);
END
$$;
ALTER TABLE audit_log ENABLE TRIGGER audit_log_refuse_update_delete;

CREATE INDEX audit_log_account_idx ON audit_log (account, seq DESC) WHERE account IS NOT NULL;
DROP INDEX audit_log_username_idx;
