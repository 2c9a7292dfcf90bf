/**
 * Identities through the admin API (issue 6), mounted under /admin/v1 with
 * the rest of it (./admin.ts). Every change is an admin event (protocol/events.ts),
 * so every region has it; secrets leave this process only as KDF hashes.
 *
 *   GET    /whoami                               {name, kind, systemAdmin, roles}        anyone authenticated
 *   GET    /users                                {users: [{name, systemAdmin, roles}]}
 *   PUT    /users/:name        {password?, oldPassword?, systemAdmin?}  → {name, systemAdmin, seq}  a user may change their own password
 *   DELETE /users/:name                          {name, seq}                              never the last system admin
 *   GET    /robots                               {robots: [{name, expiresAt, expired, grants}]}
 *   POST   /robots             {name, grants, expiresAt? | expiresInDays?} → {name, secret, expiresAt, grants, seq}
 *   DELETE /robots/:name                         {name, seq}
 *   GET    /projects                             {projects: [{name, public, members}]}
 *   PUT    /projects/:name     {public}          {name, public, seq}
 *   PUT    /projects/:name/members/:user  {role | null}  → {project, user, role, seq}     project admins too
 *
 * Who may call them: a system admin, except where the table says more
 * (the gate in ./admin.ts reads each route's `access`; the handlers check the
 * finer condition). A robot's secret is returned once, at creation; creating
 * a robot of an existing name rotates its secret. Robots are named
 * `robot$<name>` (the prefix is added when missing); project admins may
 * create robots whose grants stay inside projects they administer.
 *
 * Changing a password needs the old one (`oldPassword`), checked like a
 * login (limited and audited), unless a system admin changes another user's:
 * a stolen session alone cannot take an account over (finding 2). Every
 * "create or replace" needs the rights to delete what it replaces (finding
 * 8): a robot's replacement needs the rights to delete the robot it
 * replaces; users, projects and policies are replaced only by system admins,
 * memberships only within a project its admin administers. The names
 * Meridian records as actors (`system`, `config`, `anonymous`) are not user
 * names. The view re-checks every change when it applies it
 * (protocol/event-authority.ts).
 */
import { randomBytes } from "node:crypto";
import type { FastifyInstance, FastifyRequest } from "fastify";
import {
  ACTIONS,
  type Action,
  decide,
  globProblem,
  MAX_GLOB_LENGTH,
  ROLES,
  type RobotGrant,
  type Role,
} from "../../protocol/access.js";
import { AccessDeniedError, UnauthorizedError, UnsupportedError } from "../../protocol/errors.js";
import { RESERVED_ACTORS } from "../../protocol/event-authority.js";
import { type EventBody, PROJECT_NAME, ROBOT_NAME, USER_NAME } from "../../protocol/events.js";
import { hashPassword } from "../auth/passwords.js";
import type { Registry } from "../data/registry.js";
import { actorOf } from "./access.js";

/** Who may call a route beyond system admins (read by the admin gate). */
export type RouteAccess = "admin" | "self" | "projectAdmin" | "authenticated";

/** Robot secrets are 32 random bytes: a cheap scrypt cost is ample (the cost guards guessable passwords). */
const ROBOT_COST = { log2N: 10, r: 8, p: 1 };
const MIN_PASSWORD = 8;
const MAX_PASSWORD = 256;
const DAY_MS = 86_400_000;

export interface IdentityRouteOptions {
  /** Told the user, robot or project each change names (the authenticator drops its cached copy). */
  changed?: (name: string) => void;
  /** Check a user's current password like a login (throws when wrong); absent without auth. */
  checkPassword?: (req: FastifyRequest, name: string, password: string) => Promise<void>;
}

