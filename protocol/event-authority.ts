/**
 * Who may have made an identity or policy event (issue 10, finding 1): the
 * view's check when it applies one, so a stolen NATS credential that can
 * append to a region's stream is not a mesh-wide admin.
 *
 * Two checks, both with authentication on (without it nobody has an
 * identity: every admin change is made by `anonymous`, so there is no one to
 * check against and the event log is the only gate; run with auth on
 * whenever the NATS port is reachable by anyone but Meridian):
 *
 * 1. Proof. An event of a type in `AUTHORITY_TYPES` carries `proof`: a
 *    detached ES256 JWS over `proofPayload(event)` by the mesh's token key
 *    (mesh-client/tokens.ts). Only a holder of that key (the nodes, which make
 *    these events in their single commit step; the peers and the front door,
 *    which ask a node over its admin API) can make one. The payload is the
 *    event without what replication adds or changes (`id` of a copy,
 *    `cause`, `srcSeq`) and with the write's identity (`writeIdOf`), so a
 *    replica keeps its origin's proof verbatim (replication/worker.ts
 *    appends `{...event, cause, srcSeq}`; anti-entropy, replication/
 *    reconcile.ts, re-creates content events only) and a proof cannot be
 *    moved onto another event. Retired keys verify too, so rotating the key
 *    never breaks a replay or a rebuild of older events.
 *
 * 2. Right. `authorizeEvent` decides, from what the view holds when the
 *    event is applied (`EventFacts`), whether its `actor` could have made it:
 *
 *    | event                          | who may make it                                                      |
 *    |--------------------------------|----------------------------------------------------------------------|
 *    | user.set                       | a system admin; the user themself when `systemAdmin` and `operator` are unchanged |
 *    |                                | (a password change); `system` for the bootstrap user `admin` (a      |
 *    |                                | system admin) while nobody but `system` ever wrote `admin`           |
 *    | user.deleted, project.set      | a system admin                                                       |
 *    | robot.set                      | a system admin; a project admin of every project its grants name AND |
 *    |                                | of every project named by the robot it replaces (finding 8)          |
 *    | robot.deleted                  | a system admin; a project admin of every project the robot names     |
 *    | member.set                     | a system admin; a project admin of that project                      |
 *    | policy.set, policy.deleted     | a system admin; `config` (the node's configuration file)            |
 *    | policy.run, breaker.reset,     | a system admin                                                       |
 *    | repository.configured,         |                                                                      |
 *    | quota.set,                     |                                                                      |
 *    | retention.set/deleted          |                                                                      |
 *    | endpoint.set/deleted           | a system admin                                                       |
 *    | gate.set/deleted,              | a system admin (promotion gates guard every project's destination;  |
 *    | promotion.recorded             | the node writes the record for the caller of POST /promotions)     |
 *    | pull-policy.set/deleted        | a system admin (a block-pull policy is a security control: a       |
 *    |                                | project admin could otherwise lift it from their own project)      |
 *    | proxy.set/deleted              | a system admin (a proxy reads the endpoint's credentials: no project |
 *    |                                | admin may point a project at them)                                   |
 *    | immutability.set               | a system admin; a project admin of the project of its repositories  |
 *    |                                | glob AND of the rule it replaces (immutable-tags.ts `ruleProject`;  |
 *    |                                | a glob reaching several projects: system admins only)              |
 *    | immutability.deleted           | a system admin; a project admin of the deleted rule's project       |
 *    | webhook.set/deleted/replay     | a system admin; a project admin of the subscription's project (keyed |
 *    |                                | by project, so one cannot touch another project's); project `*`     |
 *    |                                | (every project, mesh-wide events, the SIEM stream): system admins   |
 *    | failover.recorded              | a system admin (the one who made the failover; a service for the    |
 *    |                                | automatic one): a forged one would announce a failover that was not |
 *    |                                | made                                                                 |
 *    | oidc.user.set                  | the OIDC user it names (the node that checked the ID token made the  |
 *    |                                | proof), and nobody else: roles come from the provider's groups only  |
 *    | oidc.secret.set                | the OIDC user it names; a system admin (revoking only: hash null)    |
 *
 *    A `service:<name>` actor (a component holding the mesh key: the front
 *    door, a peer, acting through a node's admin API) counts as a system
 *    admin; robots and `anonymous` may make none of them.
 *
 * Events of other types need no proof: content events (authorized by the
 * node that accepted the push; the log's own permissions keep others from
 * appending them), what replication workers append (`policy.run.finished`,
 * `alert.raised`, `tag.conflict`): workers hold no token key, and the pulls
 * nodes record (`pulls.recorded`): a forged one can only make retention keep
 * more, never delete; nor the quota refusals nodes record (`quota.exceeded`):
 * a forged one changes no state, it can only be announced to a webhook.
 *
 * Determinism: the proof check depends on the event and the key set alone.
 * The right is judged against the view's state when the event is applied,
 * which is the same in every region for events of one origin; an event whose
 * actor's right was granted (or revoked) in ANOTHER region moments before
 * may find a region that has not yet heard of that grant (or revocation).
 * Both events carry proofs made after the committing node checked the right,
 * so this can only refuse or admit a legitimate admin's concurrent change,
 * never a forger's.
 */
