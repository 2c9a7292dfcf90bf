/**
 * Projects and their members through the admin API (mounted under
 * /admin/v1 by ../admin.ts, see ../identity-routes.ts for who may call what):
 *
 *   GET /projects                     {projects: [{name, public, members}]}
 *   PUT /projects/:name               {public} → {name, public, seq}
 *   PUT /projects/:name/members/:user {role | null} → {project, user, role, seq}   project admins too
 */
import type { FastifyPluginAsync } from "fastify";
import { ROLES, type Role } from "../../../protocol/access.js";
import { AccessDeniedError, UnsupportedError } from "../../../protocol/errors.js";
import { PROJECT_NAME } from "../../../protocol/events.js";
import { access } from "../admin/access-gate.js";
import { Fixed, Type, want } from "../admin/schema.js";
import { committer, type IdentityRouteOptions, isSystemAdmin, mayManage, readJson } from "./common.js";

const ProjectBody = Fixed({ public: want(Type.Boolean(), "true or false") });
const MemberBody = Fixed({
  role: want(
    Type.Union([Type.Enum([...ROLES]), Type.Null()]),
    `one of ${ROLES.join(", ")}, or null to remove`,
  ),
});

export const projectRoutes: FastifyPluginAsync<IdentityRouteOptions> = async (admin, options) => {
  const view = options.registry.view.identity;
  const commit = committer(options);

  admin.get("/projects", async () => ({
    projects: await Promise.all(
      (await view.projects()).map(async (p) => ({ ...p, members: await view.members(p.name) })),
    ),
  }));

  admin.put<{ Params: { name: string }; Body: { public: boolean } }>(
    "/projects/:name",
    { schema: { body: ProjectBody }, preValidation: readJson },
    async (req) => {
      const name = projectName(req.params.name);
      const seq = await commit(req, { type: "project.set", name, public: req.body.public });
      return { name, public: req.body.public, seq };
    },
  );

  admin.put<{ Params: { name: string; user: string }; Body: { role: Role | null } }>(
    "/projects/:name/members/:user",
    { ...access("projectAdmin"), schema: { body: MemberBody }, preValidation: readJson },
    async (req) => {
      const project = projectName(req.params.name);
      const user = req.params.user;
      if (!isSystemAdmin(req) && !mayManage(req, project))
        throw new AccessDeniedError(`only a system admin or an admin of ${project} may change its members`);
      if ((await view.user(user)) === undefined) throw new UnsupportedError(`user ${user} does not exist`);
      const role = req.body.role;
      const seq = await commit(req, { type: "member.set", project, user, role });
      return { project, user, role, seq };
    },
  );
};

function projectName(name: string): string {
  if (!PROJECT_NAME.test(name)) throw new UnsupportedError(`project name "${name}" is not valid`);
  return name;
}
