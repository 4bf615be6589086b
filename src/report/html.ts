/**
 * HTML built so that nothing from the log can become markup: the `html` tag escapes every
 * interpolated value, and only fragments the tag itself built (`SafeHtml`) pass through as they
 * are. Usernames, user agents and reasons are attacker-controlled; a value has to go through
 * here to reach the report.
 */

/** A fragment of markup built by {@link html}: trusted, inserted as it is. */
export class SafeHtml {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text as HTML character data or a quoted attribute value. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

export type HtmlValue = SafeHtml | string | number | boolean | null | undefined | readonly HtmlValue[];

function render(value: HtmlValue): string {
  if (value instanceof SafeHtml) return value.text;
  if (Array.isArray(value)) return (value as readonly HtmlValue[]).map(render).join('');
  if (value === null || value === undefined) return '';
  return escapeHtml(String(value));
}

/** A template whose interpolations are escaped (arrays joined, `SafeHtml` kept). */
export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): SafeHtml {
  let out = strings[0]!;
  values.forEach((value, i) => {
    out += render(value) + strings[i + 1]!;
  });
  return new SafeHtml(out);
}
