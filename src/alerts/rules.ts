import fs from 'node:fs';
import { z } from 'zod';
import { ALERT_RULE_NAMES } from '../audit/vocabulary.js';

/**
 * The alert rules file (`AUDIT_ALERT_RULES_FILE`, docs/alerts.md): which rules run, their
 * thresholds, windows and suppression periods. Validated once at start-up with zod, strictly, so
 * a misspelled member is refused naming it instead of silently leaving a default in place. Every
 * member is optional: what the file leaves out keeps the default documented here and in
 * docs/alerts.md, and without the variable every default applies.
 */

export const RULE_NAMES = ALERT_RULE_NAMES;

export type RuleName = (typeof RULE_NAMES)[number];
export type Severity = 'low' | 'medium' | 'high' | 'critical';

/** What every rule has. */
export interface RuleBase {
  readonly enabled: boolean;
  readonly severity: Severity;
  /** After an alert for a key, further triggers of the same rule and key within this time (by the records' clocks) raise nothing. */
  readonly suppressSeconds: number;
}

/** A rule counting something distinct over a sliding window of the records' `occurred_at`. */
export interface WindowRule extends RuleBase {
  readonly threshold: number;
  readonly windowSeconds: number;
}

export interface NewDeviceRule extends RuleBase {
  /** A user's first successful login ever has no earlier device to compare with: no alert. */
  readonly ignoreFirstLogin: boolean;
  /** Logins that sent no `X-Device-Id` raise nothing. */
  readonly ignoreMissingDevice: boolean;
}

export const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

export interface OffHoursRule extends RuleBase {
  /** IANA time zone the hours and weekdays are read in. */
  readonly timeZone: string;
  readonly weekdays: readonly Weekday[];
  /** Working hours, minutes after local midnight: `start` inclusive, `end` exclusive; start > end spans midnight. */
  readonly startMinute: number;
  readonly endMinute: number;
}

export interface AlertRules {
  readonly password_spraying: WindowRule;
  readonly credential_stuffing: WindowRule;
  readonly lockout_storm: WindowRule;
  readonly success_after_failures: WindowRule;
  readonly new_device: NewDeviceRule;
  readonly admin_off_hours: OffHoursRule;
}

/** A rules file that cannot be used; the message names the file's variable and the member. */
export class AlertRulesError extends Error {
  readonly code = 'ERR_ALERT_RULES_INVALID';
  constructor(readonly problems: readonly string[]) {
    super(`Invalid alert rules (AUDIT_ALERT_RULES_FILE):\n  - ${problems.join('\n  - ')}`);
    this.name = 'AlertRulesError';
  }
}

const DAY_SECONDS = 86_400;
const severity = z.enum(['low', 'medium', 'high', 'critical']);
const seconds = (max: number) => z.number().int().min(1).max(max);
const HH_MM = /^([01]\d|2[0-3]):([0-5]\d)$/;
const clock = z.string().regex(HH_MM, { message: 'must be HH:MM (00:00 to 23:59)' });

function validTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** Defaults (docs/alerts.md says why each is what it is). */
export const DEFAULT_RULES: AlertRules = {
  password_spraying: { enabled: true, severity: 'high', threshold: 20, windowSeconds: 600, suppressSeconds: 3600 },
  credential_stuffing: { enabled: true, severity: 'high', threshold: 5, windowSeconds: 900, suppressSeconds: 3600 },
  lockout_storm: { enabled: true, severity: 'high', threshold: 10, windowSeconds: 600, suppressSeconds: 3600 },
  success_after_failures: { enabled: true, severity: 'high', threshold: 5, windowSeconds: 3600, suppressSeconds: 3600 },
  new_device: { enabled: true, severity: 'low', ignoreFirstLogin: true, ignoreMissingDevice: true, suppressSeconds: 3600 },
  admin_off_hours: {
    enabled: true,
    severity: 'medium',
    timeZone: 'UTC',
    weekdays: ['mon', 'tue', 'wed', 'thu', 'fri'],
    startMinute: 7 * 60,
    endMinute: 20 * 60,
    suppressSeconds: 3600,
  },
};

const base = {
  enabled: z.boolean().optional(),
  severity: severity.optional(),
  suppress_seconds: seconds(30 * DAY_SECONDS).optional(),
};
const windowRule = z.strictObject({
  ...base,
  threshold: z.number().int().min(1).max(100_000).optional(),
  window_seconds: seconds(7 * DAY_SECONDS).optional(),
});
const fileSchema = z.strictObject({
  password_spraying: windowRule.optional(),
  credential_stuffing: windowRule.optional(),
  lockout_storm: windowRule.optional(),
  success_after_failures: windowRule.optional(),
  new_device: z.strictObject({ ...base, ignore_first_login: z.boolean().optional(), ignore_missing_device: z.boolean().optional() }).optional(),
  admin_off_hours: z
    .strictObject({
      ...base,
      time_zone: z.string().max(64).refine(validTimeZone, { message: 'must be an IANA time zone such as Europe/Berlin' }).optional(),
      weekdays: z.array(z.enum(WEEKDAYS)).max(7).optional(),
      start: clock.optional(),
      end: clock.optional(),
    })
    .refine((r) => r.start === undefined || r.end === undefined || r.start !== r.end, { message: 'start and end must differ', path: ['end'] })
    .optional(),
});

