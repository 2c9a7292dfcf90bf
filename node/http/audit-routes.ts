/**
 * The audit log's admin route (mounted under /admin/v1 with the admin API's
 * error handler):
 *
 *   GET /audit[?since=T&until=T&actor=A&action=X&repo=R&limit=N]
 *       → {region, records}    this region's newest `limit` matching records, oldest first
 *
 * `since` and `until` are ISO-8601 times or durations meaning "that long ago"
 * (`90s`, `15m`, `2h`, `7d`, `1w`, or sums such as `1h30m`); `action` is one
 * of AUDIT_ACTIONS; `limit` is 1…10000 (default 1000). A malformed or unknown
 * parameter is an UnsupportedError (400) naming it: the query string's shape
 * (known names, each given once) is the route's schema (admin/schema.ts),
 * its values are `parseAuditQuery`'s.
 */
import type { FastifyInstance } from "fastify";
import { parseAuditTime } from "../../protocol/audit-time.js";
import { UnsupportedError } from "../../protocol/errors.js";
import {
  AUDIT_ACTIONS,
  type AuditAction,
  type AuditLog,
  type AuditQuery,
  DEFAULT_AUDIT_LIMIT,
  MAX_AUDIT_LIMIT,
} from "../audit.js";
import { Fixed, Type, validatorCompiler } from "./admin/schema.js";

/** How long one query may read the stream before it is answered with a 503. */
const QUERY_TIMEOUT_MS = 30_000;

const PARAMETERS = new Set(["since", "until", "actor", "action", "repo", "limit"]);
const AuditParameters = Fixed(
  Object.fromEntries([...PARAMETERS].map((p) => [p, Type.Optional(Type.String())])) as Record<
    string,
    ReturnType<typeof Type.Optional<ReturnType<typeof Type.String>>>
  >,
);

/** The query string of GET /audit as an AuditQuery; throws UnsupportedError naming the first bad parameter. */
export function parseAuditQuery(params: Record<string, unknown>, now: Date): AuditQuery {
  const q: AuditQuery = {};
  for (const [key, raw] of Object.entries(params)) {
    if (!PARAMETERS.has(key))
      throw new UnsupportedError(
        `unknown parameter ${JSON.stringify(key.slice(0, 64))}: want ${[...PARAMETERS].join(", ")}`,
      );
    if (typeof raw !== "string") throw new UnsupportedError(`parameter ${key}: give it once`);
    if (raw === "") throw new UnsupportedError(`parameter ${key}: empty`);
    switch (key) {
      case "since":
      case "until":
        q[key] = parseAuditTime(raw, now, key);
        break;
      case "actor":
      case "repo":
        q[key] = raw;
        break;
      case "action":
        if (!(AUDIT_ACTIONS as readonly string[]).includes(raw))
          throw new UnsupportedError(
            `invalid action ${JSON.stringify(raw.slice(0, 64))}: want one of ${AUDIT_ACTIONS.join(", ")}`,
          );
        q.action = raw as AuditAction;
        break;
      case "limit": {
        const n = /^\d{1,6}$/.test(raw) ? Number(raw) : Number.NaN;
        if (!(n >= 1 && n <= MAX_AUDIT_LIMIT))
          throw new UnsupportedError(
            `invalid limit ${JSON.stringify(raw.slice(0, 64))}: want a whole number from 1 to ${MAX_AUDIT_LIMIT}`,
          );
        q.limit = n;
        break;
      }
    }
  }
  if (q.since !== undefined && q.until !== undefined && q.since.getTime() > q.until.getTime())
    throw new UnsupportedError(`since (${q.since.toISOString()}) is after until (${q.until.toISOString()})`);
  q.limit ??= DEFAULT_AUDIT_LIMIT;
  return q;
}

/**
 * Register GET /audit on the admin API's instance (its prefix and error
 * handler apply). The route brings its own validator: mounted elsewhere (a
 * test's bare context) its schema is still checked the admin API's way.
 */
export async function auditRoutes(admin: FastifyInstance, audit: AuditLog, region: string): Promise<void> {
  admin.get("/audit", { schema: { querystring: AuditParameters }, validatorCompiler }, async (req) => {
    const query = parseAuditQuery((req.query ?? {}) as Record<string, unknown>, new Date());
    const records = await audit.query(query, AbortSignal.timeout(QUERY_TIMEOUT_MS));
    return { region, records };
  });
}
