/**
 * NATS identities of a `meridian up` mesh and what each may do on each
 * region's nats-server (issue 10, finding 1). Every server `up` starts
 * requires one of these NKEY users; anonymous clients are refused.
 *
 *   <data>/nats-auth/            mode 0700, made once, kept across starts
 *     operator.seed              the operator (housekeeping, `meridian rebuild`, admin tooling)
 *     R-node.seed                region R's registry node(s) (event log and audit log)
 *     R-peer.seed                region R's control-plane peer
 *     R-worker.seed              region R's replication worker, known to EVERY region's server
 *
 * Seeds are mode 0600; servers only get public keys. Permissions (allow
 * lists: everything not listed is refused), on region S's server:
 *
 * - node of S: publish `meridian.S.>` (its events) and `meridian-audit.S`
 *   (its audit records); publish and subscribe `meridian-limits.S` (what
 *   each node let through under the rate limits, core NATS, node/rate-limits.ts); JetStream API for MERIDIAN_S and AUDIT_S only:
 *   create (when missing), info, message get, and ephemeral (ordered)
 *   consumers to read them (create, next, info, delete), never a worker's
 *   durable (`replicate-to-*`, denied by name) and never stream purge,
 *   delete, update or message delete.
 * - peer of S: read MERIDIAN_S (info, message get, ordered consumers); it
 *   appends nothing (failover decisions go through a node's admin API).
 * - worker of S: as the node for MERIDIAN_S (it appends replicas, alerts and
 *   run records), no audit stream.
 * - worker of R ≠ S: read only, through its own durable `replicate-to-R` on
 *   MERIDIAN_S: create/update, info, next, ack. No publish to `meridian.S.>`.
 * - operator: everything, including purge/delete/update of streams.
 *
 * Everyone subscribes only below its own inbox prefix `_INBOX_<identity>`
 * (the client's `inboxPrefix`, see node/data/nats-connect.ts), so no
 * identity can read another's replies (stored events, audit records);
 * nobody may subscribe to `_INBOX.>` or `>`, except the operator to
 * `meridian.>` and `meridian-audit.>`.
 *
 * What subjects cannot separate: a region's stream holds every event type
 * under one subject tree, and the worker of S must publish replicas of any
 * type (a `user.set` made in another region arrives as a replica), so the
 * worker's credential can append any event type to S's stream, and so can
 * the node's (its admin API makes identity events). Whether an identity or
 * policy event's actor could have made it is checked when the view applies
 * it (node/data/view.ts), not by NATS.
 *
 * Streams: `up` creates (and updates the limits of) MERIDIAN_S and AUDIT_S
 * as the operator before S's processes start. Nodes and workers keep the
 * right to create their stream when it is missing (a stream name can be
 * created only once, so this gives nothing while it exists).
 *
 * Not expressible as subject permissions: a consumer's settings. An identity
 * allowed to create a consumer could make it a push consumer delivering to
 * some subject; that only re-delivers events already stored, it forges none.
 *
 * Rotation: delete a seed file and restart `up`: a new key is made and every
 * server's config names the new public key (the old one stops working).
 * Outside `up`, the same identities and permissions can be given to any
 * nats-server (authorizationFor's output is its `authorization` block).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { nkeys } from "@nats-io/transport-node";
import { auditStreamName, auditSubject } from "../node/audit.js";
import { inboxPrefixOf } from "../node/data/nats-connect.js";
import { limitsSubject } from "../node/rate-limits.js";
import { streamName, streamSubjects } from "../protocol/events.js";
import { durableName } from "../replication/worker.js";

export type Role = "node" | "peer" | "worker";

export interface NatsIdentity {
  /** `operator`, or `<region>-<role>`. */
  name: string;
  seedFile: string;
  publicKey: string;
  inboxPrefix: string;
}

export interface NatsIdentities {
  dir: string;
  operator: NatsIdentity;
  /** By region, then role. */
  regions: Record<string, Record<Role, NatsIdentity>>;
}

const ROLES: readonly Role[] = ["node", "peer", "worker"];

