/**
 * Wall-clock timestamps with microsecond digits, formatted exactly as the chain stores them
 * (`YYYY-MM-DDTHH:MM:SS.ffffffZ`). Sub-millisecond digits come from the monotonic clock anchored
 * to the wall clock; the anchor is reset whenever the wall clock moves away (NTP step), so the
 * time stays true to the millisecond and never runs backwards within an anchor.
 */
export function createMicrosecondClock(): () => string {
  let anchorWall = 0n;
  let anchorMono = 0n;
  let last = 0n;

  return function now(): string {
    const wallMs = BigInt(Date.now());
    const mono = process.hrtime.bigint() / 1000n;
    let micros = anchorWall + (mono - anchorMono);
    if (anchorWall === 0n || micros < wallMs * 1000n - 1000n || micros >= wallMs * 1000n + 2000n) {
      anchorWall = wallMs * 1000n;
      anchorMono = mono;
      micros = anchorWall;
    }
    if (micros < last) micros = last;
    last = micros;
    return formatMicros(micros);
  };
}

/** Formats microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`. */
export function formatMicros(micros: bigint): string {
  const iso = new Date(Number(micros / 1000n)).toISOString(); // ....SS.mmmZ
  return `${iso.slice(0, 23)}${String(micros % 1000n).padStart(3, '0')}Z`;
}

/** SQL that renders a timestamptz column in the chain's format, whatever the session time zone. */
export const sqlTimestamp = (column: string): string =>
  `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
