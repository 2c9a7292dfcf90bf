/**
 * Recent activity (mounted under /admin/v1 by ../admin.ts; a read, so
 * system admins and operators):
 *
 *   GET /activity[?limit=N&kind=K,K…]   {region, items: [{kind, region, at, summary, detail?}]}
 *
 * The newest first, at most `limit` (1…MAX_ACTIVITY_LIMIT, default
 * DEFAULT_ACTIVITY_LIMIT): tag conflicts, alerts (`replication-failed` apart),
 * finished policy and GC runs and failovers of every region, as this
 * region's view has them (node/data/projections/activity.ts). `kind` keeps
 * only those kinds. mesh-client/activity.ts merges every region's answer.
 */
import type { FastifyPluginAsync } from "fastify";
import { UnsupportedError } from "../../../protocol/errors.js";
import { ACTIVITY_KINDS, type ActivityKind } from "../../data/projections/activity.js";
import type { Registry } from "../../data/registry.js";
import { Fixed, Type, want } from "./schema.js";

export const DEFAULT_ACTIVITY_LIMIT = 50;
export const MAX_ACTIVITY_LIMIT = 500;

const ActivityQuery = Fixed({
  limit: Type.Optional(
    want(Type.String({ pattern: "^[0-9]{1,4}$" }), `a whole number from 1 to ${MAX_ACTIVITY_LIMIT}`),
  ),
  kind: Type.Optional(
    want(
      Type.String({ pattern: `^(${ACTIVITY_KINDS.join("|")})(,(${ACTIVITY_KINDS.join("|")}))*$` }),
      `kinds separated by commas, of ${ACTIVITY_KINDS.join(", ")}`,
    ),
  ),
});

export const activityRoutes: FastifyPluginAsync<{ registry: Registry }> = async (
  admin,
  { registry: reg },
) => {
  admin.get<{ Querystring: { limit?: string; kind?: string } }>(
    "/activity",
    { schema: { querystring: ActivityQuery } },
    async (req) => {
      const limit = req.query.limit === undefined ? DEFAULT_ACTIVITY_LIMIT : Number(req.query.limit);
      if (limit < 1 || limit > MAX_ACTIVITY_LIMIT)
        throw new UnsupportedError(
          `limit: want a whole number from 1 to ${MAX_ACTIVITY_LIMIT}, got ${limit}`,
          {
            detail: { errors: [`limit: want a whole number from 1 to ${MAX_ACTIVITY_LIMIT}, got ${limit}`] },
          },
        );
      const kinds = req.query.kind?.split(",") as ActivityKind[] | undefined;
      return { region: reg.region, items: await reg.view.activity.recent(limit, kinds) };
    },
  );
};