export async function identityRoutes(
  admin: FastifyInstance,
  reg: Registry,
  options: IdentityRouteOptions = {},
): Promise<void> {
  const view = reg.view;
  const changed = options.changed ?? (() => undefined);
  const commit = async (req: FastifyRequest, body: EventBody) => {
    const seq = await reg.commitAdmin(body, actorOf(req.identity));
    const named = body as { name?: string; user?: string; project?: string };
    for (const name of [named.name, named.user, named.project]) if (name !== undefined) changed(name);
    return seq;
  };
  const isSystemAdmin = (req: FastifyRequest) =>
    req.identity.subject.kind === "user" && req.identity.subject.systemAdmin;
  const mayManage = (req: FastifyRequest, project: string) =>
    decide(req.identity.subject, "manage", project, undefined, Date.now()).allowed;

  admin.get("/whoami", { config: { access: "authenticated" satisfies RouteAccess } }, async (req) => {
    const s = req.identity.subject;
    return {
      name: req.identity.name,
      kind: req.identity.kind,
      systemAdmin: s.kind === "user" && s.systemAdmin,
      roles: s.kind === "user" ? s.roles : {},
      ...(s.kind === "robot" ? { expiresAt: new Date(s.expiresAt).toISOString(), grants: s.grants } : {}),
    };
  });

  // ------------------------------------------------------------ users

  admin.get("/users", async () => ({
    users: await Promise.all(
      (await view.users()).map(async (u) => ({
        name: u.name,
        systemAdmin: u.systemAdmin,
        roles: await view.rolesOf(u.name),
      })),
    ),
  }));

  admin.put<{ Params: { name: string } }>(
    "/users/:name",
    { config: { access: "self" satisfies RouteAccess } },
    async (req) => {
      const name = req.params.name;
      if (!USER_NAME.test(name))
        throw new UnsupportedError(`user name "${name}": lower-case letters, digits and ._- (at most 63)`);
      if (RESERVED_ACTORS.includes(name))
        throw new UnsupportedError(
          `user name "${name}" is reserved (Meridian records its own changes under it)`,
        );
      const body = object(req.body);
      const existing = await view.user(name);
      if (!isSystemAdmin(req)) {
        // A user changing their own password, nothing else.
        if (req.identity.kind !== "user" || req.identity.name !== name)
          throw new AccessDeniedError("only a system admin may change other users");
        if (body.systemAdmin !== undefined && body.systemAdmin !== existing?.systemAdmin)
          throw new AccessDeniedError("only a system admin may grant or revoke system admin");
      }
      if (body.systemAdmin !== undefined && typeof body.systemAdmin !== "boolean")
        throw new UnsupportedError("systemAdmin: true or false");
      if (body.password === undefined && existing === undefined)
        throw new UnsupportedError("password: required for a new user");
      if (
        body.password !== undefined &&
        (typeof body.password !== "string" ||
          body.password.length < MIN_PASSWORD ||
          body.password.length > MAX_PASSWORD)
      )
        throw new UnsupportedError(`password: ${MIN_PASSWORD} to ${MAX_PASSWORD} characters`);
      // A password change needs the old password, except a system admin changing someone else's.
      const own = req.identity.kind === "user" && req.identity.name === name;
      if (body.password !== undefined && existing !== undefined && (own || !isSystemAdmin(req))) {
        if (typeof body.oldPassword !== "string" || body.oldPassword === "")
          throw new AccessDeniedError("oldPassword: the current password is required to change it");
        if (options.checkPassword !== undefined) {
          try {
            await options.checkPassword(req, name, body.oldPassword);
          } catch (err) {
            if (err instanceof UnauthorizedError) throw new AccessDeniedError("oldPassword: wrong password");
            throw err;
          }
        }
      }
      const systemAdmin = (body.systemAdmin as boolean | undefined) ?? existing?.systemAdmin ?? false;
      if (existing?.systemAdmin === true && !systemAdmin) await refuseLastAdmin(name);
      const passwordHash =
        body.password === undefined ? existing!.passwordHash : await hashPassword(body.password as string);
      const seq = await commit(req, { type: "user.set", name, passwordHash, systemAdmin });
      return { name, systemAdmin, seq };
    },
  );

  admin.delete<{ Params: { name: string } }>("/users/:name", async (req) => {
    const name = req.params.name;
    const existing = USER_NAME.test(name) ? await view.user(name) : undefined;
    if (existing === undefined) throw new UnsupportedError(`user ${name} does not exist`);
    if (existing.systemAdmin) await refuseLastAdmin(name);
    const seq = await commit(req, { type: "user.deleted", name });
    return { name, seq };
  });

  async function refuseLastAdmin(name: string) {
    const admins = (await view.users()).filter((u) => u.systemAdmin && u.name !== name);
    if (admins.length === 0) throw new AccessDeniedError(`${name} is the last system admin`);
  }

  // ------------------------------------------------------------ robots

  admin.get("/robots", { config: { access: "projectAdmin" satisfies RouteAccess } }, async (req) => {
    const now = Date.now();
    const robots = (await view.robots()).filter(
      (r) => isSystemAdmin(req) || r.grants.every((g) => mayManage(req, g.project)),
    );
    return {
      robots: robots.map((r) => ({
        name: r.name,
        expiresAt: r.expiresAt,
        expired: Date.parse(r.expiresAt) <= now,
        grants: r.grants,
      })),
    };
  });

  admin.post("/robots", { config: { access: "projectAdmin" satisfies RouteAccess } }, async (req, reply) => {
    const body = object(req.body);
    const raw = typeof body.name === "string" ? body.name : "";
    const name = raw.startsWith("robot$") ? raw : `robot$${raw}`;
    if (!ROBOT_NAME.test(name))
      throw new UnsupportedError(`robot name "${raw}": lower-case letters, digits and ._+- (at most 64)`);
    const grants = parseGrants(body.grants);
    if (!isSystemAdmin(req) && !grants.every((g) => mayManage(req, g.project)))
      throw new AccessDeniedError("a project admin may only grant within projects they administer");
    // Creating over an existing robot replaces it: that needs the rights to delete it.
    const replaced = await view.robot(name);
    if (
      replaced !== undefined &&
      !isSystemAdmin(req) &&
      !replaced.grants.every((g) => mayManage(req, g.project))
    )
      throw new AccessDeniedError(`only a system admin may replace ${name}`);
    const expiresAt = expiry(body);
    const secret = randomBytes(32).toString("base64url");
    const secretHash = await hashPassword(secret, ROBOT_COST);
    const seq = await commit(req, { type: "robot.set", name, secretHash, expiresAt, grants });
    return reply
      .status(201)
      .header("cache-control", "no-store")
      .send({ name, secret, expiresAt, grants, seq });
  });

  admin.delete<{ Params: { name: string } }>(
    "/robots/:name",
    { config: { access: "projectAdmin" satisfies RouteAccess } },
    async (req) => {
      const name = req.params.name;
      const robot = ROBOT_NAME.test(name) ? await view.robot(name) : undefined;
      if (robot === undefined) throw new UnsupportedError(`robot ${name} does not exist`);
      if (!isSystemAdmin(req) && !robot.grants.every((g) => mayManage(req, g.project)))
        throw new AccessDeniedError(`only a system admin may delete ${name}`);
      const seq = await commit(req, { type: "robot.deleted", name });
      return { name, seq };
    },
  );

  // ------------------------------------------------------------ projects

  admin.get("/projects", async () => ({
    projects: await Promise.all(
      (await view.projects()).map(async (p) => ({ ...p, members: await view.members(p.name) })),
    ),
  }));

  admin.put<{ Params: { name: string } }>("/projects/:name", async (req) => {
    const name = projectName(req.params.name);
    const body = object(req.body);
    if (typeof body.public !== "boolean") throw new UnsupportedError("public: true or false");
    const seq = await commit(req, { type: "project.set", name, public: body.public });
    return { name, public: body.public, seq };
  });

  admin.put<{ Params: { name: string; user: string } }>(
    "/projects/:name/members/:user",
    { config: { access: "projectAdmin" satisfies RouteAccess } },
    async (req) => {
      const project = projectName(req.params.name);
      const user = req.params.user;
      if (!isSystemAdmin(req) && !mayManage(req, project))
        throw new AccessDeniedError(`only a system admin or an admin of ${project} may change its members`);
      if ((await view.user(user)) === undefined) throw new UnsupportedError(`user ${user} does not exist`);
      const role = object(req.body).role;
      if (role !== null && !ROLES.includes(role as Role))
        throw new UnsupportedError(`role: one of ${ROLES.join(", ")}, or null to remove`);
      const seq = await commit(req, { type: "member.set", project, user, role: role as Role | null });
      return { project, user, role, seq };
    },
  );
}

