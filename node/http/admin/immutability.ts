/**
 * Immutable-tag rules (mounted under /admin/v1 by ../admin.ts; the rule and
 * its fold: protocol/immutable-tags.ts):
 *
 *   GET    /immutability         {rules: [{name, repositories, tags, actor, at, origin}]}
 *   PUT    /immutability/:name   {repositories, tags} → {name, repositories, tags, seq}
 *   DELETE /immutability/:name   {name, seq}; 404 NAME_UNKNOWN when no such rule
 *
 * Who: a system admin (or a Meridian service), or, with authentication on,
 * a project admin for a rule whose repositories glob stays inside a project
 * they administer (`prod/*`: project `prod`), and, when it replaces or
 * deletes a rule, of that rule's project too. The view checks the same when
 * it applies the event (protocol/event-authority.ts); this answers the
 * caller first with 403 DENIED. Without authentication the admin API's
 * write-address gate (./access-gate.ts) is the only one, as for every route.
 */
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { AccessDeniedError, PolicyNotFoundError } from "../../../protocol/errors.js";
import { RULE_NAME, ruleProblems, ruleProject } from "../../../protocol/immutable-tags.js";
import type { Registry } from "../../data/registry.js";
import { actorOf } from "../access.js";
import { isSystemAdmin, mayManage, readJson } from "../identity/common.js";
import { access } from "./access-gate.js";
import { badRequest } from "./request.js";
import { Fixed, Type, want } from "./schema.js";

const RuleBody = Fixed({
  repositories: want(Type.String(), "a glob over repository names, e.g. prod/*"),
  tags: want(Type.String(), "a glob over tags, e.g. v*"),
});

export const immutabilityRoutes: FastifyPluginAsync<{ registry: Registry }> = async (
  admin,
  { registry: reg },
) => {
  const rules = reg.view.content.immutability;

  admin.get("/immutability", async () => ({ rules: rules.rules() }));

  admin.put<{ Params: { name: string }; Body: { repositories: string; tags: string } }>(
    "/immutability/:name",
    { ...access("projectAdmin"), schema: { body: RuleBody }, preValidation: readJson },
    async (req) => {
      const rule = { name: req.params.name, ...req.body };
      const problems = ruleProblems(rule);
      if (problems.length > 0) throw badRequest(problems);
      mayChange(req, [rule.repositories, rules.rule(rule.name)?.repositories]);
      const seq = await reg.commitAdmin({ type: "immutability.set", ...rule }, actorOf(req.identity));
      return { ...rule, seq };
    },
  );

  admin.delete<{ Params: { name: string } }>("/immutability/:name", access("projectAdmin"), async (req) => {
    const name = req.params.name;
    const found = RULE_NAME.test(name) ? rules.rule(name) : undefined;
    // Refuse before answering 404, so a project admin learns nothing of other projects' rules.
    if (found === undefined && !mayChangeAny(req))
      throw new AccessDeniedError(
        `only a system admin may delete a rule this region does not know (${name})`,
      );
    mayChange(req, [found?.repositories]);
    if (found === undefined) throw new PolicyNotFoundError(`no immutability rule named ${name}`);
    const seq = await reg.commitAdmin({ type: "immutability.deleted", name }, actorOf(req.identity));
    return { name, seq };
  });
};

function mayChangeAny(req: FastifyRequest): boolean {
  const kind = req.identity.kind;
  // Anonymous gets here only with authentication off (the gate answers 401 otherwise).
  return isSystemAdmin(req) || kind === "service" || kind === "anonymous";
}

/** Refuse (403) unless the caller may change rules over every one of these repositories globs. */
function mayChange(req: FastifyRequest, globs: ReadonlyArray<string | undefined>): void {
  if (mayChangeAny(req)) return;
  for (const glob of globs) {
    if (glob === undefined) continue;
    const project = ruleProject(glob);
    if (project === undefined)
      throw new AccessDeniedError(
        `repositories ${glob} can reach several projects: only a system admin may make or change that rule`,
      );
    if (!mayManage(req, project))
      throw new AccessDeniedError(
        `only a system admin or an admin of project ${project} may change this rule`,
      );
  }
}
