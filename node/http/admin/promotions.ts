/**
 * Promotion gates and promotions (issue 17, item 2; protocol/promotion.ts,
 * node/promotion.ts; mounted under /admin/v1 by ../admin.ts). Every route
 * needs a system admin (reads: operators too):
 *
 *   GET    /gates                   {gates: [{scope, gates, updatedAt, origin}]}
 *   PUT    /gates/<kind>:<name>     a gate configuration (JSON, or YAML by content type) → {scope, gates, seq}
 *   DELETE /gates/<kind>:<name>     {scope, seq} (404 NAME_UNKNOWN when absent)
 *   POST   /promotions              {source: "REPO:TAG", to: "DEST[/REPO[:TAG]]"}
 *                                   → 200 the record (passed), 403 DENIED with every gate's result (refused)
 *   GET    /promotions/<id>         the latest record of that promotion (404 NAME_UNKNOWN when none)
 *
 * Why system admins only, even for a project's own images: a promotion acts
 * with the mesh's own rights (a service token other regions take as a
 * system admin) and with the endpoints' stored credentials, so whoever may
 * promote may write to any region and any endpoint; and gates guard the
 * destination for every project. A gate configuration is refused with every
 * problem listed (protocol/gates.ts parseGateConfig).
 */
import type { FastifyPluginAsync } from "fastify";
import { PolicyNotFoundError } from "../../../protocol/errors.js";
import { parseGateConfig } from "../../../protocol/gates.js";
import { PROMOTION_ID, parseGateScope, scopeText } from "../../../protocol/promotion.js";
import type { Registry } from "../../data/registry.js";
import type { Promoter } from "../../promotion.js";
import { actorOf } from "../access.js";
import { bodyValue, policyInvalid, readBody } from "./request.js";
import { Fixed, Type, want } from "./schema.js";

const PromotionBody = Fixed({
  source: want(Type.String({ minLength: 1, maxLength: 512 }), "REPO:TAG in this region"),
  to: want(
    Type.String({ minLength: 1, maxLength: 512 }),
    "DEST[/REPO[:TAG]]: a region, an endpoint or a repository",
  ),
});

export const promotionRoutes: FastifyPluginAsync<{ registry: Registry; promoter: Promoter }> = async (
  admin,
  { registry: reg, promoter },
) => {
  admin.get("/gates", async () => ({
    gates: (await reg.view.promotions.gates()).map((g) => ({
      scope: scopeText(g.scope),
      gates: g.gates,
      updatedAt: g.w.at,
      origin: g.w.origin,
    })),
  }));

  admin.put<{ Params: { scope: string } }>("/gates/:scope", async (req) => {
    const scope = gateScope(req.params.scope);
    let gates: ReturnType<typeof parseGateConfig>;
    try {
      gates = parseGateConfig(bodyValue(req, "policy"));
    } catch (err) {
      const message = (err as Error).message.replace(/^invalid gate configuration: /, "");
      throw policyInvalid(message.split("; "));
    }
    const seq = await reg.commitAdmin(
      { type: "gate.set", scope: scope.kind, name: scope.name, gates },
      actorOf(req.identity),
    );
    return { scope: scopeText(scope), gates, seq };
  });

  admin.delete<{ Params: { scope: string } }>("/gates/:scope", async (req) => {
    const scope = gateScope(req.params.scope);
    if ((await reg.view.promotions.gate(scope)) === undefined)
      throw new PolicyNotFoundError(`gates ${scopeText(scope)} not found`, {
        detail: { scope: scopeText(scope) },
      });
    const seq = await reg.commitAdmin(
      { type: "gate.deleted", scope: scope.kind, name: scope.name },
      actorOf(req.identity),
    );
    return { scope: scopeText(scope), seq };
  });

  admin.post<{ Body: { source: string; to: string } }>(
    "/promotions",
    { schema: { body: PromotionBody }, preValidation: readBody() },
    async (req) => promoter.promote(req.body.source, req.body.to, actorOf(req.identity)),
  );

  admin.get<{ Params: { id: string } }>("/promotions/:id", async (req) => {
    const id = req.params.id;
    const found = PROMOTION_ID.test(id) ? await reg.view.promotions.promotion(id) : undefined;
    if (found === undefined)
      throw new PolicyNotFoundError(`promotion ${id.slice(0, 64)} not found`, {
        detail: { id: id.slice(0, 64) },
      });
    return { ...found.record, actor: found.w.actor, at: found.w.at, origin: found.w.origin };
  });
};

function gateScope(text: string) {
  try {
    return parseGateScope(text);
  } catch (err) {
    throw policyInvalid([(err as Error).message]);
  }
}
