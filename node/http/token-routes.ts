/**
 * The token endpoint (Docker's token authentication, as `docker login`,
 * podman and skopeo speak it), served by every node at `/auth/token`:
 *
 *   GET  /auth/token?service=S&scope=repository:NAME:pull,push[&scope=…][&account=U]
 *        with `Authorization: Basic …` (a user, or a robot and its secret) or none (anonymous)
 *   POST /auth/token   form: grant_type=password, username, password, service, scope (space-separated)
 *
 * The answer is `{token, access_token, expires_in, issued_at}`: a JWT for the
 * asked scopes cut down to what the identity may do (node/auth/authenticator.ts).
 * Bad credentials are 401 (a client's login fails), too many failed logins
 * 429 with Retry-After, another `service` or a malformed scope 400. Every
 * password checked is audited as `login` or `login.failed`. A bearer token
 * is refused (401): a token is never exchanged for another. The scope
 * `registry:admin:*` (a token for the admin API) is granted only here, only
 * when asked for, and only for a password or a robot's secret. Refresh tokens
 * are not issued: clients log in again with their credentials (a robot's
 * secret is its long-lived credential).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { UnauthorizedError, UnsupportedError } from "../../protocol/errors.js";
import type { Authenticator, Identity } from "../auth/authenticator.js";
import { type AuditSink, authFailureHeaders, loginRecord } from "./access.js";
import { handleError } from "./errors.js";
import { clientAddress } from "./forwarded.js";

export async function tokenRoutes(
  app: FastifyInstance,
  options: { authenticator: Authenticator; audit?: AuditSink; realm?: string },
): Promise<void> {
  const auth = options.authenticator;
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", { parseAs: "string", bodyLimit: 64 * 1024 }, (_req, body, done) =>
      done(null, body),
    );
    scope.setErrorHandler((err: Error, req, reply) => {
      authFailureHeaders({ authenticator: auth, realm: options.realm }, req, reply, err);
      handleError(err, req, reply);
    });

    const answer = async (
      reply: FastifyReply,
      identity: Identity,
      service: string | undefined,
      scopes: string[],
    ) => {
      if (service !== undefined && service !== auth.service)
        throw new UnsupportedError(`service "${service}" is not this registry's ("${auth.service}")`);
      const issued = await auth.issue(identity, scopes);
      return reply.header("cache-control", "no-store").send({
        token: issued.token,
        access_token: issued.token,
        expires_in: issued.expiresIn,
        issued_at: issued.issuedAt,
      });
    };
    const audited = (req: FastifyRequest, via: string) => (outcome: Parameters<typeof loginRecord>[0]) =>
      options.audit?.record(loginRecord(outcome, clientAddress(req), via));

    scope.get("/auth/token", async (req, reply) => {
      req.ociRoute = "token";
      const q = req.query as Record<string, string | string[] | undefined>;
      const list = (v: string | string[] | undefined) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
      // Credentials only: a bearer token never buys a token (finding 2).
      const identity = await auth.identify(
        req.headers.authorization,
        clientAddress(req),
        audited(req, "token"),
        {
          bearer: false,
        },
      );
      req.identity = identity;
      return answer(reply, identity, list(q.service)[0], list(q.scope));
    });

    scope.post("/auth/token", async (req, reply) => {
      req.ociRoute = "token";
      const form = new URLSearchParams(typeof req.body === "string" ? req.body : "");
      const grant = form.get("grant_type");
      if (grant !== "password")
        throw new UnsupportedError(`grant_type "${grant ?? ""}" is not supported (use password)`);
      const username = form.get("username") ?? "";
      const password = form.get("password") ?? "";
      if (username === "") throw new UnauthorizedError("username is required");
      const identity = await auth.login(username, password, clientAddress(req), audited(req, "token"));
      req.identity = identity;
      const scopes = (form.get("scope") ?? "").split(" ").filter((s) => s !== "");
      return answer(reply, identity, form.get("service") ?? undefined, scopes);
    });
  });
}
