/**
 * Tag merge rules by scope (mounted under /admin/v1 by ../admin.ts):
 *
 *   GET /rules   {default, rules}
 *   PUT /rules   {scope, tagMerge, home?, epoch?, durability?} → {…, seq}
 *
 * The body's shape is the schema below (./schema.ts); the handler checks
 * what needs more than one field or the mesh: a home for the home-region
 * rule, an epoch only with a home, a durability the mesh can meet, and the
 * scope's name (NAME_INVALID, on its own).
 */
import type { FastifyPluginAsync } from "fastify";
import { type EventBody, parseDurability, parseScope } from "../../../protocol/events.js";
import { TAG_MERGE_RULES, type TagMergeRule } from "../../../protocol/tag-merge.js";
import type { Registry } from "../../data/registry.js";
import { actorOf } from "../access.js";
import { badRequest, isRegion, readBody } from "./request.js";
import { Fixed, RegionName, show, Type, want } from "./schema.js";

const RuleBody = Fixed({
  scope: want(Type.String(), 'a repository name, a prefix ending in "/", or "" for every repository'),
  tagMerge: want(Type.Enum([...TAG_MERGE_RULES]), `one of ${TAG_MERGE_RULES.join(", ")}`),
  home: Type.Optional(RegionName()),
  epoch: Type.Optional(want(Type.Integer({ minimum: 0 }), "a non-negative integer")),
  durability: Type.Optional(want(Type.String(), '"async" or "sync(k)" with k from 1 to 99')),
});

interface Rule {
  scope: string;
  tagMerge: TagMergeRule;
  home?: string;
  epoch?: number;
  durability?: string;
}

export const ruleRoutes: FastifyPluginAsync<{ registry: Registry }> = async (admin, { registry: reg }) => {
  const view = reg.view.content;

  admin.get("/rules", async () => ({ default: view.configFor(""), rules: view.configs() }));

  admin.put<{ Body: Rule }>(
    "/rules",
    { schema: { body: RuleBody }, preValidation: readBody() },
    async (req) => {
      const { scope, tagMerge, home, epoch, durability } = req.body;
      const problems: string[] = [];
      parseScope(scope); // NAME_INVALID, on its own
      if (home === undefined) {
        if (tagMerge === "home-region") problems.push("home: required for the home-region rule");
      } else if (!isRegion(home)) problems.push(`home: invalid region name ${show(home)}`);
      if (epoch !== undefined && home === undefined)
        problems.push("epoch: only with home (the home region at that epoch)");
      if (durability !== undefined && parseDurability(durability) === undefined)
        problems.push(`durability: want "async" or "sync(k)" with k from 1 to 99, got ${show(durability)}`);
      else if ((parseDurability(durability) ?? 0) > reg.otherRegions)
        problems.push(
          `durability: ${durability} needs that many other regions; the mesh has ${reg.otherRegions} besides ${reg.region}`,
        );
      if (problems.length > 0) throw badRequest(problems);
      const body = {
        type: "repository.configured",
        scope,
        tagMerge,
        ...(home === undefined ? {} : { home }),
        ...(durability === undefined ? {} : { durability }),
      } as EventBody;
      // The epoch is an envelope field: the view keys the home table by it.
      const seq = await reg.commitAdmin(body, actorOf(req.identity), epoch);
      return {
        scope,
        tagMerge,
        ...(home === undefined ? {} : { home }),
        ...(epoch === undefined ? {} : { epoch }),
        ...(durability === undefined ? {} : { durability }),
        seq,
      };
    },
  );
};
