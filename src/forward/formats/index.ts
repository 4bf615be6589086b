import type { StoredRecord } from '../../audit/follow.js';
import { toCef } from './cef.js';
import { toEcs } from './ecs.js';
import { toNative } from './native.js';
import { toOcsf } from './ocsf.js';
import { viewOf, type FormatContext, type RecordView } from './record-view.js';

/** The message formats a sink can send (docs/streaming.md, "Formats"). */
export const FORMATS = ['ocsf', 'ecs', 'cef', 'native'] as const;
export type Format = (typeof FORMATS)[number];

/** One record in a sink's format: a JSON object (ocsf, ecs, native) or a text line (cef). */
export type Formatted = Record<string, unknown> | string;

export function formatView(format: Format, view: RecordView, ctx: FormatContext): Formatted {
  switch (format) {
    case 'ocsf':
      return toOcsf(view, ctx);
    case 'ecs':
      return toEcs(view, ctx);
    case 'cef':
      return toCef(view, ctx);
    case 'native':
      return toNative(view);
  }
}

export function formatRecord(format: Format, record: StoredRecord, ctx: FormatContext): Formatted {
  return formatView(format, viewOf(record), ctx);
}

/** The formatted record as text: JSON on one line (no raw line break survives JSON.stringify), or the CEF line. */
export const formattedText = (message: Formatted): string => (typeof message === 'string' ? message : JSON.stringify(message));

export { viewOf, productVersion, type FormatContext, type RecordView } from './record-view.js';
