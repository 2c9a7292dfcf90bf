/**
 * The admin API (mounted under /admin/v1 by buildApp): replication policies
 * and their runs, alerts, tag merge rules, tag history, repository deletion
 * and undelete, and this region's view of one artifact. JSON in and out
 * (a policy may also be sent as YAML); errors are the OCI envelope through
 * the one serializer in ./errors.ts.
 *
 *   GET    /policies                                   {policies: [{name, policy, updatedAt, origin}]}
 *   POST   /policies                                   a YAML/JSON file of policies → {applied, seq}
 *   GET    /policies/:name                             {name, policy, yaml, runs, …}
 *   PUT    /policies/:name                             one policy → {name, policy, seq}
 *   DELETE /policies/:name                             {name, seq}
 *   POST   /policies/:name/run                         202 {name, runId, seq}
 *   GET    /policies/:name/runs/:runId                 the run record
 *   POST   /policies/:name/reset-breaker               202 {name, seq}
 *   GET    /alerts                                     {alerts}
 *   GET    /rules                                      {default, rules}
 *   PUT    /rules                                      {scope, tagMerge, home?, epoch?, durability?} → {…, seq}
 *   GET    /repositories/<repo>/tags/<tag>/history[?at=TIME]
 *   DELETE /repositories/<repo>                        202 {repo, seq}
 *   POST   /undelete                                   {repo, tag?|digest?} → {repo, restored}
 *   GET    /artifacts/<repo>@<digest>                  {region, repo, digest, present, tags, deleted?}
 *   POST   /failover                                   {from, to, force?} → {from, to, epoch, scopes}
 *   POST   /rebuild                                    {region?} → 202 {region, runId, seq}
 *   GET    /rebuild/:runId                             the rebuild's run record (404 until it finishes)
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
 * per region. Repository names hold slashes: those routes
 * take a wildcard and split it as the OCI dispatcher does.
 */
import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { LineCounter, parseAllDocuments, parseDocument, stringify } from "yaml";
import { ADMIN_SCOPE } from "../../mesh-client/tokens.js";
import { type Digest, parseDigest } from "../../protocol/digest.js";
import {
  AccessDeniedError,
  DigestInvalidError,
  ManifestNotFoundError,
  NameInvalidError,
  PolicyInvalidError,
  PolicyNotFoundError,
  RepositoryNotFoundError,
  RouteNotFoundError,
  UnauthorizedError,
  UnsupportedError,
} from "../../protocol/errors.js";
import {
  type EventBody,
  parseDurability,
  parseRegion,
  parseScope,
  REBUILD_RUN,
} from "../../protocol/events.js";
import { parseRepository, parseTag } from "../../protocol/names.js";
import { type Policy, parsePolicies, parsePolicy, policyToYaml } from "../../protocol/policy.js";
import { registerAt, TAG_MERGE_RULES, type TagMergeRule, type TagWrite } from "../../protocol/tag-merge.js";
import type { AuditLog } from "../audit.js";
import { type LoginOutcome, meantForAdmin } from "../auth/authenticator.js";
import { LOOPBACK } from "../config.js";
import type { Registry, UndeleteTarget } from "../data/registry.js";
import {
  type AuditSink,
  actorOf,
  authFailureHeaders,
  challenge,
  type HttpAuth,
  loginRecord,
} from "./access.js";
import { auditRoutes } from "./audit-routes.js";
import { handleError } from "./errors.js";
import { clientAddress } from "./forwarded.js";
import { identityRoutes, type RouteAccess } from "./identity-routes.js";

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
}

/** Who an admin change is recorded as: the request's identity (`anonymous` without auth). */
const actor = (req: FastifyRequest) => actorOf(req.identity);
const POLICY_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const YAML_TYPES = /^(?:application|text)\/(?:x-)?yaml\b/i;
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\b/i;

async function adminApi(app: FastifyInstance, options: AdminApiOptions): Promise<void> {
  // A child context: its own body parsing and error handler, whatever the parent's.
  await app.register(
    async (admin) => {
      if (options.auth !== undefined) gate(admin, options.auth, options.audit);
      else writesFrom(admin, options.writeAddresses ?? LOOPBACK);
      if (options.audit !== undefined) audited(admin, options.audit);
      await adminRoutes(admin, options.registry);
      await identityRoutes(admin, options.registry, {
        changed: (name) => options.auth?.authenticator.forget(name),
        checkPassword: async (req, name, password) => {
          if (options.auth === undefined) return;
          await options.auth.authenticator.login(
            name,
            password,
            clientAddress(req),
            loginAudit(req, options.audit),
          );
        },
      });
      if (options.audit !== undefined) await auditRoutes(admin, options.audit, options.registry.region);
    },
    {
      prefix: options.prefix ?? "/admin/v1",
    },
  );
}

