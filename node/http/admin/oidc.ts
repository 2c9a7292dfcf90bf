/**
 * OIDC users and their CLI secrets (issue 18 item 2; mounted under /admin/v1
 * by ../admin.ts):
 *
 *   GET    /oidc/users               {users: [{name, issuer, groups, systemAdmin, operator, roles,
 *                                     signedIn, lastSignIn, cliSecret}]}       system admins, operators
 *   POST   /oidc/users/:name/secret  → {name, secret, setAt, seq}              the user themself
 *   DELETE /oidc/users/:name/secret  → {name, seq}                             the user; a system admin
 *
 * docker and podman cannot follow a browser sign-in, so an OIDC user creates
 * a CLI secret (as Harbor does) and uses it as the registry password with
 * their user name, for Basic and `/auth/token`. It is shown once, in the
 * POST's answer, and stored only as a KDF hash (node/auth/passwords.ts, the
 * robot secrets' cost: it is 32 random bytes, not a chosen password), in an
 * `oidc.secret.set` event, so every region has it. A POST when one exists
 * rotates it: the old one stops working in each region as it applies the
 * event (the authenticator re-reads a user at most every second and compares
 * the hash a verified password was checked against), and every token issued
 * for it ends (the token's credential fingerprint covers the hash).
 *
 * Who (choices the issue left open): creating or rotating needs the user
 * themself, signed in through the provider (the session, as a cookie or a
 * bearer) or with the current CLI secret (Basic: `meridian oidc secret
 * rotate`); nobody else ever sees a user's secret, so a system admin cannot
 * create one for someone. Revoking: the user, or a system admin (the view
 * checks the event again, protocol/event-authority.ts).
 */
import { randomBytes } from "node:crypto";
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { AccessDeniedError, UnsupportedError } from "../../../protocol/errors.js";
import { USER_NAME } from "../../../protocol/events.js";
import { hashPassword, ROBOT_SECRET_COST } from "../../auth/passwords.js";
import type { Registry } from "../../data/registry.js";
import { actorOf } from "../access.js";
import { access } from "./access-gate.js";

export interface OidcAdminOptions {
  registry: Registry;
  /** Told each user whose secret changed (the authenticator drops its cached copy). */
  changed?: (name: string) => void;
  /**
   * A change of the secret ends every token of its user, the session that
   * made it included: this renews that session (a new token, same expiry)
   * and answers its Set-Cookie (../oidc-routes.ts). Absent: OIDC is off.
   */
  renewSession?: (req: FastifyRequest) => Promise<string | undefined>;
}

export const oidcAdminRoutes: FastifyPluginAsync<OidcAdminOptions> = async (admin, options) => {
  const { registry } = options;
  const view = registry.view.oidc;
  const changed = options.changed ?? (() => undefined);

  admin.get("/oidc/users", async () => ({
    users: (await view.users()).map((u) => ({
      name: u.name,
      issuer: u.issuer,
      groups: u.groups,
      systemAdmin: u.systemAdmin,
      operator: u.operator,
      roles: u.roles,
      signedIn: u.session !== null,
      lastSignIn: u.at,
      cliSecret: u.hasSecret,
    })),
  }));

  admin.post<{ Params: { name: string } }>("/oidc/users/:name/secret", access("self"), async (req, reply) => {
    const wanted = req.params.name;
    if (req.identity.kind !== "user" || req.identity.name !== wanted)
      throw new AccessDeniedError("only the user themself may create or rotate their CLI secret");
    const name = await oidcUser(req);
    const secret = randomBytes(32).toString("base64url");
    const hash = await hashPassword(secret, ROBOT_SECRET_COST);
    const seq = await registry.commitAdmin({ type: "oidc.secret.set", name, hash }, actorOf(req.identity));
    changed(name);
    const setAt = (await view.secret(name))?.setAt;
    const renewed = await options.renewSession?.(req);
    if (renewed !== undefined) reply.header("set-cookie", renewed);
    return reply.header("cache-control", "no-store").send({ name, secret, setAt, seq });
  });

  admin.delete<{ Params: { name: string } }>(
    "/oidc/users/:name/secret",
    access("self"),
    async (req, reply) => {
      const s = req.identity.subject;
      const own = req.identity.kind === "user" && req.identity.name === req.params.name;
      if (!own && !(s.kind === "user" && s.systemAdmin))
        throw new AccessDeniedError("only the user or a system admin may revoke a CLI secret");
      const name = await oidcUser(req);
      const seq = await registry.commitAdmin(
        { type: "oidc.secret.set", name, hash: null },
        actorOf(req.identity),
      );
      changed(name);
      const renewed = own ? await options.renewSession?.(req) : undefined;
      if (renewed !== undefined) reply.header("set-cookie", renewed);
      return { name, seq };
    },
  );

  /** The route's user, who must have signed in through OIDC at least once. */
  async function oidcUser(req: FastifyRequest): Promise<string> {
    const name = (req.params as { name: string }).name;
    if (!USER_NAME.test(name) || (await view.user(name)) === undefined)
      throw new UnsupportedError(`${name} has never signed in through the identity provider`);
    return name;
  }
};