type RulesFile = z.infer<typeof fileSchema>;

const minutesOf = (text: string): number => {
  const m = HH_MM.exec(text)!;
  return Number(m[1]) * 60 + Number(m[2]);
};

function windowOf(given: z.infer<typeof windowRule> | undefined, d: WindowRule): WindowRule {
  return {
    enabled: given?.enabled ?? d.enabled,
    severity: given?.severity ?? d.severity,
    threshold: given?.threshold ?? d.threshold,
    windowSeconds: given?.window_seconds ?? d.windowSeconds,
    suppressSeconds: given?.suppress_seconds ?? d.suppressSeconds,
  };
}

/** The rules a parsed file describes, defaults filled in. */
function rulesOf(file: RulesFile): AlertRules {
  const d = DEFAULT_RULES;
  const nd = file.new_device;
  const oh = file.admin_off_hours;
  return {
    password_spraying: windowOf(file.password_spraying, d.password_spraying),
    credential_stuffing: windowOf(file.credential_stuffing, d.credential_stuffing),
    lockout_storm: windowOf(file.lockout_storm, d.lockout_storm),
    success_after_failures: windowOf(file.success_after_failures, d.success_after_failures),
    new_device: {
      enabled: nd?.enabled ?? d.new_device.enabled,
      severity: nd?.severity ?? d.new_device.severity,
      suppressSeconds: nd?.suppress_seconds ?? d.new_device.suppressSeconds,
      ignoreFirstLogin: nd?.ignore_first_login ?? d.new_device.ignoreFirstLogin,
      ignoreMissingDevice: nd?.ignore_missing_device ?? d.new_device.ignoreMissingDevice,
    },
    admin_off_hours: {
      enabled: oh?.enabled ?? d.admin_off_hours.enabled,
      severity: oh?.severity ?? d.admin_off_hours.severity,
      suppressSeconds: oh?.suppress_seconds ?? d.admin_off_hours.suppressSeconds,
      timeZone: oh?.time_zone ?? d.admin_off_hours.timeZone,
      weekdays: oh?.weekdays ? [...new Set(oh.weekdays)] : d.admin_off_hours.weekdays,
      startMinute: oh?.start === undefined ? d.admin_off_hours.startMinute : minutesOf(oh.start),
      endMinute: oh?.end === undefined ? d.admin_off_hours.endMinute : minutesOf(oh.end),
    },
  };
}

/** Validates the rules file's JSON value; throws {@link AlertRulesError} naming each bad member (never its value). */
export function parseAlertRules(value: unknown): AlertRules {
  const parsed = fileSchema.safeParse(value);
  if (!parsed.success) {
    throw new AlertRulesError(
      parsed.error.issues.map((issue) => {
        const at = issue.path.length > 0 ? issue.path.join('.') : '(the file)';
        const keys = issue.code === 'unrecognized_keys' ? `: ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}` : '';
        return `${at}: ${issue.code === 'unrecognized_keys' ? 'unknown member' : issue.message}${keys}`;
      }),
    );
  }
  const rules = rulesOf(parsed.data);
  const { start, end } = parsed.data.admin_off_hours ?? {};
  if ((start === undefined) !== (end === undefined) && rules.admin_off_hours.startMinute === rules.admin_off_hours.endMinute) {
    throw new AlertRulesError(['admin_off_hours.end: start and end must differ']);
  }
  return rules;
}

/**
 * The rules of `file`, or the defaults when no file is configured. A file that cannot be read,
 * is not JSON, or breaks the schema throws {@link AlertRulesError}: the gateway refuses to start.
 */
export function loadAlertRules(file: string | undefined): AlertRules {
  if (file === undefined) return DEFAULT_RULES;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new AlertRulesError([`(the file): cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new AlertRulesError(['(the file): is not JSON']);
  }
  return parseAlertRules(value);
}

/** The longest window of the enabled window rules: how far back a new leader re-reads to warm them. */
export function longestWindowSeconds(rules: AlertRules): number {
  const windows = (['password_spraying', 'credential_stuffing', 'lockout_storm', 'success_after_failures'] as const)
    .filter((name) => rules[name].enabled)
    .map((name) => rules[name].windowSeconds);
  return Math.max(0, ...windows);
}

/** The longest suppression period of the enabled rules: alerts raised this long ago may still hold a key quiet. */
export function longestSuppressSeconds(rules: AlertRules): number {
  return Math.max(0, ...RULE_NAMES.filter((name) => rules[name].enabled).map((name) => rules[name].suppressSeconds));
}
