/**
 * Robot accounts through the admin API (mounted under /admin/v1 by
 * ../admin.ts, see ../identity-routes.ts for who may call what):
 *
 *   GET    /robots        {robots: [{name, expiresAt, expired, grants}]}
 *   POST   /robots        {name, grants, expiresAt? | expiresInDays?} → 201 {name, secret, expiresAt, grants, seq}
 *   DELETE /robots/:name  {name, seq}
 *   POST   /robots/:name/revoke-tokens  → {name, before, seq}   (the secret keeps working: rotate it to end that)
 *
 * A robot's secret is returned once, at creation; creating a robot of an
 * existing name rotates its secret (and needs the rights to delete the one
 * it replaces). Robots are named `robot$<name>` (the prefix is added when
 * missing); project admins may create robots whose grants stay inside
 * projects they administer.
 */
import { randomBytes } from "node:crypto";
import type { FastifyPluginAsync } from "fastify";
import {
  ACTIONS,
  type Action,
  globProblem,
  MAX_GLOB_LENGTH,
  type RobotGrant,
} from "../../../protocol/access.js";
import { AccessDeniedError, UnsupportedError } from "../../../protocol/errors.js";
import { PROJECT_NAME, ROBOT_NAME } from "../../../protocol/events.js";
import { hashPassword } from "../../auth/passwords.js";
import { access } from "../admin/access-gate.js";
import { Fixed, Type, want } from "../admin/schema.js";
import {
  committer,
  type IdentityRouteOptions,
  isSystemAdmin,
  mayManage,
  readJson,
  readsAll,
} from "./common.js";

/** Robot secrets are 32 random bytes: a cheap scrypt cost is ample (the cost guards guessable passwords). */
const ROBOT_COST = { log2N: 10, r: 8, p: 1 };
const DAY_MS = 86_400_000;

const GRANTS = "a list of {project, repositories, actions}";
const RobotBody = Fixed({
  name: want(Type.String(), "a robot name"),
  grants: want(
    Type.Array(
      Fixed({
        project: Type.String(),
        repositories: Type.Optional(Type.String()),
        actions: Type.Array(Type.String()),
      }),
      { minItems: 1 },
    ),
    GRANTS,
  ),
  expiresAt: Type.Optional(want(Type.String(), "a future ISO-8601 time")),
  expiresInDays: Type.Optional(want(Type.Number(), "a number of days from 0 to 3650")),
});

interface RobotRequest {
  name: string;
  grants: Array<{ project: string; repositories?: string; actions: string[] }>;
  expiresAt?: string;
  expiresInDays?: number;
}

export const robotRoutes: FastifyPluginAsync<IdentityRouteOptions> = async (admin, options) => {
  const view = options.registry.view.identity;
  const commit = committer(options);

  admin.get("/robots", access("projectAdmin"), async (req) => {
    const now = Date.now();
    const robots = (await view.robots()).filter(
      (r) => readsAll(req) || r.grants.every((g) => mayManage(req, g.project)),
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

  admin.post<{ Body: RobotRequest }>(
    "/robots",
    { ...access("projectAdmin"), schema: { body: RobotBody }, preValidation: readJson },
    async (req, reply) => {
      const body = req.body;
      const raw = body.name;
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
    },
  );

  admin.delete<{ Params: { name: string } }>("/robots/:name", access("projectAdmin"), async (req) => {
    const name = req.params.name;
    const robot = ROBOT_NAME.test(name) ? await view.robot(name) : undefined;
    if (robot === undefined) throw new UnsupportedError(`robot ${name} does not exist`);
    if (!isSystemAdmin(req) && !robot.grants.every((g) => mayManage(req, g.project)))
      throw new AccessDeniedError(`only a system admin may delete ${name}`);
    const seq = await commit(req, { type: "robot.deleted", name });
    return { name, seq };
  });

  admin.post<{ Params: { name: string } }>(
    "/robots/:name/revoke-tokens",
    access("projectAdmin"),
    async (req) => {
      const name = req.params.name;
      const robot = ROBOT_NAME.test(name) ? await view.robot(name) : undefined;
      if (robot === undefined) throw new UnsupportedError(`robot ${name} does not exist`);
      if (!isSystemAdmin(req) && !robot.grants.every((g) => mayManage(req, g.project)))
        throw new AccessDeniedError(`only a system admin may revoke ${name}'s tokens`);
      const before = new Date().toISOString();
      const seq = await commit(req, { type: "tokens.revoked", name, before });
      return { name, before, seq };
    },
  );
};

/** The grants' values (their shape is the schema's): project names, globs, actions. */
function parseGrants(value: RobotRequest["grants"]): RobotGrant[] {
  return value.map((grant, i) => {
    const where = `grants[${i}]`;
    if (!PROJECT_NAME.test(grant.project)) throw new UnsupportedError(`${where}.project: a project name`);
    const repositories = grant.repositories ?? "**";
    if (globProblem(repositories) !== undefined)
      throw new UnsupportedError(
        `${where}.repositories: a glob of repository paths ("**" for all) of at most ${MAX_GLOB_LENGTH} characters`,
      );
    if (
      grant.actions.length === 0 ||
      !grant.actions.every((a) => ACTIONS.includes(a as Action) && a !== "manage")
    )
      throw new UnsupportedError(`${where}.actions: some of pull, push, delete`);
    return { project: grant.project, repositories, actions: [...new Set(grant.actions as Action[])] };
  });
}

/** A robot's expiry: `expiresAt` (ISO-8601, in the future) or `expiresInDays` (default 30, at most 3650). */
function expiry(body: RobotRequest): string {
  if (body.expiresAt !== undefined) {
    const at = Date.parse(body.expiresAt);
    if (Number.isNaN(at) || at <= Date.now()) throw new UnsupportedError("expiresAt: a future ISO-8601 time");
    return new Date(at).toISOString();
  }
  const days = body.expiresInDays ?? 30;
  if (!(days > 0 && days <= 3650))
    throw new UnsupportedError("expiresInDays: a number of days from 0 to 3650");
  return new Date(Date.now() + days * DAY_MS).toISOString();
}
