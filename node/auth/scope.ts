/**
 * May an identity do an action to a repository: protocol/access.ts's
 * decision, cut down to what a bearer token's scope names (issue 10,
 * finding 2). A pure function of its inputs and the time; the
 * authenticator (./authenticator.ts) calls it with the project's cached
 * settings on the request path.
 */
import { grants } from "../../mesh-client/tokens.js";
import { type Action, type Decision, decide, type ProjectInfo } from "../../protocol/access.js";
import type { Identity } from "./identity.js";

/** A decision; `scopeMissing`: the holder may, but the bearer token does not name it (ask for a new token). */
export type Judgement = Decision & { scopeMissing?: boolean };

export function judge(
  identity: Identity,
  action: Action,
  repo: string,
  project: ProjectInfo | undefined,
): Judgement {
  const decision = decide(identity.subject, action, repo, project, Date.now());
  const scoped = identity.via === "bearer" && identity.kind !== "service" && identity.claims !== undefined;
  if (scoped && !grants(identity.claims!, repo, action))
    return decision.allowed
      ? { allowed: false, reason: `token does not grant ${action} on ${repo}`, scopeMissing: true }
      : decision;
  return decision;
}
