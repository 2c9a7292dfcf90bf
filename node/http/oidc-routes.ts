/**
 * Signing people in through an OIDC provider (issue 18 item 2), served by
 * every node when the `oidc` settings are set (node/auth/oidc-config.ts):
 *
 *   GET  /auth/oidc/login[?next=/ui/]  → 302 to the provider (code flow, PKCE S256, state, nonce)
 *   GET  /auth/oidc/callback           ← the provider; signs in, → 302 to `next` (default /auth/oidc/me)
 *   GET  /auth/oidc/me                 who is signed in: {name, groups, systemAdmin, operator, roles,
 *                                      expiresAt, cliSecret: {set, setAt}, session}
 *   POST /auth/oidc/logout             ends the session here and everywhere, → 303 to the provider's
 *                                      end_session_endpoint (RP-initiated logout); with Accept:
 *                                      application/json, {signedOut, next} (the dashboard goes there)
 *
 * The session (a choice the issue left open): a token of the mesh's key, as
 * `/auth/token` issues, for the user with the admin scope, living as long as
 * the ID token (at most `oidc.sessionMaxSeconds`); no refresh token is kept
 * (none is ever stored), so the session simply ends with the ID token and
 * the user signs in again. It travels as a cookie, `meridian_session`:
 * HttpOnly, SameSite=Lax, Path=/, Secure when the redirect URL is https. A
 * cookie rather than a token the page keeps: the browser arrives from the
 * provider by a redirect, and an HttpOnly cookie is out of reach of scripts.
 * `cookieAuthorization` turns the cookie into `Authorization: Bearer` for
 * the admin API (/admin/), the dashboard's API (/ui/api/) and /auth/oidc/
 * only — never for /v2/ or /auth/token — and only when the request carries
 * no Authorization of its own. A write (not GET/HEAD) so authorized must
 * come from this origin (its Origin header, when the browser sends one): with
 * SameSite=Lax that keeps other sites from using the cookie. The same token
 * is in `/auth/oidc/me`'s answer (`session.token`) for a CLI to use as a bearer.
 *
 * Every sign-in is an `oidc.user.set` event (who, issuer and subject,
 * groups, the roles they grant, a new session id; never a token), committed
 * as the user: roles are the provider's groups' at this sign-in, so a group
 * that no longer grants a role takes it away now. Tokens carry a fingerprint
 * of the session id and the CLI secret (node/auth/oidc-subject.ts): a new
 * sign-in or the logout (the same event with `session: null`) ends every
 * earlier token in every region. A name that is a local user cannot sign in
 * through OIDC (403): the provider must not take over a local account.
 *
 * Errors: no flow cookie, a state or nonce that does not match, another
 * issuer, a code the provider refuses (expired, used) → 400 UNSUPPORTED and
 * nothing signed in; the provider unreachable → 503 UNAVAILABLE (CLI secrets
 * do not need it and keep working).
 */
import { randomBytes } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Counter, type Registry as MetricsRegistry } from "prom-client";
import {
  AccessDeniedError,
  IdentityProviderUnavailableError,
  UnauthorizedError,
  UnsupportedError,
} from "../../protocol/errors.js";
import type { Identity } from "../auth/authenticator.js";
import type { OidcClient } from "../auth/oidc-client.js";
import { oidcSubject } from "../auth/oidc-subject.js";
import type { Registry } from "../data/registry.js";
import type { AuditSink, HttpAuth } from "./access.js";
import { handleError } from "./errors.js";
import { clientAddress } from "./forwarded.js";

export const SESSION_COOKIE = "meridian_session";
const FLOW_COOKIE = "meridian_oidc_flow";
/** Paths a session cookie counts for (never /v2/ or /auth/token). */
const COOKIE_PATHS = ["/admin/", "/ui/api/", "/auth/oidc/"];

export interface OidcRouteOptions {
  registry: Registry;
  auth: HttpAuth;
  client: OidcClient;
  redirectUrl: string;
  sessionMaxSeconds: number;
  loginTimeoutSeconds: number;
  audit?: AuditSink;
  /** Where `meridian_oidc_sign_ins_total{outcome}` is registered. */
  metrics?: MetricsRegistry;
}

