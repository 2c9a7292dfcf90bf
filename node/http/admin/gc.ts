/**
 * Garbage collection (mounted under /admin/v1 by ../admin.ts; system admins
 * only, the gate's default):
 *
 *   POST /gc/runs  {dryRun?, now?}       202 {runId, region, dryRun, graceMs, undeleteWindowMs}
 *   GET  /gc/runs/:runId                 the run: state (running|ok|failed), progress, result
 *   GET  /gc/collected/:digest           {collections: [{region, runId, reason, size, repos, at, actor}]}:
 *                                        why a blob is missing (any region's runs, as replicated)
 *
 * A run is started on the node that answers and runs there
 * (node/data/gc.ts); its GET answers from that node's memory, else from the
 * view's record of the run (its `gc.run` / `gc.finished` events, from any
 * node of any region). `now=true` sets the grace and the undelete window to
 * zero for that one run (emergencies and tests); it is recorded in the
 * run's `gc.run` event (its grace and window) and, being in the body, in
 * the audit record of the request like every admin write's body.
 */
import type { FastifyPluginAsync } from "fastify";
import { parseDigest } from "../../../protocol/digest.js";
import { RouteNotFoundError } from "../../../protocol/errors.js";
import type { Registry } from "../../data/registry.js";
import { actorOf } from "../access.js";
import { readBody } from "./request.js";
import { Fixed, Type, want } from "./schema.js";

const RunBody = Fixed({
  dryRun: Type.Optional(want(Type.Boolean(), "true or false")),
  now: Type.Optional(want(Type.Boolean(), "true or false")),
});

export const gcRoutes: FastifyPluginAsync<{ registry: Registry }> = async (admin, { registry: reg }) => {
  admin.post<{ Body: { dryRun?: boolean; now?: boolean } }>(
    "/gc/runs",
    { schema: { body: RunBody }, preValidation: readBody({}) },
    async (req, reply) => {
      const { state } = reg.gc.start({
        dryRun: req.body.dryRun === true,
        now: req.body.now === true,
        actor: actorOf(req.identity),
        trigger: "manual",
      });
      reply.code(202);
      return {
        runId: state.runId,
        region: state.region,
        dryRun: state.dryRun,
        graceMs: state.graceMs,
        undeleteWindowMs: state.undeleteWindowMs,
      };
    },
  );

  admin.get<{ Params: { runId: string } }>("/gc/runs/:runId", async (req) => {
    const local = reg.gc.get(req.params.runId);
    if (local !== undefined) return local;
    const record = await reg.view.gc.gcRun(req.params.runId);
    if (record === undefined) throw new RouteNotFoundError(`no GC run ${req.params.runId}`);
    return {
      runId: record.runId,
      region: record.region,
      state: record.finished === undefined ? "running" : record.finished.outcome,
      dryRun: record.dryRun,
      graceMs: record.graceMs,
      undeleteWindowMs: record.undeleteWindowMs,
      startedAt: record.at,
      stats: record.finished?.stats,
      error: record.finished?.error,
    };
  });

  admin.get<{ Params: { digest: string } }>("/gc/collected/:digest", async (req) => ({
    collections: await reg.view.content.collections(parseDigest(req.params.digest)),
  }));
};