/**
 * With authentication, every admin route needs a system admin (or a service
 * token: the front door, a peer), except routes whose `access` config lets
 * more in (./identity-routes.ts; their handlers check the finer condition).
 * No credentials: 401 with the Bearer challenge; not enough: 403 DENIED.
 * Only credentials meant for the admin API get in (finding 2): Basic, or a
 * bearer token naming `registry:admin:*`; any other token (a pull token, a
 * redirect's `_token`) is 401 with a challenge naming that scope. Every
 * password checked here is audited as `login`/`login.failed` (finding 12).
 */
function gate(admin: FastifyInstance, auth: HttpAuth, audit: AuditSink | undefined): void {
  admin.addHook("onRequest", async (req, reply) => {
    try {
      req.identity = await auth.authenticator.identify(
        req.headers.authorization,
        clientAddress(req),
        loginAudit(req, audit),
      );
    } catch (err) {
      authFailureHeaders(auth, req, reply, err);
      throw err;
    }
    if (!meantForAdmin(req.identity)) {
      challenge(auth, req, reply, ADMIN_SCOPE, true);
      throw new UnauthorizedError(`this token is not meant for the admin API (ask for ${ADMIN_SCOPE})`);
    }
    const s = req.identity.subject;
    if (s.kind === "user" && s.systemAdmin) return;
    if (req.identity.kind === "anonymous") {
      challenge(auth, req, reply);
      throw new UnauthorizedError("authentication required");
    }
    const access = (req.routeOptions.config as { access?: RouteAccess } | undefined)?.access ?? "admin";
    if (access === "admin") throw new AccessDeniedError("a system admin is required");
  });
}

/**
 * Without authentication anyone who reaches the port could change policies,
 * rules and projects (issue 11, finding 9): admin writes (anything but GET and
 * HEAD) are accepted only from the listed socket addresses, by default
 * loopback. The socket's address, never a forwarded header: a front door on
 * another host must be listed itself, as must a peer on another host (its
 * automatic failover posts /admin/v1/failover). Reads stay open, as the registry is.
 */
function writesFrom(admin: FastifyInstance, addresses: readonly string[]): void {
  if (addresses.includes("*")) return;
  const allowed = new Set(addresses);
  admin.addHook("onRequest", async (req) => {
    if (req.method === "GET" || req.method === "HEAD") return;
    const from = req.socket.remoteAddress ?? "";
    if (!allowed.has(from))
      throw new AccessDeniedError(
        `authentication is off: admin changes are accepted only from ${[...allowed].join(", ")} (auth.adminWriteAddresses), not ${from}`,
      );
  });
}

/** The audit callback of a password checked by the admin API (undefined without an audit log). */
function loginAudit(req: FastifyRequest, audit: AuditSink | undefined) {
  return audit === undefined
    ? undefined
    : (outcome: LoginOutcome) => audit.record(loginRecord(outcome, clientAddress(req), "admin"));
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

/** Longest summary of a change's body in an audit record's detail. */
const MAX_SUMMARY = 400;
/** Nesting shown (a robot's grants: body → grants → grant → actions); deeper values as `{…}`. */
const MAX_DEPTH = 3;
/** Body fields never recorded, whatever the route: credentials. */
const SECRET_FIELD = /pass|secret|token|credential|key|seed|jwt/i;

/**
 * What an admin change asked for, for its audit record (issue 11): the body's
 * fields as ` {name=value …}` (nested values as compact JSON; a YAML policy
 * file as the policies' names), cut to MAX_SUMMARY characters. A field whose
 * name suggests a credential (SECRET_FIELD) is recorded as `<redacted>`,
 * never its value. Empty when there is no body.
 */
export function changeSummary(body: unknown): string {
  let value = body;
  if (typeof body === "string") {
    const text = body.trim();
    if (text === "") return "";
    try {
      value = JSON.parse(text);
    } catch {
      try {
        value = parseAllDocuments(text).map((d) => d.toJSON() as unknown);
        if (Array.isArray(value) && value.length === 1) value = value[0];
      } catch {
        return " {unreadable body}";
      }
    }
  }
  const summary = summarize(value, 0);
  if (summary === "") return "";
  return ` ${summary.length > MAX_SUMMARY ? `${summary.slice(0, MAX_SUMMARY - 1)}…` : summary}`;
}

function summarize(value: unknown, depth: number): string {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) {
    // A policy file (several policies): their names; otherwise the items, shortly.
    const named = value.every((v) => isObject(v) && typeof v.name === "string");
    if (named) return `[${value.map((v) => (v as { name: string }).name).join(", ")}]`;
    return depth > MAX_DEPTH ? "[…]" : `[${value.map((v) => summarize(v, depth + 1)).join(", ")}]`;
  }
  if (isObject(value)) {
    if (depth > MAX_DEPTH) return "{…}";
    const parts = Object.entries(value).map(([k, v]) =>
      SECRET_FIELD.test(k) ? `${k}=<redacted>` : `${k}=${summarize(v, depth + 1)}`,
    );
    return `{${parts.join(" ")}}`;
  }
  return typeof value === "string" ? value.slice(0, 128) : String(value);
}

