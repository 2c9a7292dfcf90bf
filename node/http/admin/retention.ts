/**
 * Retention rules, plans and runs (issue 15, item 2; mounted under /admin/v1
 * by ../admin.ts). Every route needs a system admin (with authentication):
 *
 *   GET    /retention/rules              {rules: [{name, rule, summary, updatedAt, origin}]}
 *   PUT    /retention/rules/:name        a rule (JSON or YAML) → {name, rule, seq}
 *                                        (`region` defaults to this region: the deciding one)
 *   DELETE /retention/rules/:name        {name, seq}
 *   GET    /retention/plan[?repo=GLOB&at=TIME]
 *                                        what a run would delete, changing nothing
 *   POST   /retention/runs               {repo?} → 202 the run record (it goes on in the background)
 *   GET    /retention/runs/:runId        the run record: state, progress lines, deleted, summary
 *
 * A rule is protocol/retention.ts's (its parser lists every problem as
 * POLICY_INVALID). Runs: node/data/retention-run.ts.
 */
import type { FastifyPluginAsync } from "fastify";
import { PolicyNotFoundError } from "../../../protocol/errors.js";
import {
  parseRetentionRule,
  RETENTION_NAME,
  repoGlobProblems,
  ruleSummary,
} from "../../../protocol/retention.js";
import type { Registry } from "../../data/registry.js";
import { planRetention, RetentionRuns } from "../../data/retention-run.js";
import { actorOf } from "../access.js";
import { badRequest, bodyValue, isObject, parseTime, policyInvalid, readBody } from "./request.js";
import { Fixed, Type, want } from "./schema.js";

const PlanQuery = Fixed({
  repo: Type.Optional(want(Type.String(), "a glob over repository names")),
  at: Type.Optional(want(Type.String(), "ISO-8601 or milliseconds")),
});
const RunBody = Fixed({ repo: Type.Optional(want(Type.String(), "a glob over repository names")) });

export const retentionRoutes: FastifyPluginAsync<{ registry: Registry }> = async (
  admin,
  { registry: reg },
) => {
  const runs = new RetentionRuns(reg);

  admin.get("/retention/rules", async () => ({
    rules: (await reg.view.retention.rules()).map(({ rule, w }) => ({
      name: rule.name,
      rule,
      summary: ruleSummary(rule),
      updatedAt: w.at,
      origin: w.origin,
    })),
  }));

  admin.put<{ Params: { name: string } }>("/retention/rules/:name", async (req) => {
    const name = ruleName(req.params.name);
    const value = bodyValue(req, "policy");
    if (!isObject(value)) throw policyInvalid(["rule: want a mapping"]);
    if (value.name !== undefined && value.name !== name)
      throw policyInvalid([`name: ${JSON.stringify(value.name)} in the body does not match the URL`]);
    const rule = parseRetentionRule({ region: reg.region, ...value, name });
    const seq = await reg.commitAdmin(
      { type: "retention.set", name, rule: rule as unknown as Record<string, unknown> },
      actorOf(req.identity),
    );
    return { name, rule, seq };
  });

  admin.delete<{ Params: { name: string } }>("/retention/rules/:name", async (req) => {
    const name = ruleName(req.params.name);
    if (!(await reg.view.retention.rules()).some((r) => r.rule.name === name))
      throw new PolicyNotFoundError(`retention rule ${name} not found`, { detail: { name } });
    const seq = await reg.commitAdmin({ type: "retention.deleted", name }, actorOf(req.identity));
    return { name, seq };
  });

  admin.get<{ Querystring: { repo?: string; at?: string } }>(
    "/retention/plan",
    { schema: { querystring: PlanQuery } },
    async (req) => {
      const { repo, at } = req.query;
      if (repo !== undefined) repoGlob(repo);
      return planRetention(reg, {
        nowMs: at === undefined ? Date.now() : parseTime(at),
        ...(repo === undefined ? {} : { repoGlob: repo }),
      });
    },
  );

  admin.post<{ Body: { repo?: string } }>(
    "/retention/runs",
    { schema: { body: RunBody }, preValidation: readBody({}) },
    async (req, reply) => {
      const repo = req.body.repo;
      if (repo !== undefined) repoGlob(repo);
      return reply.status(202).send(runs.start(actorOf(req.identity), repo));
    },
  );

  admin.get<{ Params: { runId: string } }>("/retention/runs/:runId", async (req) => {
    const run = runs.get(req.params.runId);
    if (run === undefined)
      throw new PolicyNotFoundError(`no retention run ${req.params.runId.slice(0, 64)} on this node`, {
        detail: { runId: req.params.runId.slice(0, 64) },
      });
    return run;
  });
};

function ruleName(raw: string): string {
  if (!RETENTION_NAME.test(raw))
    throw policyInvalid([`name: invalid retention rule name ${JSON.stringify(raw.slice(0, 64))}`]);
  return raw;
}

function repoGlob(glob: string): void {
  const problems = repoGlobProblems(glob);
  if (problems.length > 0) throw badRequest(problems);
}
