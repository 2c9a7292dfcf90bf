/**
 * Identities through the admin API (issue 6), mounted under /admin/v1 with
 * the rest of it (./admin.ts), as fastify route plugins by aggregate: users
 * (identity/users.ts), robots (identity/robots.ts), projects and members
 * (identity/projects.ts). Every change is an admin event (protocol/events.ts),
 * so every region has it; secrets leave this process only as KDF hashes.
 *
 *   GET    /whoami                               {name, kind, systemAdmin, operator, roles}  anyone authenticated
 *   GET    /users                                {users: [{name, systemAdmin, operator, roles}]}
 *   PUT    /users/:name        {password?, oldPassword?, systemAdmin?, operator?}  → {name, systemAdmin, operator, seq}  a user may change their own password
 *   DELETE /users/:name                          {name, seq}                              never the last system admin
 *   GET    /robots                               {robots: [{name, expiresAt, expired, grants}]}
 *   POST   /robots             {name, grants, expiresAt? | expiresInDays?} → {name, secret, expiresAt, grants, seq}
 *   DELETE /robots/:name                         {name, seq}
 *   POST   /users/:name/revoke-tokens            {name, before, seq}                      a user may revoke their own
 *   POST   /robots/:name/revoke-tokens           {name, before, seq}                      project admins of its projects too
 *   GET    /projects                             {projects: [{name, public, members}]}
 *   PUT    /projects/:name     {public}          {name, public, seq}
 *   PUT    /projects/:name/members/:user  {role | null}  → {project, user, role, seq}     project admins too
 *
 * Who may call them: a system admin, except where the table says more
 * (the gate in admin/access-gate.ts reads each route's `config.access`; the
 * handlers check the finer condition). A robot's secret is returned once, at creation; creating
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
import type { FastifyPluginAsync } from "fastify";
import type { IdentityRouteOptions } from "./identity/common.js";
import { projectRoutes } from "./identity/projects.js";
import { robotRoutes } from "./identity/robots.js";
import { userRoutes } from "./identity/users.js";

export type { RouteAccess } from "./admin/access-gate.js";
export type { IdentityRouteOptions };

/**
 * The identity routes, on the admin API's context (its gate, schema
 * validator, error handler and audit hook apply): register it there.
 */
export const identityRoutes: FastifyPluginAsync<IdentityRouteOptions> = async (admin, options) => {
  await admin.register(userRoutes, options);
  await admin.register(robotRoutes, options);
  await admin.register(projectRoutes, options);
};