export async function oidcRoutes(app: FastifyInstance, options: OidcRouteOptions): Promise<void> {
  const { registry, client } = options;
  const authenticator = options.auth.authenticator;
  const attributes = cookieAttributes(options.redirectUrl);
  const signIns = new Counter({
    name: "meridian_oidc_sign_ins_total",
    help: "OIDC sign-ins completed at this node's callback: ok, refused (4xx: state, nonce, issuer, code, name), unavailable (the provider did not answer)",
    labelNames: ["outcome"],
    registers: options.metrics === undefined ? [] : [options.metrics],
  });

  await app.register(async (scope) => {
    scope.setErrorHandler((err: Error, req, reply) => handleError(err, req, reply));

    scope.get("/auth/oidc/login", async (req, reply) => {
      req.ociRoute = "oidc.login";
      const next = (req.query as { next?: unknown }).next;
      const target = typeof next === "string" && localPath(next) ? next : "/auth/oidc/me";
      const { url, flow } = await client.begin(target);
      return reply
        .header("cache-control", "no-store")
        .header(
          "set-cookie",
          `${FLOW_COOKIE}=${flow}; Path=/auth/oidc/; Max-Age=${options.loginTimeoutSeconds}; ${attributes}`,
        )
        .redirect(url, 302);
    });

    scope.get("/auth/oidc/callback", async (req, reply) => {
      req.ociRoute = "oidc.callback";
      const address = clientAddress(req);
      // The flow cookie is spent whatever happens: a callback is never replayed with it.
      reply.header("set-cookie", `${FLOW_COOKIE}=; Path=/auth/oidc/; Max-Age=0; ${attributes}`);
      reply.header("cache-control", "no-store");
      let signedIn: Awaited<ReturnType<OidcClient["finish"]>>;
      try {
        signedIn = await client.finish(new URL(req.url, "http://callback.invalid"), cookie(req, FLOW_COOKIE));
      } catch (err) {
        signIns.inc({ outcome: err instanceof IdentityProviderUnavailableError ? "unavailable" : "refused" });
        options.audit?.record({
          actor: "anonymous",
          kind: "user",
          action: "login.failed",
          address,
          status: 400,
          detail: `oidc: ${(err as Error).message}`.slice(0, 300),
        });
        throw err;
      }
      const { signIn, next } = signedIn;
      if ((await registry.view.identity.user(signIn.name)) !== undefined) {
        signIns.inc({ outcome: "refused" });
        throw new AccessDeniedError(
          `${signIn.name} is a local user: it cannot sign in through the identity provider`,
        );
      }
      const session = randomBytes(18).toString("base64url");
      await registry.commitAdmin(
        {
          type: "oidc.user.set",
          name: signIn.name,
          issuer: signIn.issuer,
          sub: signIn.sub,
          groups: signIn.groups,
          systemAdmin: signIn.systemAdmin,
          operator: signIn.operator,
          roles: signIn.roles,
          session,
        },
        signIn.name,
      );
      authenticator.forget(signIn.name);
      const identity = await identityOf(registry, signIn.name);
      const ttlSeconds = Math.max(
        1,
        Math.min(options.sessionMaxSeconds, Math.floor((signIn.expiresAt - Date.now()) / 1000)),
      );
      const issued = await authenticator.issue(identity, [], { session: { ttlSeconds } });
      signIns.inc({ outcome: "ok" });
      options.audit?.record({
        actor: signIn.name,
        kind: "user",
        action: "login",
        address,
        status: 200,
        detail: `oidc: groups ${signIn.groups.join(",") || "none"}`.slice(0, 300),
      });
      return reply
        .header("set-cookie", [
          `${FLOW_COOKIE}=; Path=/auth/oidc/; Max-Age=0; ${attributes}`,
          sessionCookie(options.redirectUrl, issued.token, ttlSeconds),
        ])
        .redirect(next, 302);
    });

    scope.get("/auth/oidc/me", async (req, reply) => {
      req.ociRoute = "oidc.me";
      const identity = await sessionOf(req);
      const user = await registry.view.oidc.user(identity.name);
      const secret = await registry.view.oidc.secret(identity.name);
      const s = identity.subject;
      return reply.header("cache-control", "no-store").send({
        name: identity.name,
        groups: user?.groups ?? [],
        systemAdmin: s.kind === "user" && s.systemAdmin,
        operator: s.kind === "user" && s.operator === true,
        roles: s.kind === "user" ? s.roles : {},
        cliSecret: { set: secret !== undefined, ...(secret === undefined ? {} : { setAt: secret.setAt }) },
        session: {
          token: req.headers.authorization!.slice("Bearer ".length),
          expiresAt: new Date(identity.claims!.expiresAt).toISOString(),
        },
      });
    });

    scope.post("/auth/oidc/logout", async (req, reply) => {
      req.ociRoute = "oidc.logout";
      let name: string | undefined;
      try {
        name = (await sessionOf(req)).name;
      } catch (err) {
        if (!(err instanceof UnauthorizedError)) throw err;
      }
      const user = name === undefined ? undefined : await registry.view.oidc.user(name);
      if (name !== undefined && user !== undefined && user.session !== null) {
        const { at: _at, subject, ...rest } = user;
        await registry.commitAdmin(
          { type: "oidc.user.set", name, ...rest, sub: subject, session: null },
          name,
        );
        authenticator.forget(name);
        options.audit?.record({
          actor: name,
          kind: "user",
          action: "admin",
          address: clientAddress(req),
          status: 200,
          detail: "oidc: signed out",
        });
      }
      const to = (await client.endSessionUrl()) ?? "/ui/";
      // The dashboard signs out with fetch (its CSP allows no form posts): it is told where to go.
      if ((req.headers.accept ?? "").includes("application/json"))
        return reply
          .header("cache-control", "no-store")
          .header("set-cookie", `${SESSION_COOKIE}=; Path=/; Max-Age=0; ${attributes}`)
          .send({ signedOut: true, next: to });
      return reply
        .header("cache-control", "no-store")
        .header("set-cookie", `${SESSION_COOKIE}=; Path=/; Max-Age=0; ${attributes}`)
        .redirect(to, 303);
    });
  });

  /** The OIDC session behind the request (its cookie, or a bearer): 401 without a live one. */
  async function sessionOf(req: FastifyRequest): Promise<Identity> {
    const authorization = req.headers.authorization;
    if (authorization === undefined || !authorization.startsWith("Bearer "))
      throw new UnauthorizedError("not signed in: GET /auth/oidc/login");
    const identity = await authenticator.identify(authorization, clientAddress(req));
    if (identity.claims?.admin !== true || (await registry.view.oidc.user(identity.name)) === undefined)
      throw new UnauthorizedError("not an OIDC session: GET /auth/oidc/login");
    return identity;
  }
}