/** Seeds for the operator and each region's node, peer and worker under `dir`, made when missing. */
export function ensureNatsIdentities(dir: string, regions: readonly string[]): NatsIdentities {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const identity = (name: string): NatsIdentity => {
    const seedFile = join(dir, `${name}.seed`);
    if (!existsSync(seedFile)) {
      const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
      // wx: two `up`s racing never replace each other's key.
      try {
        writeFileSync(seedFile, `${seed}\n`, { mode: 0o600, flag: "wx" });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
    }
    const seed = readFileSync(seedFile, "utf8").trim();
    const publicKey = nkeys.fromSeed(new TextEncoder().encode(seed)).getPublicKey();
    return { name, seedFile, publicKey, inboxPrefix: inboxPrefixOf(name) };
  };
  const out: NatsIdentities = { dir, operator: identity("operator"), regions: {} };
  for (const region of regions) {
    const roles = {} as Record<Role, NatsIdentity>;
    for (const role of ROLES) roles[role] = identity(`${region}-${role}`);
    out.regions[region] = roles;
  }
  return out;
}

export interface Permissions {
  publish: { allow: string[]; deny?: string[] };
  subscribe: { allow: string[] };
}

const API = "$JS.API";

/** Reading and (with `create`) creating `stream`, through ephemeral consumers only. */
function streamReader(stream: string, create: boolean, durables: readonly string[]): Permissions["publish"] {
  const allow = [
    `${API}.STREAM.INFO.${stream}`,
    `${API}.STREAM.MSG.GET.${stream}`,
    `${API}.DIRECT.GET.${stream}`,
    `${API}.DIRECT.GET.${stream}.>`,
    // Ordered consumers: CREATE.<stream>.<name>[.<filter>], then next/info/delete by name.
    `${API}.CONSUMER.CREATE.${stream}.>`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.*`,
    `${API}.CONSUMER.INFO.${stream}.*`,
    `${API}.CONSUMER.DELETE.${stream}.*`,
    // Reading every consumer's position (GC keeps what a durable has not acknowledged: node/data/gc.ts).
    `${API}.CONSUMER.LIST.${stream}`,
  ];
  if (create) allow.unshift(`${API}.STREAM.CREATE.${stream}`);
  // Workers' durables are theirs alone: no reading, acking, replacing or deleting them.
  const deny = durables.flatMap((d) => [
    `${API}.CONSUMER.CREATE.${stream}.${d}`,
    `${API}.CONSUMER.CREATE.${stream}.${d}.>`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.${d}`,
    `${API}.CONSUMER.DELETE.${stream}.${d}`,
  ]);
  return { allow, deny };
}

function merge(...parts: Permissions["publish"][]): Permissions["publish"] {
  const allow = parts.flatMap((p) => p.allow);
  const deny = parts.flatMap((p) => p.deny ?? []);
  return deny.length > 0 ? { allow, deny } : { allow };
}

/**
 * What `role` of `region` may do on `server`'s nats-server (see the header);
 * `regions` is the whole mesh (for the workers' durable names). Pure.
 */
export function permissionsFor(
  role: Role | "operator",
  region: string,
  server: string,
  regions: readonly string[],
): Permissions | undefined {
  const name = role === "operator" ? "operator" : `${region}-${role}`;
  const subscribe = { allow: [`${inboxPrefixOf(name)}.>`] };
  if (role === "operator")
    return {
      publish: { allow: [">"] },
      subscribe: { allow: [...subscribe.allow, "meridian.>", "meridian-audit.>"] },
    };
  const events = streamName(server);
  const durables = regions.filter((r) => r !== server).map(durableName);
  if (region !== server) {
    // Only a worker reaches another region's server, to read through its own durable.
    if (role !== "worker") return undefined;
    const d = durableName(region);
    return {
      publish: {
        allow: [
          `${API}.INFO`,
          `${API}.CONSUMER.DURABLE.CREATE.${events}.${d}`,
          `${API}.CONSUMER.CREATE.${events}.${d}`,
          `${API}.CONSUMER.CREATE.${events}.${d}.>`,
          `${API}.CONSUMER.INFO.${events}.${d}`,
          `${API}.CONSUMER.MSG.NEXT.${events}.${d}`,
          `$JS.ACK.${events}.${d}.>`,
        ],
      },
      subscribe,
    };
  }
  const info = { allow: [`${API}.INFO`] };
  if (role === "peer") return { publish: merge(info, streamReader(events, false, durables)), subscribe };
  const own = { allow: [streamSubjects(server)] };
  if (role === "worker")
    return { publish: merge(info, own, streamReader(events, true, durables)), subscribe };
  return {
    publish: merge(
      info,
      own,
      { allow: [auditSubject(server), limitsSubject(server)] },
      streamReader(events, true, durables),
      streamReader(auditStreamName(server), true, []),
    ),
    subscribe: { allow: [...subscribe.allow, limitsSubject(server)] },
  };
}

/**
 * The `authorization` block of `server`'s nats-server config: every identity
 * that may connect there, by public key, with its permissions.
 */
export function authorizationFor(
  identities: NatsIdentities,
  server: string,
): { users: Array<{ nkey: string; permissions: Permissions }> } {
  const regions = Object.keys(identities.regions);
  const users: Array<{ nkey: string; permissions: Permissions }> = [];
  const add = (id: NatsIdentity, p: Permissions | undefined) => {
    if (p !== undefined) users.push({ nkey: id.publicKey, permissions: p });
  };
  add(identities.operator, permissionsFor("operator", "", server, regions));
  for (const region of regions)
    for (const role of ROLES)
      add(identities.regions[region]![role], permissionsFor(role, region, server, regions));
  return { users };
}

/** The MERIDIAN_NATS_* settings a process signing in as `id` gets. */
export function natsClientEnv(id: NatsIdentity): Record<string, string> {
  return { MERIDIAN_NATS_SEED_FILE: id.seedFile, MERIDIAN_NATS_INBOX_PREFIX: id.inboxPrefix };
}
