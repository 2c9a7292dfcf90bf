/**
 * Pull-through cache projects (issue 17, item 3; protocol/proxy.ts; mounted
 * under /admin/v1 by ../admin.ts). Every route needs a system admin (with
 * authentication; the view checks each event again, event-authority.ts): a
 * proxy uses an endpoint's credentials, which no project admin may borrow.
 *
 *   GET    /proxies             {proxies: [{project, endpoint, upstreamPrefix?, freshnessSeconds, updatedAt, origin}]}
 *   GET    /proxies/:project    one of those (404 NAME_UNKNOWN when the project is no proxy)
 *   PUT    /proxies/:project    {endpoint, upstreamPrefix?, freshnessSeconds?} → {proxy, seq}
 *   DELETE /proxies/:project    {project, seq}: an ordinary project again (what it cached stays)
 *
 * A PUT naming an endpoint this region does not know is refused (400
 * POLICY_INVALID naming the field). A project that already holds
 * repositories may become a proxy (the issue is silent): that is how an
 * operator turns a mirror filled by hand into a cache; what it holds is
 * served as cached content.
 */
import type { FastifyPluginAsync } from "fastify";
import { PolicyNotFoundError } from "../../../protocol/errors.js";
import { PROJECT_NAME } from "../../../protocol/events.js";
import { DEFAULT_FRESHNESS_SECONDS, type ProxyConfig, proxyProblems } from "../../../protocol/proxy.js";
import type { Write } from "../../../protocol/registers.js";
import type { Registry } from "../../data/registry.js";
import { actorOf } from "../access.js";
import { policyInvalid, readBody } from "./request.js";
import { Fixed, Type, want } from "./schema.js";

const ProxyBody = Fixed({
  endpoint: want(Type.String({ maxLength: 64 }), "the name of an external endpoint"),
  upstreamPrefix: Type.Optional(want(Type.String({ maxLength: 200 }), "an upstream namespace, e.g. library")),
  freshnessSeconds: Type.Optional(want(Type.Integer({ minimum: 0 }), "whole seconds")),
});
type Body = { endpoint: string; upstreamPrefix?: string; freshnessSeconds?: number };

export const proxyRoutes: FastifyPluginAsync<{ registry: Registry }> = async (admin, { registry: reg }) => {
  const shown = ({ proxy, w }: { proxy: ProxyConfig; w: Write }) => ({
    ...proxy,
    updatedAt: w.at,
    origin: w.origin,
  });

  admin.get("/proxies", async () => ({ proxies: reg.view.proxies.proxies().map(shown) }));

  admin.get<{ Params: { project: string } }>("/proxies/:project", async (req) =>
    shown(existing(reg, req.params.project)),
  );

  admin.put<{ Params: { project: string }; Body: Body }>(
    "/proxies/:project",
    { schema: { body: ProxyBody }, preValidation: readBody() },
    async (req) => {
      const b = req.body;
      const proxy: ProxyConfig = {
        project: req.params.project,
        endpoint: b.endpoint,
        ...(b.upstreamPrefix === undefined ? {} : { upstreamPrefix: b.upstreamPrefix }),
        freshnessSeconds: b.freshnessSeconds ?? DEFAULT_FRESHNESS_SECONDS,
      };
      const problems = proxyProblems(proxy as unknown as Record<string, unknown>);
      if (problems.length === 0 && (await reg.view.endpoints.endpoint(proxy.endpoint)) === undefined)
        problems.push(`endpoint: no endpoint named ${proxy.endpoint} (meridian endpoint add)`);
      if (problems.length > 0) throw policyInvalid(problems);
      const seq = await reg.commitAdmin({ type: "proxy.set", ...proxy }, actorOf(req.identity));
      return { proxy, seq };
    },
  );

  admin.delete<{ Params: { project: string } }>("/proxies/:project", async (req) => {
    const project = existing(reg, req.params.project).proxy.project;
    const seq = await reg.commitAdmin({ type: "proxy.deleted", project }, actorOf(req.identity));
    return { project, seq };
  });
};

function existing(reg: Registry, project: string): { proxy: ProxyConfig; w: Write } {
  if (!PROJECT_NAME.test(project))
    throw policyInvalid([`project: invalid project name ${JSON.stringify(project.slice(0, 64))}`]);
  const found = reg.view.proxies.proxies().find((p) => p.proxy.project === project);
  if (found === undefined)
    throw new PolicyNotFoundError(`project ${project} is not a proxy`, { detail: { project } });
  return found;
}
