/**
 * The admin API (mounted under /admin/v1 by buildApp): replication policies
 * and their runs, alerts, tag merge rules, tag history, repository deletion
 * and undelete, this region's view of one artifact, failover and rebuild,
 * identities and the audit log. JSON in and out (a policy may also be sent
 * as YAML); errors are the OCI envelope through the one serializer in
 * ./errors.ts. This file is the context they share; the routes are fastify
 * route plugins by aggregate, each listing its routes in its header:
 *
 *   admin/policies.ts      /policies…, /alerts
 *   admin/activity.ts      /activity (recent conflicts, alerts, runs, failovers)
 *   admin/rules.ts         /rules
 *   admin/immutability.ts  /immutability, /immutability/:name
 *   admin/repositories.ts  /repositories/…, /undelete, /artifacts/…
 *   admin/failover.ts      /failover, /rebuild…
 *   admin/quotas.ts        /quotas… (project quotas and storage usage)
 *   admin/webhooks.ts      /webhooks, /webhooks/:name (issue 17: CloudEvents subscriptions)
 *   admin/retention.ts     /retention/rules…, /retention/plan, /retention/runs…
 *   admin/endpoints.ts     /endpoints, /endpoints/:name (external registries, issue 17)
 *   admin/proxies.ts       /proxies, /proxies/:project (pull-through cache projects, issue 17)
 *   admin/scrub.ts         /scrub/runs… (with a scrubber: node/scrub.ts)
 *   admin/verify.ts        /verify/<repo>@<digest> (cosign signature check, read-only)
 *   admin/promotions.ts    /gates…, /promotions… (gated promotion, issue 17)
 *   admin/pull-policies.ts /pull-policies… (block-pull policies, issue 18)
 *   identity-routes.ts     /whoami, /users…, /robots…, /projects… (identity/*.ts)
 *   audit-routes.ts        /audit
 *
 * The context: every body is read as text (each route reads its own: JSON,
 * YAML, a policy file; admin/request.ts), bodies and query strings are
 * checked against the routes' TypeBox schemas by admin/schema.ts's
 * validator (a failure is 400 UNSUPPORTED naming each field, before the
 * handler runs), one error handler, one access gate (admin/access-gate.ts:
 * with auth, a route's `config.access` says who may call it; without, writes
 * only from `writeAddresses`), and one audit hook recording every change
 * (admin/change-summary.ts says what it asked for).
 *
 * Every change is one admin event committed through the Registry (its single
 * commit step), so it is in the log and applied here before the answer goes
 * out, and replicated everywhere after.
 *
 * Why here and not in control-plane/ (where DESIGN.md puts "the admin
 * surface"): admin objects are events in the region's log, and the node is
 * the region's one writer of that log; the control plane's processes act on
 * these objects (workers run policies, peers enforce budgets) but never write
 * them. Putting the API beside the OCI API also gives operators one endpoint
 * per region.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import type { Logger } from "pino";
import type { AuditLog } from "../audit.js";
import { LOOPBACK } from "../config.js";
import type { Registry } from "../data/registry.js";
import { Promoter } from "../promotion.js";
import type { Scrubber } from "../scrub.js";
import type { AuditSink, HttpAuth } from "./access.js";
import { gate, loginAudit, writesFrom } from "./admin/access-gate.js";
import { activityRoutes } from "./admin/activity.js";
import { changeSummary } from "./admin/change-summary.js";
import { endpointRoutes } from "./admin/endpoints.js";
import { failoverRoutes } from "./admin/failover.js";
import { gcRoutes } from "./admin/gc.js";
import { immutabilityRoutes } from "./admin/immutability.js";
import { type OidcAdminOptions, oidcAdminRoutes } from "./admin/oidc.js";
import { policyRoutes } from "./admin/policies.js";
import { promotionRoutes } from "./admin/promotions.js";
import { proxyRoutes } from "./admin/proxies.js";
import { pullPolicyRoutes } from "./admin/pull-policies.js";
import { quotaRoutes } from "./admin/quotas.js";
import { repositoryRoutes } from "./admin/repositories.js";
import { retentionRoutes } from "./admin/retention.js";
import { ruleRoutes } from "./admin/rules.js";
import { validatorCompiler } from "./admin/schema.js";
import { scrubRoutes } from "./admin/scrub.js";
import { verifyRoutes } from "./admin/verify.js";
import { webhookRoutes } from "./admin/webhooks.js";
import { auditRoutes } from "./audit-routes.js";
import { handleError } from "./errors.js";
import { clientAddress } from "./forwarded.js";
import { identityRoutes } from "./identity-routes.js";

export type { RouteAccess } from "./admin/access-gate.js";
export { changeSummary };

export interface AdminApiOptions {
  registry: Registry;
  /** Where the routes are mounted (default /admin/v1). */
  prefix?: string;
  /** With authentication: who may call what (see "Access" above). */
  auth?: HttpAuth;
  /** Where admin changes are recorded, and what `GET /audit` reads. */
  audit?: AuditLog;
  /**
   * Without `auth`: the socket addresses admin writes are accepted from
   * ("*": anyone); default loopback (node/config.ts auth.adminWriteAddresses).
   */
  writeAddresses?: readonly string[];
  /** The node's scrub (node/scrub.ts): /scrub/runs… are mounted with it. */
  scrubber?: Scrubber;
  /** Public keys by name (node/config.ts verification.keys) for /verify; none: every check fails "no public key configured". */
  verificationKeys?: ReadonlyMap<string, string>;
  /** Promotions (node/promotion.ts); default: one of this node's store without a mesh or service token. */
  promoter?: Promoter;
  /** With OIDC: renews the session that changed its own CLI secret (./admin/oidc.ts). */
  renewOidcSession?: OidcAdminOptions["renewSession"];
}