async function adminRoutes(admin: FastifyInstance, reg: Registry): Promise<void> {
  const view = reg.view;
  admin.removeAllContentTypeParsers();
  // Bodies are small documents kept as text; each route decides how to read them (JSON or YAML).
  admin.addContentTypeParser("*", { parseAs: "string" }, (_req, body, done) => done(null, body));
  admin.setErrorHandler(handleError);
  if (admin.hasRequestDecorator("ociRoute")) {
    admin.addHook("onRequest", async (req) => {
      req.ociRoute = "admin";
    });
  }

  // ------------------------------------------------------------ policies

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
    for (const policy of policies) seq = await commitPolicy(policy, actor(req));
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
    const seq = await commitPolicy(policy, actor(req));
    return { name, policy, seq };
  });

  admin.delete<{ Params: { name: string } }>("/policies/:name", async (req) => {
    const { name } = await policyNamed(req.params.name);
    const seq = await reg.commitAdmin({ type: "policy.deleted", name }, actor(req));
    return { name, seq };
  });

  admin.post<{ Params: { name: string } }>("/policies/:name/run", async (req, reply) => {
    const { name, policy } = await policyNamed(req.params.name);
    // A disabled policy covers no link: no destination would ever run it or report.
    if (policy.enabled === false)
      throw new UnsupportedError(`policy ${name} is disabled; enable it to run it`, { detail: { name } });
    const runId = randomUUID();
    const seq = await reg.commitAdmin({ type: "policy.run", name, runId }, actor(req));
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
    const seq = await reg.commitAdmin({ type: "breaker.reset", name }, actor(req));
    return reply.status(202).send({ name, seq });
  });

  admin.get("/alerts", async () => ({ alerts: await view.alerts() }));

  // ------------------------------------------------------------ failover and rebuild

  admin.post("/failover", async (req) => {
    const value = bodyValue(req, "request");
    if (!isObject(value)) throw badRequest([`failover: want an object, got ${typeName(value)}`]);
    const problems: string[] = [];
    for (const key of Object.keys(value))
      if (!["from", "to", "force"].includes(key)) problems.push(`${key}: unknown key`);
    const { from, to, force } = value;
    for (const [field, v] of [
      ["from", from],
      ["to", to],
    ] as const)
      if (typeof v !== "string" || !isRegion(v))
        problems.push(`${field}: required: a region name, got ${show(v)}`);
    if (force !== undefined && typeof force !== "boolean")
      problems.push(`force: want true or false, got ${show(force)}`);
    if (problems.length > 0) throw badRequest(problems);
    return reg.failover(from as string, to as string, force === true, actor(req));
  });

  admin.post("/rebuild", async (req, reply) => {
    const text = bodyText(req);
    const value = text.trim() === "" ? {} : bodyValue(req, "request");
    if (!isObject(value)) throw badRequest([`rebuild: want an object, got ${typeName(value)}`]);
    const problems: string[] = [];
    for (const key of Object.keys(value)) if (key !== "region") problems.push(`${key}: unknown key`);
    const region = value.region ?? reg.region;
    if (typeof region !== "string" || !isRegion(region))
      problems.push(`region: want a region name, got ${show(region)}`);
    if (problems.length > 0) throw badRequest(problems);
    const runId = randomUUID();
    const seq = await reg.commitAdmin(
      { type: "policy.run", name: REBUILD_RUN, runId, region: region as string },
      actor(req),
    );
    return reply.status(202).send({ region, runId, seq });
  });

  admin.get<{ Params: { runId: string } }>("/rebuild/:runId", async (req) => {
    const { runId } = req.params;
    const run = runId.length > 64 ? undefined : await view.run(REBUILD_RUN, runId);
    if (run === undefined)
      throw new PolicyNotFoundError(`no finished rebuild ${runId.slice(0, 64)}`, { detail: { runId } });
    return run;
  });

  // ------------------------------------------------------------ tag rules

  admin.get("/rules", async () => ({ default: view.configFor(""), rules: view.configs() }));

  admin.put("/rules", async (req) => {
    const value = bodyValue(req, "request");
    if (!isObject(value)) throw badRequest([`rule: want an object, got ${typeName(value)}`]);
    const problems: string[] = [];
    for (const key of Object.keys(value))
      if (!["scope", "tagMerge", "home", "epoch", "durability"].includes(key))
        problems.push(`${key}: unknown key`);
    const { scope, tagMerge, home, epoch, durability } = value;
    if (typeof scope !== "string")
      problems.push('scope: required: a repository name, a prefix ending in "/", or "" for every repository');
    else parseScope(scope); // NAME_INVALID, on its own
    if (!TAG_MERGE_RULES.includes(tagMerge as TagMergeRule))
      problems.push(`tagMerge: want one of ${TAG_MERGE_RULES.join(", ")}, got ${show(tagMerge)}`);
    if (home === undefined) {
      if (tagMerge === "home-region") problems.push("home: required for the home-region rule");
    } else if (typeof home !== "string" || !isRegion(home))
      problems.push(`home: invalid region name ${show(home)}`);
    if (epoch !== undefined) {
      if (!Number.isSafeInteger(epoch) || (epoch as number) < 0)
        problems.push(`epoch: want a non-negative integer, got ${show(epoch)}`);
      else if (home === undefined) problems.push("epoch: only with home (the home region at that epoch)");
    }
    if (
      durability !== undefined &&
      (typeof durability !== "string" || parseDurability(durability) === undefined)
    )
      problems.push(`durability: want "async" or "sync(k)" with k from 1 to 99, got ${show(durability)}`);
    else if ((parseDurability(durability as string | undefined) ?? 0) > reg.otherRegions)
      problems.push(
        `durability: ${durability} needs that many other regions; the mesh has ${reg.otherRegions} besides ${reg.region}`,
      );
    if (problems.length > 0) throw badRequest(problems);
    const body = {
      type: "repository.configured",
      scope: scope as string,
      tagMerge: tagMerge as TagMergeRule,
      ...(home === undefined ? {} : { home: home as string }),
      ...(durability === undefined ? {} : { durability: durability as string }),
    } as EventBody;
    // The epoch is an envelope field: the view keys the home table by it.
    const seq = await reg.commitAdmin(body, actor(req), epoch as number | undefined);
    return {
      scope,
      tagMerge,
      ...(home === undefined ? {} : { home }),
      ...(epoch === undefined ? {} : { epoch }),
      ...(durability === undefined ? {} : { durability }),
      seq,
    };
  });

  // ------------------------------------------------------------ repositories, tags, artifacts

  const repositories = async (req: FastifyRequest, reply: FastifyReply) => {
    const path = (req.params as { "*": string })["*"];
    if (req.method === "DELETE") {
      const repo = parseRepository(path);
      const seq = await reg.deleteRepository(repo, actor(req));
      return reply.status(202).send({ repo, seq });
    }
    const m = /^(.+)\/tags\/([^/]+)\/history$/.exec(path);
    if (m === null) throw new RouteNotFoundError("no such endpoint");
    return tagHistory(parseRepository(m[1]!), parseTag(m[2]!), (req.query as { at?: string }).at);
  };
  admin.route({ method: ["GET", "DELETE"], url: "/repositories/*", handler: repositories });

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
    };
    if (atMs !== undefined) {
      const writes: TagWrite[] = history.map((h) => ({
        digest: h.digest ?? undefined,
        hlc: h.w.hlc,
        origin: h.w.origin,
        eventId: h.w.id,
        epoch: h.w.epoch,
      }));
      const winner = registerAt(tagMerge, writes, atMs, homes);
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

  admin.post("/undelete", async (req) => {
    const value = bodyValue(req, "request");
    if (!isObject(value)) throw badRequest([`undelete: want an object, got ${typeName(value)}`]);
    const unknown = Object.keys(value).filter((k) => !["repo", "tag", "digest"].includes(k));
    if (unknown.length > 0) throw badRequest(unknown.map((k) => `${k}: unknown key`));
    if (typeof value.repo !== "string") throw badRequest(["repo: required"]);
    const repo = parseRepository(value.repo);
    if (value.tag !== undefined && value.digest !== undefined)
      throw badRequest(["give tag or digest, not both"]);
    let target: UndeleteTarget = {};
    if (value.tag !== undefined) target = { tag: parseTag(value.tag as string) };
    else if (value.digest !== undefined) {
      if (typeof value.digest !== "string") throw new DigestInvalidError("digest: want a string");
      target = { digest: parseDigest(value.digest) };
    }
    const { restored } = await reg.undelete(repo, target, actor(req));
    return { repo, restored };
  });

  admin.get("/artifacts/*", async (req) => {
    const path = (req.params as { "*": string })["*"];
    const cut = path.lastIndexOf("@");
    if (cut < 0) throw new DigestInvalidError("want <repository>@<digest>");
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

  // ------------------------------------------------------------ helpers needing the registry

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
}

/** The admin API as a named plugin; it mounts its routes in a context of their own under `prefix`. */
export const adminApiPlugin = fp(adminApi, { name: "meridian-admin-api", fastify: "5.x" });

// ---------------------------------------------------------------- request reading

function bodyText(req: FastifyRequest): string {
  return typeof req.body === "string" ? req.body : "";
}

function isJson(req: FastifyRequest): boolean {
  return JSON_TYPE.test(req.headers["content-type"] ?? "");
}

/**
 * The body as a value: YAML when the content type says so, JSON otherwise.
 * Unreadable input is a PolicyInvalidError for a policy (so it lists like any
 * other policy problem), an UnsupportedError (400) for anything else.
 */
function bodyValue(req: FastifyRequest, what: "policy" | "request"): unknown {
  const text = bodyText(req);
  if (text.trim() === "") throw problem(what, ["request body: empty"]);
  if (!YAML_TYPES.test(req.headers["content-type"] ?? "")) return jsonValue(text, what);
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw problem(
      what,
      doc.errors.map((e) => {
        const { line, col } = lineCounter.linePos(e.pos[0]);
        return `${what} YAML: line ${line}, column ${col}: ${e.message}`;
      }),
    );
  }
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw problem(what, [`${what} YAML: ${(err as Error).message}`]);
  }
}