function object(body: unknown): Record<string, unknown> {
  let value: unknown = body;
  if (typeof body === "string") {
    try {
      value = body.trim() === "" ? {} : JSON.parse(body);
    } catch {
      throw new UnsupportedError("request body: not JSON");
    }
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new UnsupportedError("request body: want a JSON object");
  return value as Record<string, unknown>;
}

function projectName(name: string): string {
  if (!PROJECT_NAME.test(name)) throw new UnsupportedError(`project name "${name}" is not valid`);
  return name;
}

function parseGrants(value: unknown): RobotGrant[] {
  if (!Array.isArray(value) || value.length === 0)
    throw new UnsupportedError("grants: a list of {project, repositories, actions}");
  return value.map((g, i) => {
    const grant = g as Partial<RobotGrant>;
    const where = `grants[${i}]`;
    if (typeof grant.project !== "string" || !PROJECT_NAME.test(grant.project))
      throw new UnsupportedError(`${where}.project: a project name`);
    const repositories = grant.repositories ?? "**";
    if (typeof repositories !== "string" || globProblem(repositories) !== undefined)
      throw new UnsupportedError(
        `${where}.repositories: a glob of repository paths ("**" for all) of at most ${MAX_GLOB_LENGTH} characters`,
      );
    if (
      !Array.isArray(grant.actions) ||
      grant.actions.length === 0 ||
      !grant.actions.every((a) => ACTIONS.includes(a as Action) && a !== "manage")
    )
      throw new UnsupportedError(`${where}.actions: some of pull, push, delete`);
    return { project: grant.project, repositories, actions: [...new Set(grant.actions)] };
  });
}

/** A robot's expiry: `expiresAt` (ISO-8601, in the future) or `expiresInDays` (default 30, at most 3650). */
function expiry(body: Record<string, unknown>): string {
  if (body.expiresAt !== undefined) {
    const at = typeof body.expiresAt === "string" ? Date.parse(body.expiresAt) : Number.NaN;
    if (Number.isNaN(at) || at <= Date.now()) throw new UnsupportedError("expiresAt: a future ISO-8601 time");
    return new Date(at).toISOString();
  }
  const days = body.expiresInDays ?? 30;
  if (typeof days !== "number" || !(days > 0 && days <= 3650))
    throw new UnsupportedError("expiresInDays: a number of days from 0 to 3650");
  return new Date(Date.now() + days * DAY_MS).toISOString();
}
