/**
 * External endpoints (issue 17, item 1; protocol/endpoints.ts; mounted under
 * /admin/v1 by ../admin.ts). Every route needs a system admin (with
 * authentication; the view checks each event again, event-authority.ts):
 *
 *   GET    /endpoints          {endpoints: [{name, url, credentialsFile?, caFile?, insecure, updatedAt, origin}]}
 *   GET    /endpoints/:name    one of those (404 NAME_UNKNOWN when absent)
 *   PUT    /endpoints/:name    {url, credentialsFile?, caFile?, insecure?} → {endpoint, seq}
 *   DELETE /endpoints/:name    {name, seq}
 *
 * No answer carries a secret: an endpoint holds only the paths of the files
 * (read on the machine that uses the endpoint). The node does not read them:
 * `meridian endpoint add` checks the credentials file where it runs.
 */
import type { FastifyPluginAsync } from "fastify";
import {
  ENDPOINT_NAME,
  type Endpoint,
  endpointProblems,
  normalizedUrl,
  urlProblem,
} from "../../../protocol/endpoints.js";
import { PolicyNotFoundError } from "../../../protocol/errors.js";
import type { Write } from "../../../protocol/registers.js";
import type { Registry } from "../../data/registry.js";
import { actorOf } from "../access.js";
import { policyInvalid, readBody } from "./request.js";
import { Fixed, Type, want } from "./schema.js";

const EndpointBody = Fixed({
  url: want(Type.String({ maxLength: 2048 }), "an http(s) URL: scheme, host and port only"),
  credentialsFile: Type.Optional(want(Type.String({ maxLength: 1024 }), "an absolute path")),
  caFile: Type.Optional(want(Type.String({ maxLength: 1024 }), "an absolute path")),
  insecure: Type.Optional(want(Type.Boolean(), "true to skip TLS verification (labs only)")),
});
type Body = { url: string; credentialsFile?: string; caFile?: string; insecure?: boolean };

export const endpointRoutes: FastifyPluginAsync<{ registry: Registry }> = async (
  admin,
  { registry: reg },
) => {
  const shown = ({ endpoint, w }: { endpoint: Endpoint; w: Write }) => ({
    ...endpoint,
    updatedAt: w.at,
    origin: w.origin,
  });

  admin.get("/endpoints", async () => ({ endpoints: (await reg.view.endpoints.endpoints()).map(shown) }));

  admin.get<{ Params: { name: string } }>("/endpoints/:name", async (req) =>
    shown(await existing(reg, req.params.name)),
  );

  admin.put<{ Params: { name: string }; Body: Body }>(
    "/endpoints/:name",
    { schema: { body: EndpointBody }, preValidation: readBody() },
    async (req) => {
      const name = endpointName(req.params.name);
      const b = req.body;
      const bad = urlProblem(b.url);
      const endpoint: Endpoint = {
        name,
        url: bad === undefined ? normalizedUrl(b.url) : b.url,
        ...(b.credentialsFile === undefined ? {} : { credentialsFile: b.credentialsFile }),
        ...(b.caFile === undefined ? {} : { caFile: b.caFile }),
        insecure: b.insecure === true,
      };
      const problems = endpointProblems(endpoint as unknown as Record<string, unknown>);
      if (problems.length > 0) throw policyInvalid(problems);
      const seq = await reg.commitAdmin({ type: "endpoint.set", ...endpoint }, actorOf(req.identity));
      return { endpoint, seq };
    },
  );

  admin.delete<{ Params: { name: string } }>("/endpoints/:name", async (req) => {
    const name = (await existing(reg, req.params.name)).endpoint.name;
    const seq = await reg.commitAdmin({ type: "endpoint.deleted", name }, actorOf(req.identity));
    return { name, seq };
  });
};

async function existing(reg: Registry, raw: string): Promise<{ endpoint: Endpoint; w: Write }> {
  const name = endpointName(raw);
  const found = await reg.view.endpoints.endpoint(name);
  if (found === undefined) throw new PolicyNotFoundError(`endpoint ${name} not found`, { detail: { name } });
  return found;
}

function endpointName(raw: string): string {
  if (!ENDPOINT_NAME.test(raw))
    throw policyInvalid([`name: invalid endpoint name ${JSON.stringify(raw.slice(0, 64))}`]);
  return raw;
}