function jsonValue(text: string, what: "policy" | "request"): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw problem(what, [`${what} JSON: ${(err as Error).message}`]);
  }
}

function problem(what: "policy" | "request", errors: string[]): Error {
  return what === "policy" ? policyInvalid(errors) : badRequest(errors);
}

function policyInvalid(errors: string[]): PolicyInvalidError {
  return new PolicyInvalidError(errors.join("; "), { detail: { errors } });
}

function badRequest(errors: string[]): UnsupportedError {
  return new UnsupportedError(errors.join("; "), { detail: { errors } });
}

function policyName(raw: string): string {
  if (!POLICY_NAME.test(raw))
    throw new NameInvalidError(`invalid policy name: ${raw.slice(0, 64)}`, {
      detail: { name: raw.slice(0, 64) },
    });
  return raw;
}

/** A time given as ISO-8601 or as milliseconds since the epoch. */
function parseTime(text: string): number {
  const ms = /^\d{1,15}$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(ms))
    throw new UnsupportedError(
      `invalid time ${JSON.stringify(text.slice(0, 64))}: want ISO-8601 or milliseconds`,
    );
  return ms;
}

function isRegion(name: string): boolean {
  try {
    parseRegion(name);
    return true;
  } catch {
    return false;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "a list" : typeof v;
}

function show(v: unknown): string {
  return v === undefined ? "nothing" : (JSON.stringify(v)?.slice(0, 64) ?? String(v));
}
