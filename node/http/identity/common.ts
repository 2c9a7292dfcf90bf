/**
 * What the identity route plugins (./users.ts, ./robots.ts, ./projects.ts)
 * share: their options, the commit step that tells the authenticator what
 * changed, and the caller's standing (system admin, project admin).
 */
import type { FastifyRequest } from "fastify";
import { decide } from "../../../protocol/access.js";
import type { EventBody } from "../../../protocol/events.js";
import type { Registry } from "../../data/registry.js";
import { actorOf } from "../access.js";
import { badRequest } from "../admin/request.js";

export interface IdentityRouteOptions {
  registry: Registry;
  /** Told the user, robot or project each change names (the authenticator drops its cached copy). */
  changed?: (name: string) => void;
  /** Check a user's current password like a login (throws when wrong); absent without auth. */
  checkPassword?: (req: FastifyRequest, name: string, password: string) => Promise<void>;
}

/** Commit an identity change as the caller; the names it touches are forgotten by the authenticator. */
export function committer(options: IdentityRouteOptions) {
  const changed = options.changed ?? (() => undefined);
  return async (req: FastifyRequest, body: EventBody): Promise<number> => {
    const seq = await options.registry.commitAdmin(body, actorOf(req.identity));
    const named = body as { name?: string; user?: string; project?: string };
    for (const name of [named.name, named.user, named.project]) if (name !== undefined) changed(name);
    return seq;
  };
}

export function isSystemAdmin(req: FastifyRequest): boolean {
  return req.identity.subject.kind === "user" && req.identity.subject.systemAdmin;
}

/** May the caller read everything a system admin reads (a system admin, or a read-only operator)? */
export function readsAll(req: FastifyRequest): boolean {
  const s = req.identity.subject;
  return s.kind === "user" && (s.systemAdmin || s.operator === true);
}

/** May the caller manage `project` (a project admin of it, or a system admin)? */
export function mayManage(req: FastifyRequest, project: string): boolean {
  return decide(req.identity.subject, "manage", project, undefined, Date.now()).allowed;
}

/**
 * The identity routes' bodies are JSON (whatever the content type): a route's
 * `preValidation`, so its schema checks the value. An empty body is `{}`;
 * no body at all is left for the schema to refuse.
 */
export async function readJson(req: FastifyRequest): Promise<void> {
  if (typeof req.body !== "string") return;
  try {
    req.body = req.body.trim() === "" ? {} : JSON.parse(req.body);
  } catch {
    throw badRequest(["request body: not JSON"]);
  }
}