async function adminApi(app: FastifyInstance, options: AdminApiOptions): Promise<void> {
  // A child context: its own body parsing and error handler, whatever the parent's.
  await app.register(
    async (admin) => {
      admin.removeAllContentTypeParsers();
      // Bodies are small documents kept as text; each route decides how to read them (admin/request.ts).
      admin.addContentTypeParser("*", { parseAs: "string" }, (_req, body, done) => done(null, body));
      admin.setErrorHandler(handleError);
      admin.setValidatorCompiler(validatorCompiler);
      if (admin.hasRequestDecorator("ociRoute")) {
        admin.addHook("onRequest", async (req) => {
          req.ociRoute = "admin";
        });
      }
      if (options.auth !== undefined) gate(admin, options.auth, options.audit);
      else writesFrom(admin, options.writeAddresses ?? LOOPBACK);
      if (options.audit !== undefined) audited(admin, options.audit);
      const registry = options.registry;
      await admin.register(policyRoutes, { registry });
      await admin.register(ruleRoutes, { registry });
      await admin.register(immutabilityRoutes, { registry });
      await admin.register(webhookRoutes, { registry });
      await admin.register(repositoryRoutes, { registry });
      await admin.register(failoverRoutes, { registry });
      await admin.register(quotaRoutes, { registry });
      await admin.register(retentionRoutes, { registry });
      await admin.register(endpointRoutes, { registry });
      await admin.register(proxyRoutes, { registry });
      if (options.scrubber !== undefined) await admin.register(scrubRoutes, { scrubber: options.scrubber });
      await admin.register(gcRoutes, { registry });
      await admin.register(verifyRoutes, { registry, keys: options.verificationKeys ?? new Map() });
      const promoter =
        options.promoter ??
        new Promoter({
          registry,
          keys: options.verificationKeys ?? new Map(),
          logger: admin.log as unknown as Logger,
        });
      await admin.register(promotionRoutes, { registry, promoter });
      await admin.register(pullPolicyRoutes, { registry, keys: options.verificationKeys ?? new Map() });
      await admin.register(activityRoutes, { registry });
      await admin.register(oidcAdminRoutes, {
        registry,
        changed: (name: string) => options.auth?.authenticator.forget(name),
        ...(options.renewOidcSession === undefined ? {} : { renewSession: options.renewOidcSession }),
      });
      await admin.register(identityRoutes, {
        registry,
        changed: (name: string) => options.auth?.authenticator.forget(name),
        checkPassword: async (req: FastifyRequest, name: string, password: string) => {
          if (options.auth === undefined) return;
          await options.auth.authenticator.login(
            name,
            password,
            clientAddress(req),
            loginAudit(req, options.audit),
          );
        },
      });
      if (options.audit !== undefined) await auditRoutes(admin, options.audit, registry.region);
    },
    {
      prefix: options.prefix ?? "/admin/v1",
    },
  );
}

/** Every admin change (anything but a read), with its outcome. */
function audited(admin: FastifyInstance, audit: AuditSink): void {
  admin.addHook("onResponse", async (req, reply) => {
    if (req.method === "GET" || req.method === "HEAD") return;
    const path = (req.raw.url ?? "").split("?", 1)[0]!;
    const repo = /\/repositories\/(.+)$/.exec(path)?.[1];
    audit.record({
      actor: req.identity.name,
      kind: req.identity.kind,
      action: req.method === "DELETE" && repo !== undefined ? "delete" : "admin",
      address: clientAddress(req),
      ...(repo === undefined ? {} : { repo }),
      status: reply.statusCode,
      detail: `${req.method} ${path}${changeSummary(req.body)}`,
    });
  });
}

/** The admin API as a named plugin; it mounts its routes in a context of their own under `prefix`. */
export const adminApiPlugin = fp(adminApi, { name: "meridian-admin-api", fastify: "5.x" });
