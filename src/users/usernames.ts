/** Longest username, in characters after normalization. */
export const USERNAME_MAX_LENGTH = 256;

// \p{Cs}: an unpaired surrogate has no UTF-8 form; stored, it would become U+FFFD and another
// name would log in as the same account.
const CONTROL = /\p{Cc}|\p{Cf}|\p{Cs}|[\u2028\u2029]/u;

export type UsernameProblem = 'empty' | 'too_long' | 'control_characters';

/**
 * The key for uniqueness, lookup and lockout counters: Unicode NFKC, lower case, trimmed.
 * Counted the same for names that do not exist, so lockouts reveal nothing about existence.
 */
export function normalizeUsername(raw: string): string {
  return raw.normalize('NFKC').toLowerCase().trim();
}

/** Why a username cannot be used, if it cannot. Control characters (CR, LF, NUL, bidi overrides) and unpaired surrogates are refused outright. */
export function usernameProblem(raw: string): UsernameProblem | undefined {
  if (CONTROL.test(raw)) return 'control_characters';
  // As typed too: the audit record keeps the first 256 characters of what was attempted, and a
  // longer name padded with white space would be stored as nothing but padding, unsearchable.
  if (raw.length > USERNAME_MAX_LENGTH) return 'too_long';
  const normalized = normalizeUsername(raw);
  if (normalized.length === 0) return 'empty';
  if (normalized.length > USERNAME_MAX_LENGTH) return 'too_long';
  return undefined;
}
