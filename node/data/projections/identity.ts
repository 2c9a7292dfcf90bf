/**
 * The identity projection: users, robot accounts, projects and memberships
 * (issue 6), as the log's user.*, robot.*, project.set and member.set events
 * leave them. Every object is a last-writer-wins register, a deletion being
 * a write of null.
 *
 * Keys (values are JSON):
 *   u!<user>              a user                 {value: UserRecord | null, w}
 *   x!<robot>             a robot account        {value: RobotRecord | null, w}
 *   j!<project>           a project's visibility {value: {public}, w}
 *   g!<project>!<user>    a membership           {value: {role} | null, w}
 *   D!<user>              the user's latest deletion {w}: memberships older than it are void
 *   tr!<user or robot>    tokens issued at or before this are revoked {before: ms since the epoch}
 *                         (the latest `before` of its tokens.revoked events: a maximum, so the
 *                         outcome does not depend on arrival order)
 *
 * A user's deletion removes their memberships (finding 11): it nulls every
 * membership register older than it and stays as a barrier (D!), so a
 * membership written before the deletion that arrives after it (another
 * region's stream) is void too, and a user re-created under the same name
 * starts with no roles. Deterministic: the outcome depends on the writes'
 * order, not their arrival order.
 *
 * It also answers the facts the event-authority check needs
 * (`authorityFacts`), read through the pending batch so an event sees the
 * identities applied just before it in the same batch.
 */
import type { RobotGrant, Role } from "../../../protocol/access.js";
import type { EventFacts } from "../../../protocol/event-authority.js";
import type { RegistryEvent } from "../../../protocol/events.js";
import type { Write } from "../../../protocol/registers.js";
import { oidcUserIn } from "./oidc-users.js";
import {
  Batch,
  getJson,
  type Handlers,
  olderWrite,
  type Projection,
  putRegister,
  type ViewDb,
} from "./store.js";

export interface UserRecord {
  passwordHash: string;
  systemAdmin: boolean;
  /** A read-only operator (absent: not one). */
  operator?: boolean;
}

export interface RobotRecord {
  secretHash: string;
  expiresAt: string;
  grants: RobotGrant[];
}

/** Reads of the identity projection (committed state); undefined means absent or deleted. */
export interface IdentityReads {
  user(name: string): Promise<UserRecord | undefined>;
  /** Every user, by name. */
  users(): Promise<Array<{ name: string } & UserRecord>>;
  robot(name: string): Promise<RobotRecord | undefined>;
  /** Every robot account, by name. */
  robots(): Promise<Array<{ name: string } & RobotRecord>>;
  /** Every configured project, by name. */
  projects(): Promise<Array<{ name: string; public: boolean }>>;
  /** A project's settings; undefined for a project never configured (private). */
  project(name: string): Promise<{ public: boolean } | undefined>;
  /** A user's roles, by project. */
  rolesOf(user: string): Promise<Record<string, Role>>;
  /** A project's members and their roles. */
  members(project: string): Promise<Array<{ user: string; role: Role }>>;
  /** Tokens of this user or robot issued at or before this time (ms) are revoked; undefined: none. */
  tokensRevokedBefore(name: string): Promise<number | undefined>;
}

export class IdentityProjection implements Projection, IdentityReads {
  readonly #db: ViewDb;

  constructor(db: ViewDb) {
    this.#db = db;
  }

  readonly handlers: Handlers = {
    "user.set": (batch, e, w) =>
      putRegister(batch, `u!${e.name}`, w, () => ({
        passwordHash: e.passwordHash,
        systemAdmin: e.systemAdmin,
        // Stored only when set: users written before issue 16 keep their exact layout.
        ...(e.operator === true ? { operator: true } : {}),
      })),
    "user.deleted": async (batch, e, w) => {
      await putRegister(batch, `u!${e.name}`, w, () => null);
      await this.#deleteMemberships(batch, e.name, w);
    },
    "robot.set": (batch, e, w) =>
      putRegister(batch, `x!${e.name}`, w, () => ({
        secretHash: e.secretHash,
        expiresAt: e.expiresAt,
        grants: e.grants,
      })),
    "robot.deleted": (batch, e, w) => putRegister(batch, `x!${e.name}`, w, () => null),
    "tokens.revoked": async (batch, e) => {
      const key = `tr!${e.name}`;
      const before = Date.parse(e.before);
      const current = await getJson<{ before: number }>(batch, key);
      if (current === undefined || current.before < before) batch.put(key, JSON.stringify({ before }));
    },
    "project.set": (batch, e, w) => putRegister(batch, `j!${e.name}`, w, () => ({ public: e.public })),
    "member.set": async (batch, e, w) => {
      // A membership older than the user's deletion died with that user.
      const deleted = await getJson<{ w: Write }>(batch, `D!${e.user}`);
      const voided = deleted !== undefined && olderWrite(w, deleted.w);
      await putRegister(batch, `g!${e.project}!${e.user}`, voided ? deleted.w : w, () =>
        e.role === null || voided ? null : { role: e.role },
      );
    },
  };

