/**
 * Project quotas and storage usage (issue 15; mounted under /admin/v1 by
 * ../admin.ts):
 *
 *   GET /quotas            {region, quotas: [{project, limitBytes, usedBytes, blobs, reclaimableBytes}]}
 *   GET /quotas/:project   {region, project, limitBytes, usedBytes, blobs, reclaimableBytes}
 *   PUT /quotas/:project   {limitBytes: integer ≥ 0 | null} → {project, limitBytes, seq}
 *
 * Usage is this region's (node/data/projections/quotas.ts: distinct bytes
 * live in the project's repositories here, replicated content included);
 * the quota is the same in every region (one `quota.set` event, replicated
 * like every admin event) and enforced by each region on its own usage.
 *
 * Who: setting a quota needs a system admin (the view checks the event
 * again, protocol/event-authority.ts); listing every project too; one
 * project's usage, any member of it (or a system admin).
 */
import type { FastifyPluginAsync } from "fastify";
import { AccessDeniedError, UnsupportedError } from "../../../protocol/errors.js";
import { PROJECT_NAME } from "../../../protocol/events.js";
import type { Registry } from "../../data/registry.js";
import { actorOf } from "../access.js";
import { access } from "./access-gate.js";
import { readBody } from "./request.js";
import { Fixed, Type, want } from "./schema.js";

const QuotaBody = Fixed({
  limitBytes: want(
    Type.Union([Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }), Type.Null()]),
    "a non-negative integer (bytes), or null to remove the quota",
  ),
});

export const quotaRoutes: FastifyPluginAsync<{ registry: Registry }> = async (admin, { registry: reg }) => {
  const quotas = reg.view.quotas;

  admin.get("/quotas", async () => ({ region: reg.region, quotas: await quotas.all() }));

  admin.get<{ Params: { project: string } }>("/quotas/:project", access("authenticated"), async (req) => {
    const project = projectName(req.params.project);
    const s = req.identity.subject;
    // Without authentication the identity is anonymous and reads are open, as the registry's are.
    if (
      s.kind !== "anonymous" &&
      !(s.kind === "user" && (s.systemAdmin || s.operator === true || s.roles[project] !== undefined))
    )
      throw new AccessDeniedError(
        `only a system admin, an operator or a member of ${project} may see its quota`,
      );
    const limitBytes = quotas.limitOf(project) ?? null;
    return { region: reg.region, project, limitBytes, ...(await quotas.usage(project)) };
  });

  admin.put<{ Params: { project: string }; Body: { limitBytes: number | null } }>(
    "/quotas/:project",
    { schema: { body: QuotaBody }, preValidation: readBody() },
    async (req) => {
      const project = projectName(req.params.project);
      const limitBytes = req.body.limitBytes;
      const seq = await reg.commitAdmin({ type: "quota.set", project, limitBytes }, actorOf(req.identity));
      return { project, limitBytes, seq };
    },
  );
};

function projectName(name: string): string {
  if (!PROJECT_NAME.test(name)) throw new UnsupportedError(`project name "${name}" is not valid`);
  return name;
}
