/**
 * The audit log's time syntax, shared by the admin API (`GET /admin/v1/audit`
 * `since`/`until`, node/http/audit-routes.ts) and `meridian audit`
 * (cli/audit.ts, which checks the flags before asking any region): ISO-8601
 * times or durations meaning "that long ago" (`90s`, `15m`, `2h`, `7d`,
 * `1w`, or sums such as `1h30m`).
 */
import { UnsupportedError } from "./errors.js";

const UNIT_MS: Record<string, number> = {
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};
const DURATION = /^(?:\d{1,9}[smhdw])+$/;
const DURATION_PART = /(\d{1,9})([smhdw])/g;
/** A calendar date, optionally with a time and a zone: what `Date.parse` reads the same everywhere. */
const ISO_8601 = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/i;

/**
 * A `since`/`until` parameter as a time: an ISO-8601 date or time (UTC when
 * it names no zone), or a duration before `now`. Throws UnsupportedError
 * naming `name` for anything else.
 */
export function parseAuditTime(text: string, now: Date, name = "time"): Date {
  const t = text.trim();
  if (DURATION.test(t)) {
    let ms = 0;
    for (const [, n, unit] of t.matchAll(DURATION_PART)) ms += Number(n) * UNIT_MS[unit!]!;
    return new Date(now.getTime() - ms);
  }
  if (ISO_8601.test(t)) {
    // A time without a zone is UTC: the audit log's times are all UTC, and
    // Date.parse would otherwise read it in the server's local zone.
    const zoned = /T|\s/.test(t) && !/(?:Z|[+-]\d{2}:?\d{2})$/i.test(t) ? `${t}Z` : t;
    const ms = Date.parse(zoned.replace(" ", "T"));
    if (Number.isFinite(ms)) return new Date(ms);
  }
  throw new UnsupportedError(
    `invalid ${name} ${JSON.stringify(text.slice(0, 64))}: want an ISO-8601 time (2024-05-01T12:00:00Z) or a duration ago (15m, 2h, 7d)`,
  );
}
