/**
 * The scrub of this node's blob store (node/scrub.ts), mounted under
 * /admin/v1 by ../admin.ts; system admins only (the gate's default):
 *
 *   POST /scrub/runs         {repair?} → 202 the run's record (the one going on, if any)
 *   GET  /scrub/runs         this node's recent runs, the one going on last
 *   GET  /scrub/runs/:runId  one run's record: progress while running, then its summary
 *
 * Runs are this node's, held in its memory (the last 20): `meridian scrub
 * run` follows a run on the node that started it (the admin client asks the
 * node that answered first). What a run finds is recorded durably as alerts
 * (`blob-corrupt`, `blob-repaired`) in the region's log.
 */
import type { FastifyPluginAsync } from "fastify";
import { PolicyNotFoundError } from "../../../protocol/errors.js";
import type { Scrubber } from "../../scrub.js";
import { readBody } from "./request.js";
import { Fixed, Type, want } from "./schema.js";

const RunBody = Fixed({ repair: Type.Optional(want(Type.Boolean(), "true or false")) });

export const scrubRoutes: FastifyPluginAsync<{ scrubber: Scrubber }> = async (admin, { scrubber }) => {
  admin.post<{ Body: { repair?: boolean } }>(
    "/scrub/runs",
    { schema: { body: RunBody }, preValidation: readBody({}) },
    async (req, reply) => reply.status(202).send(scrubber.run({ repair: req.body.repair !== false })),
  );
  admin.get("/scrub/runs", async () => ({ runs: scrubber.list() }));
  admin.get<{ Params: { runId: string } }>("/scrub/runs/:runId", async (req) => {
    const run = scrubber.get(req.params.runId);
    if (run === undefined)
      throw new PolicyNotFoundError(`no scrub run ${req.params.runId.slice(0, 64)} on this node`, {
        detail: { runId: req.params.runId.slice(0, 64) },
      });
    return run;
  });
};
