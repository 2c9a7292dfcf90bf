/**
 * Webhook subscriptions (issue 17, item 5; mounted under /admin/v1 by
 * ../admin.ts; what a subscription is: protocol/webhook.ts; who delivers:
 * replication/webhook-delivery.ts):
 *
 *   GET    /webhooks          {webhooks: [{name, project, url, siem?, events?, repos?, secretFile?, actor, at, origin}]}
 *   GET    /webhooks/:name    one of them; 404 NAME_UNKNOWN
 *   PUT    /webhooks/:name    {url, project, siem?, events?, repos?, secretFile?} → the subscription and {seq}
 *   DELETE /webhooks/:name    {name, project, seq}; 404 NAME_UNKNOWN
 *   POST   /webhooks/:name/replay  {from, region?} → 202 {name, region, from, seq}: that region's
 *                             worker delivers again from sequence `from` of its own stream
 *                             (default region: this one), with the same CloudEvent ids
 *
 * Who: a system admin (or a Meridian service), or a project admin for a
 * subscription of a project they administer (the view checks the same when
 * it applies the event, protocol/event-authority.ts); operators read.
 * Project `*` (every project's events and the whole of a failover) and
 * SIEM subscriptions (`siem: true`, which require project `*`: the audit
 * stream of every project) are a system admin's: a project admin does not
 * administer `*`, so the same check refuses them (403). A
 * project admin sees only their projects' subscriptions; anyone else
 * (a developer, a robot) is 403 on every route. Names are unique
 * in the mesh: a PUT naming one another project holds is 400.
 *
 * The HMAC key never passes here: `secretFile` is a path each worker reads
 * on its own host; answers carry the path, never the key.
 */
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { AccessDeniedError, PolicyNotFoundError } from "../../../protocol/errors.js";
import {
  parseWebhookSubscription,
  WEBHOOK_NAME,
  type WebhookSubscription,
} from "../../../protocol/webhook.js";
import type { Registry } from "../../data/registry.js";
import type { Write } from "../../data/view.js";
import { actorOf } from "../access.js";
import { isSystemAdmin, mayManage, readJson } from "../identity/common.js";
import { access } from "./access-gate.js";
import { badRequest } from "./request.js";

export const webhookRoutes: FastifyPluginAsync<{ registry: Registry }> = async (admin, { registry: reg }) => {
  const visible = async (req: FastifyRequest) => {
    if (!administersAny(req)) throw new AccessDeniedError("a system admin or a project admin is required");
    return (await reg.view.webhooks.subscriptions()).filter(({ subscription }) =>
      maySee(req, subscription.project),
    );
  };
  const find = async (req: FastifyRequest, name: string) => {
    const found = (await visible(req)).find(({ subscription }) => subscription.name === name);
    if (found === undefined) throw new PolicyNotFoundError(`no webhook named ${name.slice(0, 64)}`);
    return found;
  };

  admin.get("/webhooks", access("projectAdmin"), async (req) => ({
    webhooks: (await visible(req)).map(answer),
  }));

  admin.get<{ Params: { name: string } }>("/webhooks/:name", access("projectAdmin"), async (req) =>
    answer(await find(req, req.params.name)),
  );

  admin.put<{ Params: { name: string }; Body: Record<string, unknown> }>(
    "/webhooks/:name",
    { ...access("projectAdmin"), preValidation: readJson },
    async (req) => {
      let subscription: WebhookSubscription;
      try {
        subscription = parseWebhookSubscription({ ...(req.body ?? {}), name: req.params.name });
      } catch (err) {
        throw badRequest([(err as Error).message]);
      }
      if (!mayChange(req, subscription.project))
        throw new AccessDeniedError(
          `only a system admin or an admin of project ${subscription.project} may do this`,
        );
      const taken = (await reg.view.webhooks.subscriptions()).find(
        (s) => s.subscription.name === subscription.name && s.subscription.project !== subscription.project,
      );
      if (taken !== undefined)
        throw badRequest([`name: webhook ${subscription.name} is taken by another project`]);
      const seq = await reg.commitAdmin(
        { type: "webhook.set", subscription: subscription as unknown as Record<string, unknown> },
        actorOf(req.identity),
      );
      return { ...subscription, seq };
    },
  );

  admin.post<{ Params: { name: string }; Body: unknown }>(
    "/webhooks/:name/replay",
    { ...access("projectAdmin"), preValidation: readJson },
    async (req, reply) => {
      refuseReaders(req);
      const { subscription } = await find(req, req.params.name);
      if (!mayChange(req, subscription.project))
        throw new AccessDeniedError(
          `only a system admin or an admin of project ${subscription.project} may do this`,
        );
      const { from, region } = replayRequest(req.body, reg.region);
      const seq = await reg.commitAdmin(
        {
          type: "webhook.replay",
          project: subscription.project,
          name: subscription.name,
          region,
          fromSeq: from,
        },
        actorOf(req.identity),
      );
      return reply.status(202).send({ name: subscription.name, region, from, seq });
    },
  );

  admin.delete<{ Params: { name: string } }>("/webhooks/:name", access("projectAdmin"), async (req) => {
    const name = req.params.name;
    refuseReaders(req);
    if (!WEBHOOK_NAME.test(name)) throw new PolicyNotFoundError(`no webhook named ${name.slice(0, 64)}`);
    const { subscription } = await find(req, name);
    if (!mayChange(req, subscription.project))
      throw new AccessDeniedError(
        `only a system admin or an admin of project ${subscription.project} may do this`,
      );
    const seq = await reg.commitAdmin(
      { type: "webhook.deleted", project: subscription.project, name },
      actorOf(req.identity),
    );
    return { name, project: subscription.project, seq };
  });
};

function replayRequest(body: unknown, here: string): { from: number; region: string } {
  const b = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const problems: string[] = [];
  if (!Number.isSafeInteger(b.from) || (b.from as number) < 1) problems.push("from: want a sequence ≥ 1");
  if (
    b.region !== undefined &&
    (typeof b.region !== "string" || !/^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/.test(b.region))
  )
    problems.push("region: want a region name");
  if (problems.length > 0) throw badRequest(problems);
  return { from: b.from as number, region: (b.region as string | undefined) ?? here };
}

function answer({ subscription, w }: { subscription: WebhookSubscription; w: Write }) {
  return { ...subscription, actor: w.actor, at: w.at, origin: w.origin };
}

function mayChange(req: FastifyRequest, project: string): boolean {
  const kind = req.identity.kind;
  // Anonymous gets here only with authentication off (the gate answers 401 otherwise).
  return isSystemAdmin(req) || kind === "service" || kind === "anonymous" || mayManage(req, project);
}

/** A system admin, operator or service, or a project admin of some project (else 403 on every route). */
function administersAny(req: FastifyRequest): boolean {
  const s = req.identity.subject;
  return mayWriteSome(req) || (s.kind === "user" && s.operator === true);
}

/** May the caller change some subscription? (Else 403 before any lookup: an operator learns no 404.) */
function mayWriteSome(req: FastifyRequest): boolean {
  const s = req.identity.subject;
  return mayChange(req, "") || (s.kind === "user" && Object.values(s.roles).includes("projectAdmin"));
}

function refuseReaders(req: FastifyRequest): void {
  if (!mayWriteSome(req)) throw new AccessDeniedError("a system admin or a project admin is required");
}

function maySee(req: FastifyRequest, project: string): boolean {
  const s = req.identity.subject;
  return mayChange(req, project) || (s.kind === "user" && s.operator === true);
}