import type { Decision, RobotGrant, Role } from "./access.js";
import type { EventType, RegistryEvent } from "./events.js";
import { writeIdOf } from "./events.js";
import { ruleProject } from "./immutable-tags.js";
import type { OidcEvent } from "./oidc.js";

/** Event types that need a proof and an actor with the right to make them. */
export const AUTHORITY_TYPES: ReadonlySet<EventType> = new Set<EventType>([
  "user.set",
  "user.deleted",
  "robot.set",
  "robot.deleted",
  "tokens.revoked",
  "project.set",
  "member.set",
  "policy.set",
  "policy.deleted",
  "policy.run",
  "breaker.reset",
  "repository.configured",
  "immutability.set",
  "immutability.deleted",
  "quota.set",
  "retention.set",
  "retention.deleted",
  "endpoint.set",
  "endpoint.deleted",
  "gate.set",
  "gate.deleted",
  "pull-policy.set",
  "pull-policy.deleted",
  "promotion.recorded",
  "proxy.set",
  "proxy.deleted",
  "webhook.set",
  "webhook.deleted",
  "webhook.replay",
  "failover.recorded",
  "oidc.user.set",
  "oidc.secret.set",
]);

/** Actor names Meridian itself writes; no user may bear them. */
export const RESERVED_ACTORS: readonly string[] = ["system", "config", "anonymous"];
/** The actor of a change made by a Meridian component holding the mesh key (a service token). */
export const SERVICE_ACTOR_PREFIX = "service:";

/** What the view knows when it applies the event. */
export interface EventFacts {
  /** The actor as a user of the view (absent: no such user). */
  actorUser?: { systemAdmin: boolean; roles: Readonly<Record<string, Role>> };
  /** user.set: the user it names, as the view holds it now (absent: never set or deleted). */
  targetUser?: { systemAdmin: boolean; operator?: boolean };
  /** user.set: who last wrote the user it names, even a deletion (absent: never written). */
  targetWrittenBy?: string;
  /** robot.set, robot.deleted, tokens.revoked of a robot: the robot it names, as the view holds it now. */
  targetRobot?: { grants: readonly RobotGrant[] };
  /** immutability.set, immutability.deleted: the rule of that name in force now (absent: none). */
  targetRule?: { repositories: string };
}

