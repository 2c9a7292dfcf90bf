/**
 * Moving a scope's home and rebuilding a region (mounted under /admin/v1 by ../admin.ts):
 *
 *   POST /failover        {from, to, force?} → {from, to, epoch, scopes}
 *   POST /rebuild         {region?} → 202 {region, runId, seq}
 *   GET  /rebuild/:runId  the rebuild's run record (404 until it finishes)
 *
 * Bodies are JSON (or YAML with a YAML content type), checked by the schemas
 * below (./schema.ts) before the handler runs.
 */
import { randomUUID } from "node:crypto";
import type { FastifyPluginAsync } from "fastify";
import { PolicyNotFoundError } from "../../../protocol/errors.js";
import { REBUILD_RUN } from "../../../protocol/events.js";
import type { Registry } from "../../data/registry.js";
import { actorOf } from "../access.js";
import { badRequest, isRegion, readBody } from "./request.js";
import { Fixed, RegionName, show, Type, want } from "./schema.js";

const FailoverBody = Fixed({
  from: RegionName(),
  to: RegionName(),
  force: Type.Optional(want(Type.Boolean(), "true or false")),
});
const RebuildBody = Fixed({ region: Type.Optional(RegionName()) });

export const failoverRoutes: FastifyPluginAsync<{ registry: Registry }> = async (
  admin,
  { registry: reg },
) => {
  admin.post<{ Body: { from: string; to: string; force?: boolean } }>(
    "/failover",
    { schema: { body: FailoverBody }, preValidation: readBody() },
    async (req) => {
      const { from, to, force } = req.body;
      const problems: string[] = [];
      for (const [field, v] of [
        ["from", from],
        ["to", to],
      ] as const)
        if (!isRegion(v)) problems.push(`${field}: required: a region name, got ${show(v)}`);
      if (problems.length > 0) throw badRequest(problems);
      return reg.failover(from, to, force === true, actorOf(req.identity));
    },
  );

  admin.post<{ Body: { region?: string } }>(
    "/rebuild",
    { schema: { body: RebuildBody }, preValidation: readBody({}) },
    async (req, reply) => {
      const region = req.body.region ?? reg.region;
      if (!isRegion(region)) throw badRequest([`region: want a region name, got ${show(region)}`]);
      const runId = randomUUID();
      const seq = await reg.commitAdmin(
        { type: "policy.run", name: REBUILD_RUN, runId, region },
        actorOf(req.identity),
      );
      return reply.status(202).send({ region, runId, seq });
    },
  );

  admin.get<{ Params: { runId: string } }>("/rebuild/:runId", async (req) => {
    const { runId } = req.params;
    const run = runId.length > 64 ? undefined : await reg.view.admin.run(REBUILD_RUN, runId);
    if (run === undefined)
      throw new PolicyNotFoundError(`no finished rebuild ${runId.slice(0, 64)}`, { detail: { runId } });
    return run;
  });
};
