/**
 * The compliance report's data (docs/report.md): what `report.json` holds and `report.html`
 * shows. One type for both files, so the HTML can never show what the JSON does not say.
 * Every value taken from the log is a chosen column or a chosen `details` member, never
 * `details` whole.
 */

/** The format tag of report.json and of the first line of its signed note. */
export const REPORT_FORMAT = 'authtrail-audit-report/v1';

/** A list that may be cut at `--max-rows`: `count` is always exact, `rows` its first `rows.length` by seq. */
export interface Listing<T> {
  count: number;
  truncated: boolean;
  rows: T[];
}

/** Who acted: the actor's user id and, when the log names that user anywhere, their username. */
export interface Actor {
  actor_id: string | null;
  actor: string | null;
}

export interface EventCount {
  event_type: string;
  success: number;
  failure: number;
  total: number;
}

export interface LoginAttempts {
  /** The event types counted as sign-in attempts. */
  event_types: readonly string[];
  total: number;
  success: number;
  failure: number;
  /** `mfa_method` null: the record named none (e.g. an unknown user). */
  by_mfa_method: Array<{ mfa_method: string | null; success: number; failure: number }>;
  by_event_type: EventCount[];
  failure_reasons: Array<{ reason: string | null; count: number }>;
}

export interface LockoutStarted {
  seq: number;
  occurred_at: string;
  username: string | null;
  ip: string | null;
  failures: string | null;
  lock_count: string | null;
  locked_until: string | null;
}

export interface LockoutCleared extends Actor {
  seq: number;
  occurred_at: string;
  username: string | null;
  was_locked: string | null;
  via: string | null;
}

export interface UserChange extends Actor {
  seq: number;
  occurred_at: string;
  event_type: string;
  username: string | null;
  user_id: string | null;
  reason: string | null;
  via: string | null;
  /** Roles given at creation, or before and after a change (`details.roles`, `from`, `to`). */
  roles: string[] | null;
  roles_from: string[] | null;
  roles_to: string[] | null;
}

export interface LogRead extends Actor {
  seq: number;
  occurred_at: string;
  event_type: string;
  ip: string | null;
  resource: string | null;
  /** The filters the reader used, as compact JSON text (their own input, never a record's). */
  filters: string | null;
  returned: string | null;
  via: string | null;
}

export interface Alert {
  seq: number;
  occurred_at: string;
  outcome: string;
  reason: string | null;
  username: string | null;
  ip: string | null;
}

export interface Cosignature {
  witness: string;
  key_id: string;
  /** The cosignature/v1 line itself: anyone holding the witness's key can check it. */
  line: string;
  /** The time the witness put in it, RFC 3339 (not verified here). */
  cosigned_at: string | null;
  received_at: string;
}

export interface CheckpointEvidence {
  tree_size: number;
  root: string | null;
  chain_head: string;
  signed_at: string;
  key_id: string;
  /** The checkpoint's signature checked with the trusted keys: `ok`, `unknown_key`, `bad_signature`, `wrong_origin`. */
  signature: string;
  note: string | null;
  cosignatures: Cosignature[];
}

export interface Integrity {
  /** When the full verification ran. */
  verified_at: string;
  valid: boolean;
  chain: {
    valid: boolean;
    checked: number;
    head_seq: number;
    checkpoints_checked: number;
    first_invalid_seq?: number;
    problem?: string;
    detail?: string;
  };
  tree: {
    valid: boolean;
    tree_size: number;
    roots_checked: number;
    tiles_checked: number;
    root: string | null;
    first_invalid_seq?: number;
    problem?: string;
    detail?: string;
  };
  /** The checkpoint export file's line chain and completeness, when one was given (null: none checked). */
  export_file: {
    files: string[];
    valid: boolean;
    lines: number;
    chained_lines: number;
    first_invalid_seq?: number;
    problem?: string;
    detail?: string;
  } | null;
  /**
   * The archived prefix of the log, when there is one: the segments' manifests recorded in the
   * database, checked with the trusted keys and against the stored tree (the archived records
   * themselves are checked by `npm run audit:verify -- --archive DIR`). Null: nothing archived.
   */
  archive: {
    valid: boolean;
    segments: number;
    last_seq: number;
    first_invalid_seq?: number;
    problem?: string;
    detail?: string;
  } | null;
  /** The first signed checkpoint at or after the last record before the period's end: it covers the whole period. Null: none yet. */
  covering_checkpoint: CheckpointEvidence | null;
  /** Signed checkpoints taken during the period (sizes from the period's first record up to the covering one). */
  checkpoints_in_period: Listing<CheckpointEvidence>;
}

export interface ReportData {
  format: typeof REPORT_FORMAT;
  log_origin: string;
  period: { from: string; to: string };
  generated_at: string;
  records: {
    count: number;
    first_seq: number | null;
    last_seq: number | null;
    /**
     * The log's last record written before the period's end (0: none). When the period's end lies
     * in the archive, the last record of the segment that holds it (the database no longer says which).
     */
    head_seq_at_end: number;
    /**
     * Records archived out of the database before the report was made (docs/archives.md): every
     * record up to `through_seq`, the last of them written at `through_occurred_at`. Null: none.
     */
    archived: { through_seq: number; through_occurred_at: string } | null;
    /**
     * False when the period starts at or before the archive's last record: the period's records up
     * to there are in the archive segments, not in the database, and are neither counted nor listed.
     */
    complete: boolean;
  };
  events: EventCount[];
  login_attempts: LoginAttempts;
  lockouts: { started: Listing<LockoutStarted>; cleared: Listing<LockoutCleared> };
  user_changes: Listing<UserChange>;
  log_reads: Listing<LogRead>;
  alerts: Listing<Alert>;
  integrity: Integrity;
  /** The audit record of this report's own read of the log (written before the files; not counted in them). */
  recorded_as: { seq: number; event_id: string; occurred_at: string };
}
