/**
 * Users through the admin API (mounted under /admin/v1 by ../admin.ts, see
 * ../identity-routes.ts for who may call what):
 *
 *   GET    /whoami               {name, kind, systemAdmin, operator, roles}    anyone authenticated
 *   GET    /users                {users: [{name, systemAdmin, operator, roles}]}
 *   PUT    /users/:name          {password?, oldPassword?, systemAdmin?, operator?} → {name, systemAdmin, operator, seq}
 *   DELETE /users/:name          {name, seq}                          never the last system admin
 *   POST   /users/:name/revoke-tokens  → {name, before, seq}             system admin, or the user themself
 *
 * Revoking a user's tokens (issue 18) ends every token issued to that name
 * until now, in every region once the event arrives (the authenticator
 * re-reads a subject at least every second). A system admin may revoke the
 * tokens of a name with no local user: directory (LDAP, OIDC) users sign in
 * without one.
 */
import type { FastifyPluginAsync } from "fastify";
import { AccessDeniedError, UnauthorizedError, UnsupportedError } from "../../../protocol/errors.js";
import { RESERVED_ACTORS } from "../../../protocol/event-authority.js";
import { USER_NAME } from "../../../protocol/events.js";
import { hashPassword } from "../../auth/passwords.js";
import { access } from "../admin/access-gate.js";
import { Fixed, Type, want } from "../admin/schema.js";
import { committer, type IdentityRouteOptions, isSystemAdmin, readJson } from "./common.js";

const MIN_PASSWORD = 8;
const MAX_PASSWORD = 256;

const UserBody = Fixed({
  password: Type.Optional(
    want(
      Type.String({ minLength: MIN_PASSWORD, maxLength: MAX_PASSWORD }),
      `${MIN_PASSWORD} to ${MAX_PASSWORD} characters`,
    ),
  ),
  oldPassword: Type.Optional(want(Type.String(), "the current password")),
  systemAdmin: Type.Optional(want(Type.Boolean(), "true or false")),
  operator: Type.Optional(want(Type.Boolean(), "true or false")),
});

interface UserChange {
  password?: string;
  oldPassword?: string;
  systemAdmin?: boolean;
  operator?: boolean;
}

export const userRoutes: FastifyPluginAsync<IdentityRouteOptions> = async (admin, options) => {
  const view = options.registry.view.identity;
  const commit = committer(options);

  admin.get("/whoami", access("authenticated"), async (req) => {
    const s = req.identity.subject;
    return {
      name: req.identity.name,
      kind: req.identity.kind,
      systemAdmin: s.kind === "user" && s.systemAdmin,
      operator: s.kind === "user" && s.operator === true,
      roles: s.kind === "user" ? s.roles : {},
      ...(s.kind === "robot" ? { expiresAt: new Date(s.expiresAt).toISOString(), grants: s.grants } : {}),
    };
  });

  admin.get("/users", async () => ({
    users: await Promise.all(
      (await view.users()).map(async (u) => ({
        name: u.name,
        systemAdmin: u.systemAdmin,
        operator: u.operator === true,
        roles: await view.rolesOf(u.name),
      })),
    ),
  }));

  admin.put<{ Params: { name: string }; Body: UserChange }>(
    "/users/:name",
    { ...access("self"), schema: { body: UserBody }, preValidation: readJson },
    async (req) => {
      const name = req.params.name;
      if (!USER_NAME.test(name))
        throw new UnsupportedError(`user name "${name}": lower-case letters, digits and ._- (at most 63)`);
      if (RESERVED_ACTORS.includes(name))
        throw new UnsupportedError(
          `user name "${name}" is reserved (Meridian records its own changes under it)`,
        );
      const body = req.body;
      const existing = await view.user(name);
      if (!isSystemAdmin(req)) {
        // A user changing their own password, nothing else.
        if (req.identity.kind !== "user" || req.identity.name !== name)
          throw new AccessDeniedError("only a system admin may change other users");
        if (body.systemAdmin !== undefined && body.systemAdmin !== existing?.systemAdmin)
          throw new AccessDeniedError("only a system admin may grant or revoke system admin");
        if (body.operator !== undefined && body.operator !== (existing?.operator === true))
          throw new AccessDeniedError("only a system admin may grant or revoke operator");
      }
      if (body.password === undefined && existing === undefined)
        throw new UnsupportedError("password: required for a new user");
      // A password change needs the old password, except a system admin changing someone else's.
      const own = req.identity.kind === "user" && req.identity.name === name;
      if (body.password !== undefined && existing !== undefined && (own || !isSystemAdmin(req))) {
        if (body.oldPassword === undefined || body.oldPassword === "")
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
      const systemAdmin = body.systemAdmin ?? existing?.systemAdmin ?? false;
      if (existing?.systemAdmin === true && !systemAdmin) await refuseLastAdmin(name);
      const passwordHash =
        body.password === undefined ? existing!.passwordHash : await hashPassword(body.password);
      const operator = body.operator ?? existing?.operator === true;
      const seq = await commit(req, {
        type: "user.set",
        name,
        passwordHash,
        systemAdmin,
        ...(operator ? { operator } : {}),
      });
      return { name, systemAdmin, operator, seq };
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

  admin.post<{ Params: { name: string } }>("/users/:name/revoke-tokens", access("self"), async (req) => {
    const name = req.params.name;
    if (!USER_NAME.test(name))
      throw new UnsupportedError(`user name "${name}": lower-case letters, digits and ._- (at most 63)`);
    if (!isSystemAdmin(req) && !(req.identity.kind === "user" && req.identity.name === name))
      throw new AccessDeniedError("only a system admin may revoke another user's tokens");
    const before = new Date().toISOString();
    const seq = await commit(req, { type: "tokens.revoked", name, before });
    return { name, before, seq };
  });

  async function refuseLastAdmin(name: string) {
    const admins = (await view.users()).filter((u) => u.systemAdmin && u.name !== name);
    if (admins.length === 0) throw new AccessDeniedError(`${name} is the last system admin`);
  }
};
