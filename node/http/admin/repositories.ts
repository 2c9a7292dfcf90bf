/**
 * Repositories, tags and artifacts through the admin API (mounted under
 * /admin/v1 by ../admin.ts):
 *
 *   GET    /repositories/<repo>/tags/<tag>/history[?at=TIME]
 *   DELETE /repositories/<repo>           202 {repo, seq}
 *   POST   /undelete                      {repo, tag?|digest?} → {repo, restored}
 *   GET    /artifacts/<repo>@<digest>     {region, repo, digest, present, tags, deleted?}
 *   GET    /artifacts/<repo>:<tag>        {region, repo, tag, digest, present, home?, at?, deleted?}:
 *                                        the digest this region serves for the tag (null: none);
 *                                        `deleted` when its last write deleted it; `home` the
 *                                        repository's home region when its rule is home-region
 *
 * Repository names hold slashes: those routes take a wildcard and split it
 * as the OCI dispatcher does.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { type Digest, parseDigest } from "../../../protocol/digest.js";
import {
  DigestInvalidError,
  ManifestNotFoundError,
  RepositoryNotFoundError,
  RouteNotFoundError,
} from "../../../protocol/errors.js";
import { foldTag, protectingRule } from "../../../protocol/immutable-tags.js";
import { parseRepository, parseTag } from "../../../protocol/names.js";
import { registerAt, type TagWrite } from "../../../protocol/tag-merge.js";
import type { Registry, UndeleteTarget } from "../../data/registry.js";
import { actorOf } from "../access.js";
import { badRequest, parseTime, readBody } from "./request.js";
import { Fixed, Type, want } from "./schema.js";

const HistoryQuery = Fixed({ at: Type.Optional(want(Type.String(), "ISO-8601 or milliseconds")) });
const UndeleteBody = Fixed({
  repo: want(Type.String(), "a repository name"),
  tag: Type.Optional(want(Type.String(), "a tag")),
  // Any type: a digest that is not a string is DIGEST_INVALID, as a malformed one is.
  digest: Type.Optional(Type.Unknown()),
});

export const repositoryRoutes: FastifyPluginAsync<{ registry: Registry }> = async (
  admin,
  { registry: reg },
) => {
  const view = reg.view.content;

  const repositories = async (req: FastifyRequest, reply: FastifyReply) => {
    const path = (req.params as { "*": string })["*"];
    if (req.method === "DELETE") {
      const repo = parseRepository(path);
      const seq = await reg.deleteRepository(repo, actorOf(req.identity));
      return reply.status(202).send({ repo, seq });
    }
    const m = /^(.+)\/tags\/([^/]+)\/history$/.exec(path);
    if (m === null) throw new RouteNotFoundError("no such endpoint");
    return tagHistory(parseRepository(m[1]!), parseTag(m[2]!), (req.query as { at?: string }).at);
  };
  admin.route({
    method: ["GET", "DELETE"],
    url: "/repositories/*",
    schema: { querystring: HistoryQuery },
    handler: repositories,
  });

  async function tagHistory(repo: string, tag: string, atText: string | undefined) {
    const atMs = atText === undefined ? undefined : parseTime(atText);
    const history = await view.tagHistory(repo, tag);
    if (history.length === 0) {
      if (!(await view.repositoryExists(repo)))
        throw new RepositoryNotFoundError("repository name not known to registry", {
          detail: { name: repo },
        });
      throw new ManifestNotFoundError("tag unknown", { detail: { repo, tag } });
    }
    const { scope, tagMerge, homes } = view.configFor(repo);
    const out: Record<string, unknown> = {
      repo,
      tag,
      rule: tagMerge,
      scope,
      homes,
      writes: history.map((h) => ({
        digest: h.digest,
        origin: h.w.origin,
        at: h.w.at,
        hlc: h.w.hlc,
        actor: h.w.actor,
        id: h.w.id,
        via: h.via,
        ...(h.w.epoch === undefined ? {} : { epoch: h.w.epoch }),
      })),
      current: (await view.visibleTag(repo, tag)) ?? null,
      /** The immutable-tag rule protecting the tag now, or null. */
      immutable: view.immutability.protectingNow(repo, tag) ?? null,
      /** Promotions from or to this tag (node/data/projections/promotions.ts), oldest first. */
      promotions: (await reg.view.promotions.promotionsOfTag(repo, tag)).map(({ record, w }) => ({
        ...record,
        actor: w.actor,
        at: w.at,
        origin: w.origin,
      })),
    };
    if (atMs !== undefined) {
      const writes: TagWrite[] = history.map((h) => ({
        digest: h.digest ?? undefined,
        hlc: h.w.hlc,
        origin: h.w.origin,
        eventId: h.w.id,
        epoch: h.w.epoch,
      }));
      // A tag an immutable-tag rule covers folds as the view folds it (protocol/immutable-tags.ts).
      const rules = view.immutability.histories();
      const winner = view.immutability.everCovers(repo, tag)
        ? foldTag(
            tagMerge,
            writes.filter((w) => w.hlc.wall <= atMs),
            (w) => protectingRule(rules, repo, tag, w),
            homes,
          ).winner
        : registerAt(tagMerge, writes, atMs, homes);
      out.at = {
        time: new Date(atMs).toISOString(),
        digest: winner?.digest ?? null,
        // A tombstone stood then (as opposed to no write yet).
        deleted: winner !== undefined && winner.digest === undefined,
      };
    }
    out.conflicts = await view.conflicts(repo, tag);
    return out;
  }

  admin.post<{ Body: { repo: string; tag?: string; digest?: unknown } }>(
    "/undelete",
    { schema: { body: UndeleteBody }, preValidation: readBody() },
    async (req) => {
      const { tag, digest } = req.body;
      const repo = parseRepository(req.body.repo);
      if (tag !== undefined && digest !== undefined) throw badRequest(["give tag or digest, not both"]);
      let target: UndeleteTarget = {};
      if (tag !== undefined) target = { tag: parseTag(tag) };
      else if (digest !== undefined) {
        if (typeof digest !== "string") throw new DigestInvalidError("digest: want a string");
        target = { digest: parseDigest(digest) };
      }
      const { restored } = await reg.undelete(repo, target, actorOf(req.identity));
      return { repo, restored };
    },
  );

  admin.get("/artifacts/*", async (req) => {
    const path = (req.params as { "*": string })["*"];
    const cut = path.lastIndexOf("@");
    // A repository name has no ":" (protocol/names.ts), so the last one starts a tag.
    if (cut < 0 && path.lastIndexOf(":") > 0) return tagArtifact(path);
    if (cut < 0) throw new DigestInvalidError("want <repository>@<digest> or <repository>:<tag>");
    const repo = parseRepository(path.slice(0, cut));
    const digest: Digest = parseDigest(path.slice(cut + 1));
    const present = (await view.manifest(repo, digest)) !== undefined;
    const tags = present
      ? (await view.liveTags(repo)).filter((t) => t.digest === digest).map((t) => t.tag)
      : [];
    const register = await view.manifestRegister(repo, digest);
    return {
      region: reg.region,
      repo,
      digest,
      present,
      tags,
      ...(register !== undefined && !register.live ? { deleted: { at: register.w.at } } : {}),
    };
  });

  /** What this region serves for a tag (mesh-client/locate.ts compares the regions' answers). */
  async function tagArtifact(path: string) {
    const cut = path.lastIndexOf(":");
    const repo = parseRepository(path.slice(0, cut));
    const tag = parseTag(path.slice(cut + 1));
    const record = await view.tagRecord(repo, tag);
    const digest = (await view.visibleTag(repo, tag)) ?? null;
    const { tagMerge, homes } = view.configFor(repo);
    const epochs = Object.keys(homes).map(Number);
    const home = tagMerge === "home-region" && epochs.length > 0 ? homes[Math.max(...epochs)] : undefined;
    return {
      region: reg.region,
      repo,
      tag,
      digest,
      present: digest !== null,
      ...(home === undefined ? {} : { home }),
      ...(record?.at === undefined ? {} : { at: record.at }),
      ...(record !== undefined && record.digest === null ? { deleted: { at: record.at ?? "" } } : {}),
    };
  }
};
