-- Role `auditor`: reads login history, lockouts, checkpoints, proofs and verification results;
-- changes nothing (src/users/user-queries.ts, ROLES).
DO $$
DECLARE
  name text;
BEGIN
  FOR name IN
    SELECT conname FROM pg_constraint
     WHERE conrelid = 'users'::regclass AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%roles <@%'
  LOOP
    EXECUTE format('ALTER TABLE users DROP CONSTRAINT %I', name);
  END LOOP;
END
$$;
ALTER TABLE users ADD CONSTRAINT users_roles_check CHECK (roles <@ ARRAY['user', 'security', 'admin', 'auditor']::text[]);
