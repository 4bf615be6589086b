/**
 * Advisory lock keys (two int4 halves) shared by every gateway process on one database.
 * The first half namespaces them so they do not collide with other applications' locks.
 */
const NAMESPACE = 0x41_55_54_48; // "AUTH"

export const MIGRATIONS_LOCK = [NAMESPACE, 1] as const;
export const AUDIT_CHAIN_LOCK = [NAMESPACE, 2] as const;
/** Held while the first user is created (POST /setup, BOOTSTRAP_ADMIN_*), so exactly one is. */
export const FIRST_USER_LOCK = [NAMESPACE, 3] as const;
