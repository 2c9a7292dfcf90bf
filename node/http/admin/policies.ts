/**
 * Replication policies and their runs (mounted under /admin/v1 by ../admin.ts):
 *
 *   GET    /policies                      {policies: [{name, policy, updatedAt, origin}]}
 *   POST   /policies                      a YAML/JSON file of policies → {applied, seq}
 *   GET    /policies/:name                {name, policy, yaml, runs, …}
 *   PUT    /policies/:name                one policy → {name, policy, seq}
 *   DELETE /policies/:name                {name, seq}
 *   POST   /policies/:name/run            202 {name, runId, seq}
 *   GET    /policies/:name/runs/:runId    the run record
 *   POST   /policies/:name/reset-breaker  202 {name, seq}
 *   GET    /alerts                        {alerts}
 *
 * A policy's body has no route schema: its shape is protocol/policy.ts's
 * (read from YAML or JSON), whose parser lists every problem as
 * POLICY_INVALID, the answer `meridian policy apply` shows.
 */
import { randomUUID } from "node:crypto";
import type { FastifyPluginAsync } from "fastify";
import { stringify } from "yaml";
import { PolicyInvalidError, PolicyNotFoundError, UnsupportedError } from "../../../protocol/errors.js";
import { type Policy, parsePolicies, parsePolicy, policyToYaml } from "../../../protocol/policy.js";
import type { Registry } from "../../data/registry.js";
import { actorOf } from "../access.js";
import { bodyText, bodyValue, isJson, isObject, jsonValue, policyInvalid, policyName } from "./request.js";
import { typeName } from "./schema.js";

export const policyRoutes: FastifyPluginAsync<{ registry: Registry }> = async (admin, { registry: reg }) => {
  const view = reg.view.admin;

  admin.get("/policies", async () => ({
    policies: (await view.policies()).map(({ name, policy, w }) => ({
      name,
      policy,
      updatedAt: w.at,
      origin: w.origin,
    })),
  }));

  admin.post("/policies", async (req) => {
    const text = bodyText(req);
    if (text.trim() === "") throw policyInvalid(["policy file: empty"]);
    // JSON is read as JSON (a stray tab would trip YAML), then checked like YAML.
    const policies = isJson(req)
      ? parsePolicies(JSON.stringify(jsonValue(text, "policy")))
      : parsePolicies(text);
    if (policies.length === 0) throw policyInvalid(["policy file: no policies in it"]);
    let seq = 0;
    for (const policy of policies) seq = await commitPolicy(policy, actorOf(req.identity));
    return { applied: policies.map((p) => p.name), seq };
  });

  admin.get<{ Params: { name: string } }>("/policies/:name", async (req) => {
    const found = await policyNamed(req.params.name);
    let yaml: string;
    try {
      yaml = policyToYaml(parsePolicy(found.policy));
    } catch {
      yaml = stringify(found.policy); // stored by a newer or older version: show it as it is
    }
    const reset = await view.breakerReset(found.name);
    return {
      name: found.name,
      policy: found.policy,
      yaml,
      updatedAt: found.w.at,
      origin: found.w.origin,
      breakerReset: reset === undefined ? null : reset.at,
      runs: await view.runs(found.name),
    };
  });

  admin.put<{ Params: { name: string } }>("/policies/:name", async (req) => {
    const name = policyName(req.params.name);
    const value = bodyValue(req, "policy");
    if (!isObject(value))
      throw policyInvalid([
        `policy ${JSON.stringify(name)}: want one policy (a mapping), got ${typeName(value)}`,
      ]);
    const problems: string[] = [];
    if (value.name !== undefined && value.name !== null && value.name !== name)
      problems.push(
        `policy ${JSON.stringify(name)}: name: ${JSON.stringify(value.name)} in the body does not match the URL`,
      );
    let policy: Policy | undefined;
    try {
      policy = parsePolicy({ ...value, name });
    } catch (err) {
      if (!(err instanceof PolicyInvalidError)) throw err;
      problems.push(...((err.detail as { errors?: string[] }).errors ?? [err.message]));
    }
    if (problems.length > 0 || policy === undefined) throw policyInvalid(problems);
    const seq = await commitPolicy(policy, actorOf(req.identity));
    return { name, policy, seq };
  });

  admin.delete<{ Params: { name: string } }>("/policies/:name", async (req) => {
    const { name } = await policyNamed(req.params.name);
    const seq = await reg.commitAdmin({ type: "policy.deleted", name }, actorOf(req.identity));
    return { name, seq };
  });

  admin.post<{ Params: { name: string } }>("/policies/:name/run", async (req, reply) => {
    const { name, policy } = await policyNamed(req.params.name);
    // A disabled policy covers no link: no destination would ever run it or report.
    if (policy.enabled === false)
      throw new UnsupportedError(`policy ${name} is disabled; enable it to run it`, { detail: { name } });
    const runId = randomUUID();
    const seq = await reg.commitAdmin({ type: "policy.run", name, runId }, actorOf(req.identity));
    return reply.status(202).send({ name, runId, seq });
  });

  admin.get<{ Params: { name: string; runId: string } }>("/policies/:name/runs/:runId", async (req) => {
    const name = policyName(req.params.name);
    const { runId } = req.params;
    const run = runId.length > 64 ? undefined : await view.run(name, runId);
    if (run === undefined)
      throw new PolicyNotFoundError(`no run ${runId.slice(0, 64)} of policy ${name}`, {
        detail: { name, runId },
      });
    return run;
  });

  admin.post<{ Params: { name: string } }>("/policies/:name/reset-breaker", async (req, reply) => {
    const { name } = await policyNamed(req.params.name);
    const seq = await reg.commitAdmin({ type: "breaker.reset", name }, actorOf(req.identity));
    return reply.status(202).send({ name, seq });
  });

  admin.get("/alerts", async () => ({ alerts: await view.alerts() }));

  async function policyNamed(raw: string) {
    const name = policyName(raw);
    const found = (await view.policies()).find((p) => p.name === name);
    if (found === undefined) throw new PolicyNotFoundError(`policy ${name} not found`, { detail: { name } });
    return found;
  }

  function commitPolicy(policy: Policy, by: string): Promise<number> {
    return reg.commitAdmin(
      { type: "policy.set", name: policy.name, policy: policy as unknown as Record<string, unknown> },
      by,
    );
  }
};