/** May `event.actor` have made `event`, given `facts`? (Events outside AUTHORITY_TYPES: always.) */
export function authorizeEvent(event: RegistryEvent, facts: EventFacts): Decision {
  if (!AUTHORITY_TYPES.has(event.type)) return { allowed: true, reason: "no right needed" };
  const actor = event.actor;
  if (actor.startsWith(SERVICE_ACTOR_PREFIX) && actor.length > SERVICE_ACTOR_PREFIX.length)
    return { allowed: true, reason: "a Meridian service" };
  if (actor === "config")
    return event.type === "policy.set" || event.type === "policy.deleted"
      ? { allowed: true, reason: "the configuration file" }
      : refuse(`config may not make ${event.type}`);
  if (actor === "system") {
    if (
      event.type === "user.set" &&
      event.name === "admin" &&
      event.systemAdmin &&
      (facts.targetWrittenBy === undefined || facts.targetWrittenBy === "system")
    )
      return { allowed: true, reason: "bootstrap of admin" };
    return refuse(`system may not make this ${event.type}`);
  }
  // Before the user check: an OIDC user is not a local user (node/data/projections/oidc-users.ts).
  if (event.type === "oidc.user.set" || event.type === "oidc.secret.set") return oidcRight(event, facts);
  const user = facts.actorUser;
  if (user === undefined) return refuse(`${actor} is not a user`);
  if (user.systemAdmin) return { allowed: true, reason: "system admin" };
  const manages = (project: string) => user.roles[project] === "projectAdmin";
  switch (event.type) {
    case "user.set":
      if (
        event.name === actor &&
        facts.targetUser !== undefined &&
        facts.targetUser.systemAdmin === event.systemAdmin &&
        (facts.targetUser.operator === true) === (event.operator === true)
      )
        return { allowed: true, reason: "own password" };
      return refuse(`${actor} may not change user ${event.name}`);
    case "robot.set": {
      const named = [...event.grants, ...(facts.targetRobot?.grants ?? [])];
      if (named.every((g) => manages(g.project)))
        return { allowed: true, reason: "project admin of every project the robot names" };
      return refuse(`${actor} does not administer every project ${event.name} names`);
    }
    case "tokens.revoked":
      // Anyone may end their own tokens; a robot's, whoever administers every project it names.
      if (event.name === actor) return { allowed: true, reason: "own tokens" };
      if (!event.name.startsWith("robot$")) return refuse(`${actor} may not revoke ${event.name}'s tokens`);
      if (facts.targetRobot?.grants.every((g) => manages(g.project)))
        return { allowed: true, reason: "project admin of every project the robot names" };
      return refuse(`${actor} does not administer every project ${event.name} names`);
    case "robot.deleted":
      // A robot this view has not seen yet: deleting nothing is harmless.
      if ((facts.targetRobot?.grants ?? []).every((g) => manages(g.project)))
        return { allowed: true, reason: "project admin of every project the robot names" };
      return refuse(`${actor} does not administer every project ${event.name} names`);
    case "immutability.set":
    case "immutability.deleted": {
      const globs = [
        facts.targetRule?.repositories,
        event.type === "immutability.set" ? event.repositories : undefined,
      ];
      const projects = globs.filter((g) => g !== undefined).map(ruleProject);
      // A deletion of a rule this view does not know: nothing shows whose it was.
      if (projects.length > 0 && projects.every((p) => p !== undefined && manages(p)))
        return { allowed: true, reason: "project admin of the rule's project" };
      return refuse(`${actor} does not administer the project of immutability rule ${event.name}`);
    }
    case "webhook.set":
    case "webhook.deleted":
    case "webhook.replay": {
      const project = event.type === "webhook.set" ? String(event.subscription.project) : event.project;
      if (manages(project)) return { allowed: true, reason: `project admin of ${project}` };
      return refuse(`${actor} does not administer ${project}`);
    }
    case "member.set":
      if (manages(event.project)) return { allowed: true, reason: `project admin of ${event.project}` };
      return refuse(`${actor} does not administer ${event.project}`);
    default:
      return refuse(`${event.type} needs a system admin`);
  }
}

/** oidc.user.set and oidc.secret.set (issue 18): the user themself; a system admin may only revoke a secret. */
function oidcRight(event: OidcEvent, facts: EventFacts): Decision {
  if (event.actor === event.name) return { allowed: true, reason: "the OIDC user themself" };
  if (event.type === "oidc.secret.set" && event.hash === null && facts.actorUser?.systemAdmin === true)
    return { allowed: true, reason: "system admin revoking a CLI secret" };
  return refuse(`${event.actor} may not make ${event.type} for ${event.name}`);
}

function refuse(reason: string): Decision {
  return { allowed: false, reason };
}

/**
 * The bytes an event's proof signs: the event as JSON with keys sorted at
 * every level, without `id`, `cause`, `srcSeq` and `proof`, with `write`
 * (the origin event's id) instead.
 */
export function proofPayload(event: RegistryEvent): Uint8Array {
  const { id: _id, cause: _cause, srcSeq: _srcSeq, proof: _proof, ...rest } = event;
  return new TextEncoder().encode(canonicalJson({ ...rest, write: writeIdOf(event) }));
}

/** JSON with object keys sorted at every level (undefined members dropped, as JSON.stringify does). */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value))
    return `[${value.map((v) => (v === undefined ? "null" : canonicalJson(v))).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}
