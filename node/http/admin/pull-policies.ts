/**
 * Block-pull policies (issue 18, item 3; protocol/pull-policy.ts,
 * node/pull-gate.ts), mounted under /admin/v1 by ../admin.ts. System admins
 * only (reads: operators too):
 *
 *   GET    /pull-policies             {policies: [{project, gates, exempt, updatedAt, origin}]}
 *   PUT    /pull-policies/:project    {gates, exempt?} (JSON, or YAML by content type) → {policy, seq}
 *   DELETE /pull-policies/:project    {project, seq} (404 NAME_UNKNOWN when none)
 *
 * A policy is refused with every problem listed (400 POLICY_INVALID), and
 * so is one naming a signature key this node does not have in
 * `verification.keys`: every node judging pulls needs the key, and a key
 * missing here would refuse every pull of the project.
 */
import type { FastifyPluginAsync } from "fastify";
import { PolicyNotFoundError } from "../../../protocol/errors.js";
import { PROJECT_NAME } from "../../../protocol/events.js";
import { parsePullPolicy } from "../../../protocol/pull-policy.js";
import type { Registry } from "../../data/registry.js";
import { actorOf } from "../access.js";
import { bodyValue, policyInvalid } from "./request.js";

export const pullPolicyRoutes: FastifyPluginAsync<{
  registry: Registry;
  keys: ReadonlyMap<string, string>;
}> = async (admin, { registry: reg, keys }) => {
  admin.get("/pull-policies", async () => ({
    policies: (await reg.view.pullPolicies.pullPolicies()).map((p) => ({
      ...p.policy,
      updatedAt: p.w.at,
      origin: p.w.origin,
    })),
  }));

  admin.put<{ Params: { project: string } }>("/pull-policies/:project", async (req) => {
    let policy: ReturnType<typeof parsePullPolicy>;
    try {
      policy = parsePullPolicy(req.params.project, bodyValue(req, "policy"));
    } catch (err) {
      const message = (err as Error).message.replace(/^invalid pull policy: /, "");
      throw policyInvalid(message.split("; "));
    }
    const unknown = (policy.gates.signature?.keys ?? []).filter((k) => !keys.has(k));
    if (unknown.length > 0)
      throw policyInvalid(
        unknown.map((k) => `gates.signature.keys: ${k} is not a key of this node's verification.keys`),
      );
    const seq = await reg.commitAdmin({ type: "pull-policy.set", policy }, actorOf(req.identity));
    return { policy, seq };
  });

  admin.delete<{ Params: { project: string } }>("/pull-policies/:project", async (req) => {
    const project = req.params.project;
    if (!PROJECT_NAME.test(project) || (await reg.view.pullPolicies.pullPolicy(project)) === undefined)
      throw new PolicyNotFoundError(`no pull policy for project ${project.slice(0, 64)}`, {
        detail: { project: project.slice(0, 64) },
      });
    const seq = await reg.commitAdmin({ type: "pull-policy.deleted", project }, actorOf(req.identity));
    return { project, seq };
  });
};