  /** A user's deletion: a barrier for their memberships, and every older one removed. */
  async #deleteMemberships(batch: Batch, user: string, w: Write): Promise<void> {
    const key = `D!${user}`;
    const current = await getJson<{ w: Write }>(batch, key);
    if (current !== undefined && !olderWrite(current.w, w)) return;
    batch.put(key, JSON.stringify({ w }));
    for (const [suffix, raw] of await batch.entriesUnder("g!")) {
      if (suffix.slice(suffix.lastIndexOf("!") + 1) !== user) continue;
      const member = JSON.parse(raw) as { value: unknown; w: Write };
      if (olderWrite(member.w, w)) batch.put(`g!${suffix}`, JSON.stringify({ value: null, w }));
    }
  }

  /** What protocol/event-authority.ts needs to judge `e`, as `batch` (pending writes included) holds it. */
  async authorityFacts(batch: Batch, e: RegistryEvent): Promise<EventFacts> {
    const facts: EventFacts = {};
    const actor = await getJson<{ value: UserRecord | null }>(batch, `u!${e.actor}`);
    if (actor?.value != null)
      facts.actorUser = { systemAdmin: actor.value.systemAdmin, roles: await rolesIn(batch, e.actor) };
    else {
      // An OIDC user (issue 18): the roles its provider's groups granted at its latest sign-in.
      const oidc = await oidcUserIn(batch, e.actor);
      if (oidc !== undefined) facts.actorUser = { systemAdmin: oidc.systemAdmin, roles: oidc.roles };
    }
    if (e.type === "user.set") {
      const target = await getJson<{ value: UserRecord | null; w: Write }>(batch, `u!${e.name}`);
      if (target?.value != null)
        facts.targetUser = {
          systemAdmin: target.value.systemAdmin,
          operator: target.value.operator === true,
        };
      if (target !== undefined) facts.targetWrittenBy = target.w.actor;
    }
    if (e.type === "robot.set" || e.type === "robot.deleted" || e.type === "tokens.revoked") {
      const robot = await getJson<{ value: RobotRecord | null }>(batch, `x!${e.name}`);
      if (robot?.value != null) facts.targetRobot = { grants: robot.value.grants };
    }
    return facts;
  }

  async user(name: string): Promise<UserRecord | undefined> {
    return (await getJson<{ value: UserRecord | null }>(this.#db, `u!${name}`))?.value ?? undefined;
  }

  async users(): Promise<Array<{ name: string } & UserRecord>> {
    return this.#liveUnder<UserRecord>("u!");
  }

  async tokensRevokedBefore(name: string): Promise<number | undefined> {
    return (await getJson<{ before: number }>(this.#db, `tr!${name}`))?.before;
  }

  async robot(name: string): Promise<RobotRecord | undefined> {
    return (await getJson<{ value: RobotRecord | null }>(this.#db, `x!${name}`))?.value ?? undefined;
  }

  async robots(): Promise<Array<{ name: string } & RobotRecord>> {
    return this.#liveUnder<RobotRecord>("x!");
  }

  async projects(): Promise<Array<{ name: string; public: boolean }>> {
    const out: Array<{ name: string; public: boolean }> = [];
    for (const [name, raw] of await new Batch(this.#db).entriesUnder("j!")) {
      const { value } = JSON.parse(raw) as { value: { public: boolean } };
      out.push({ name, public: value.public });
    }
    return out;
  }

  async project(name: string): Promise<{ public: boolean } | undefined> {
    return (await getJson<{ value: { public: boolean } }>(this.#db, `j!${name}`))?.value;
  }

  async rolesOf(user: string): Promise<Record<string, Role>> {
    return rolesIn(new Batch(this.#db), user);
  }

  async members(project: string): Promise<Array<{ user: string; role: Role }>> {
    const out: Array<{ user: string; role: Role }> = [];
    for (const [user, raw] of await new Batch(this.#db).entriesUnder(`g!${project}!`)) {
      const { value } = JSON.parse(raw) as { value: { role: Role } | null };
      if (value !== null) out.push({ user, role: value.role });
    }
    return out;
  }

  async #liveUnder<T>(prefix: string): Promise<Array<{ name: string } & T>> {
    const out: Array<{ name: string } & T> = [];
    for (const [name, raw] of await new Batch(this.#db).entriesUnder(prefix)) {
      const { value } = JSON.parse(raw) as { value: T | null };
      if (value !== null) out.push({ name, ...value });
    }
    return out;
  }
}

/** A user's roles, by project, as `source` holds them. */
async function rolesIn(source: Batch, user: string): Promise<Record<string, Role>> {
  // Memberships are keyed by project first (listing a project's members is a prefix scan).
  const out: Record<string, Role> = {};
  for (const [suffix, raw] of await source.entriesUnder("g!")) {
    const cut = suffix.lastIndexOf("!");
    if (suffix.slice(cut + 1) !== user) continue;
    const { value } = JSON.parse(raw) as { value: { role: Role } | null };
    if (value !== null) out[suffix.slice(0, cut)] = value.role;
  }
  return out;
}