/**
 * The session cookie as `Authorization: Bearer` (see the header): an
 * `onRequest` hook for the whole app, registered before every other.
 */
export function cookieAuthorization(app: FastifyInstance): void {
  app.addHook("onRequest", async (req: FastifyRequest, _reply: FastifyReply) => {
    if (req.headers.authorization !== undefined) return;
    const path = req.url;
    if (!COOKIE_PATHS.some((p) => path.startsWith(p))) return;
    const token = cookie(req, SESSION_COOKIE);
    if (token === undefined || token === "") return;
    if (req.method !== "GET" && req.method !== "HEAD") {
      const origin = req.headers.origin;
      if (origin !== undefined && hostOf(origin) !== req.headers.host)
        throw new AccessDeniedError("a signed-in session's cookie is not accepted from another site");
    }
    // req.headers is the raw request's: the dashboard's handler (./ui-routes.ts) reads it there.
    req.headers.authorization = `Bearer ${token}`;
  });
}

/** The session and flow cookies' attributes: Secure when the public URL is https. */
function cookieAttributes(redirectUrl: string): string {
  return `HttpOnly; SameSite=Lax${redirectUrl.startsWith("https://") ? "; Secure" : ""}`;
}

/** The Set-Cookie of a session token living `ttlSeconds` (the callback's, and a rotation's renewal). */
export function sessionCookie(redirectUrl: string, token: string, ttlSeconds: number): string {
  return `${SESSION_COOKIE}=${token}; Path=/; Max-Age=${ttlSeconds}; ${cookieAttributes(redirectUrl)}`;
}

/** A path on this server (no scheme, no host, no `//` or `\`: never an open redirect). */
function localPath(next: string): boolean {
  return /^\/(?![/\\])[^\s\\]*$/.test(next) && next.length <= 512;
}

function hostOf(origin: string): string | undefined {
  try {
    return new URL(origin).host;
  } catch {
    return undefined;
  }
}

/** One cookie's value from the request's Cookie header. */
function cookie(req: FastifyRequest, name: string): string | undefined {
  const header = req.headers.cookie;
  if (header === undefined) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * After a user changed their own CLI secret with their session (which that
 * change ended: the token's fingerprint covers the secret's hash), a new
 * session token of the same expiry, as a Set-Cookie; undefined when the
 * request did not come with a session.
 */
export function renewSession(auth: HttpAuth, registry: Registry, redirectUrl: string) {
  return async (req: FastifyRequest): Promise<string | undefined> => {
    const claims = req.identity.claims;
    if (req.identity.via !== "bearer" || claims?.admin !== true || claims.kind !== "user") return undefined;
    const ttlSeconds = Math.floor((claims.expiresAt - Date.now()) / 1000);
    if (ttlSeconds < 1) return undefined;
    const identity = await identityOf(registry, req.identity.name);
    const issued = await auth.authenticator.issue(identity, [], { session: { ttlSeconds } });
    return sessionCookie(redirectUrl, issued.token, ttlSeconds);
  };
}

/** The identity of an OIDC user just signed in (as the authenticator will see it). */
async function identityOf(registry: Registry, name: string): Promise<Identity> {
  const stored = await oidcSubject(registry.view, name);
  if (stored === undefined) throw new UnsupportedError(`${name}: the sign-in was not recorded`);
  return { name, kind: "user", subject: stored.subject, via: "basic", cred: stored.cred };
}
