/**
 * The listings: `GET|HEAD /v2/` (the API version check), `GET /v2/_catalog`
 * (the repositories the caller may pull) and `GET /v2/<name>/tags/list`,
 * both paginated by `n` and `last` with a `Link` to the next page.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { NameInvalidError, PaginationInvalidError, TagInvalidError } from "../../../protocol/errors.js";
import { parseRepository, parseTag } from "../../../protocol/names.js";
import { pageSize } from "../headers.js";
import { mayPull, methodsNotAllowed, type OciRoutesOptions, ociConfig, queryErrors } from "./common.js";
import { OCI_URLS } from "./paths.js";

const MAX_PAGE = 1000;

type PageQuery = { n?: string; last?: string };
type CatalogRequest = FastifyRequest<{ Querystring: PageQuery }>;
type TagsRequest = FastifyRequest<{ Params: { name: string }; Querystring: PageQuery }>;

/** `n` and `last`; `n` a non-negative integer (capped in code: the cap differs by route). */
const PAGE_QUERY = {
  type: "object",
  properties: { n: { type: "string", pattern: "^\\d{1,9}$" }, last: { type: "string" } },
} as const;
const nInvalid = () => new PaginationInvalidError("n must be a non-negative integer");

export async function tagsCatalogRoutes(app: FastifyInstance, options: OciRoutesOptions): Promise<void> {
  const reg = options.registry;

  async function base(_req: FastifyRequest, reply: FastifyReply) {
    return reply.type("application/json").send("{}");
  }

  async function catalog(req: CatalogRequest, reply: FastifyReply) {
    const q = req.query;
    const n = pageSize(q.n, MAX_PAGE) ?? MAX_PAGE;
    const last = q.last === undefined ? undefined : parseRepository(q.last);
    const page = await visibleRepositories(req, n, last);
    if (page.more) {
      const lastItem = page.items[page.items.length - 1]!;
      reply.header("link", `</v2/_catalog?n=${n}&last=${encodeURIComponent(lastItem)}>; rel="next"`);
    }
    return reply.type("application/json").send(JSON.stringify({ repositories: page.items }));
  }

  /** A catalog page of the repositories this request's identity may pull (all of them without auth). */
  async function visibleRepositories(req: FastifyRequest, n: number, last: string | undefined) {
    const all = req.identity.subject.kind === "user" && req.identity.subject.systemAdmin;
    if (options.auth === undefined || all) return reg.repositories(n, last);
    const items: string[] = [];
    let after = last;
    for (;;) {
      const page = await reg.repositories(MAX_PAGE, after);
      for (const repo of page.items) {
        if (!(await mayPull(options.auth, req, repo))) continue;
        if (items.length === n) return { items, more: true };
        items.push(repo);
      }
      if (!page.more || page.items.length === 0) return { items, more: false };
      after = page.items[page.items.length - 1];
    }
  }

  async function listTags(req: TagsRequest, reply: FastifyReply) {
    const repo = parseRepository(req.params.name);
    const q = req.query;
    const n = pageSize(q.n, Number.MAX_SAFE_INTEGER);
    const last = q.last === undefined ? undefined : parseTag(q.last);
    const page = await reg.tags(repo, n ?? Number.MAX_SAFE_INTEGER, last);
    if (page.more && n !== undefined) {
      const lastItem = page.items[page.items.length - 1]!;
      reply.header("link", `</v2/${repo}/tags/list?n=${n}&last=${encodeURIComponent(lastItem)}>; rel="next"`);
    }
    return reply.type("application/json").send(JSON.stringify({ name: repo, tags: page.items }));
  }

  app.route({
    method: ["GET", "HEAD"],
    url: OCI_URLS.base,
    config: ociConfig("base", "identified"),
    handler: base,
  });
  methodsNotAllowed(app, "base", ["GET", "HEAD"]);
  app.get(
    OCI_URLS.catalog,
    {
      config: ociConfig("catalog", "catalog"),
      schema: { querystring: PAGE_QUERY },
      schemaErrorFormatter: queryErrors({ n: nInvalid, last: (m) => new NameInvalidError(m) }),
    },
    catalog,
  );
  methodsNotAllowed(app, "catalog", ["GET"]);
  app.get(
    OCI_URLS.tags,
    {
      config: ociConfig("tags", "pull"),
      schema: { querystring: PAGE_QUERY },
      schemaErrorFormatter: queryErrors({ n: nInvalid, last: (m) => new TagInvalidError(m) }),
    },
    listTags,
  );
  methodsNotAllowed(app, "tags", ["GET"]);
}
