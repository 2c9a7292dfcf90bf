/**
 * The dashboard's HTTP side, one handler for both servers that serve it:
 * the front door (control-plane/front-door-ui.ts: the whole mesh) and every
 * registry node (node/http/ui-routes.ts: its own region). They may not
 * import each other (import-rules.jsonc), and this is a view of the mesh as
 * ./mesh-status.ts is, so it lives in this leaf both import. Raw
 * `IncomingMessage`/`ServerResponse`: the front door is a plain node:http
 * server, and the node's fastify route hands its raw request over.
 *
 *   GET  /ui/                 the page (ui/index.html; /ui redirects here)
 *   GET  /ui/NAME.js|.css|.svg its assets (a fixed list of flat names: no path is ever joined from input)
 *   GET  /ui/api/state        the state now (./dashboard-state.ts DashboardState)
 *   GET  /ui/api/events       Server-Sent Events: `event: state` every second (./dashboard-feed.ts)
 *   GET  /ui/api/session      public: `{auth, search, activity, signIn?}`, whether the page must sign in, what it
 *                             may offer (`signIn`: a node's OIDC sign-in URL, issue 18: the page offers it and
 *                             then relies on the session cookie, which the node turns into credentials;
 *                             `signedIn`: whether this request's cookie is admitted)
 *   POST /ui/api/session      a session token for the event stream (with auth)
 *   GET  /ui/api/search?ref=  where REPO:TAG or REPO@DIGEST is, region by region
 *   GET  /ui/api/activity     recent conflicts, alerts, failed replications, policy and GC runs
 *
 * Assets are public (they hold no data); every response carries a strict
 * Content-Security-Policy (scripts, styles, images and connections from the
 * origin only, no inline script, no framing), `X-Content-Type-Options:
 * nosniff`, `Referrer-Policy: no-referrer`; the API answers `Cache-Control:
 * no-store`. Nothing is loaded from anywhere else (no CDN): the page works
 * offline and leaks nothing to third parties.
 *
 * Authentication (when the server runs with it): every /ui/api/ request
 * needs a system admin or a read-only operator. The server does not judge
 * credentials itself: `authorize` asks an admin API (the front door an up
 * region's, a node its own) with the caller's Authorization, so the rule is
 * the admin API's GET rule wherever it changes (401 without or with bad
 * credentials, 403 for a user without the role; a token not meant for the
 * admin API, e.g. a pull token, is refused there too). The page's sign-in
 * form keeps Basic credentials in sessionStorage (gone with the tab) and
 * sends them on each fetch; passwords verified once are cached by the
 * regions (node/auth/authenticator.ts), so this costs no KDF per request.
 * An EventSource cannot send headers, so `POST /ui/api/session` (with the
 * Authorization) returns a token (./dashboard-feed.ts SessionTokens: bound
 * to the caller, this process, SESSION_TTL_MS) that `GET
 * /ui/api/events?session=TOKEN` presents; the stream ends when the token
 * expires and the page asks for a new one. A query parameter rather than a
 * cookie: cookies are shared by every port of a host, so the front door's
 * and a node's dashboards on one machine would overwrite each other's; the
 * token is good only for the event stream, on this process, for minutes,
 * and neither server logs request URLs of /ui/. The 401 challenge is
 * `MeridianDashboard`, not `Basic`: the page shows its own form, not the
 * browser's prompt.
 */
import { existsSync, readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ociErrorFor } from "../protocol/errors.js";
import { ociErrorBody } from "../protocol/oci-errors.js";
import { type DashboardFeed, SessionTokens, SseClients, subjectOf } from "./dashboard-feed.js";

/** What an admin API said of the caller's credentials. */
export type AccessVerdict = { ok: true } | { ok: false; status: 401 | 403 | 429 | 503; message: string };

/** The verdict of an admin API's answer to a GET with the caller's credentials. */
export function verdictOf(status: number): AccessVerdict {
  if (status === 200) return { ok: true };
  if (status === 401) return { ok: false, status, message: "the credentials were not accepted" };
  if (status === 403)
    return { ok: false, status, message: "the dashboard needs a system admin or an operator" };
  if (status === 429) return { ok: false, status, message: "too many failed sign-ins; wait a minute" };
  return { ok: false, status: 503, message: `the credentials could not be checked (${status}); retry` };
}

export interface DashboardHttpDeps {
  feed: DashboardFeed;
  /** Undefined: the server runs without authentication (everyone sees the data, as the registry is open). */
  authorize?: (authorization: string, address: string) => Promise<AccessVerdict>;
  /** Where REPO:TAG or REPO@DIGEST is (mesh-client/locate.ts); undefined: not available here. */
  search?: (reference: string, authorization: string | undefined) => Promise<unknown>;
  /** Recent activity (mesh-client/activity.ts); undefined: not available here. */
  activity?: (authorization: string | undefined) => Promise<unknown>;
  /** Where people sign in through an identity provider (a node with OIDC: /auth/oidc/login…); none: not offered. */
  signIn?: string;
  /** The event stream's session tokens (default: a key of this handler's own). */
  sessions?: SessionTokens;
  /** The caps on open event streams (default SSE_PER_ADDRESS, SSE_TOTAL). */
  sse?: SseClients;
  /** The assets' folder (default: uiDirectory()). */
  uiDir?: string;
  onError?: (err: unknown, what: string) => void;
}

/** The page's files (flat names; nothing else under /ui/ is served). */
const ASSETS: Record<string, string> = {
  "index.html": "text/html; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "matrix.js": "text/javascript; charset=utf-8",
  "health.js": "text/javascript; charset=utf-8",
  "activity.js": "text/javascript; charset=utf-8",
  "search.js": "text/javascript; charset=utf-8",
  "format.js": "text/javascript; charset=utf-8",
  "style.css": "text/css; charset=utf-8",
  "icon.svg": "image/svg+xml",
};

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
} as const;

/** A reference (REPO:TAG or REPO@DIGEST) longer than this is refused before anything is asked. */
const MAX_REFERENCE = 512;

/** Whether a request path belongs to the dashboard. */
export function isDashboardPath(path: string): boolean {
  return path === "/ui" || path.startsWith("/ui/");
}

/**
 * The repository's `ui/` folder, found from the source tree or from dist/
 * (as mesh-client/proto.ts finds the .proto files): mesh-client/ and
 * dist/mesh-client/ are one and two levels below the root.
 */
export function uiDirectory(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const candidate of [join(here, "..", "ui"), join(here, "..", "..", "ui")]) {
    if (existsSync(join(candidate, "index.html"))) return candidate;
  }
  throw new Error("ui/index.html not found");
}

export function createDashboardHandler(
  deps: DashboardHttpDeps,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  // Found on the first asset asked for: a server whose ui/ is missing still serves the API (and 404s the page).
  let uiDir = deps.uiDir;
  const sessions = deps.sessions ?? new SessionTokens();
  const sse = deps.sse ?? new SseClients();
  const cache = new Map<string, Buffer>();
  const onError = deps.onError ?? (() => undefined);

  const send = (res: ServerResponse, status: number, type: string, body: string | Buffer, extra = {}) => {
    res.writeHead(status, { ...SECURITY_HEADERS, "content-type": type, ...extra }).end(body);
  };
  const json = (res: ServerResponse, status: number, body: unknown) =>
    send(res, status, "application/json", JSON.stringify(body), { "cache-control": "no-store" });
  const error = (res: ServerResponse, status: number, code: string, message: string, extra = {}) =>
    send(res, status, "application/json", ociErrorBody(code as "UNKNOWN", message), {
      "cache-control": "no-store",
      ...extra,
    });

  /** Whether the caller may see the data; answers the refusal itself when not. */
  const admitted = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    if (deps.authorize === undefined) return true;
    const authorization = req.headers.authorization;
    if (authorization === undefined || authorization === "") {
      error(res, 401, "UNAUTHORIZED", "sign in: the dashboard needs a system admin or an operator", {
        "www-authenticate": 'MeridianDashboard realm="meridian"',
      });
      return false;
    }
    let verdict: AccessVerdict;
    try {
      verdict = await deps.authorize(authorization, req.socket.remoteAddress ?? "");
    } catch (err) {
      onError(err, "authorize");
      verdict = { ok: false, status: 503, message: "the credentials could not be checked; retry" };
    }
    if (verdict.ok) return true;
    const code = { 401: "UNAUTHORIZED", 403: "DENIED", 429: "TOOMANYREQUESTS", 503: "UNAVAILABLE" }[
      verdict.status
    ];
    error(
      res,
      verdict.status,
      code,
      verdict.message,
      verdict.status === 401
        ? { "www-authenticate": 'MeridianDashboard realm="meridian"' }
        : verdict.status === 429
          ? { "retry-after": "60" }
          : {},
    );
    return false;
  };

  /** With an identity-provider sign-in: whether the request's credentials (its session cookie) are admitted. */
  const signedIn = async (req: IncomingMessage): Promise<boolean> => {
    const authorization = req.headers.authorization;
    if (deps.authorize === undefined || authorization === undefined || authorization === "") return false;
    return (await deps.authorize(authorization, req.socket.remoteAddress ?? "").catch(() => ({ ok: false })))
      .ok;
  };

  const asset = (res: ServerResponse, name: string, method: string) => {
    const type = ASSETS[name];
    if (type === undefined) return error(res, 404, "UNSUPPORTED", "no such file");
    let body = cache.get(name);
    if (body === undefined) {
      try {
        uiDir ??= uiDirectory();
        body = readFileSync(join(uiDir, name));
      } catch {
        return error(res, 404, "UNSUPPORTED", "no such file");
      }
      cache.set(name, body);
    }
    send(res, 200, type, method === "HEAD" ? "" : body, {
      "cache-control": "no-cache",
      "content-length": String(body.length),
    });
  };

  const events = (req: IncomingMessage, res: ServerResponse, url: URL) => {
    let expiresAt: number | undefined;
    if (deps.authorize !== undefined) {
      const token = url.searchParams.get("session");
      const session = token === null ? undefined : sessions.verify(token);
      if (session === undefined) {
        error(res, 401, "UNAUTHORIZED", "the event stream needs a session token (POST /ui/api/session)", {
          "www-authenticate": 'MeridianDashboard realm="meridian"',
        });
        return;
      }
      expiresAt = session.expiresAt;
    }
    const address = req.socket.remoteAddress ?? "";
    if (!sse.acquire(address)) {
      error(
        res,
        429,
        "TOOMANYREQUESTS",
        "too many dashboard event streams; close one or poll /ui/api/state",
        {
          "retry-after": "5",
        },
      );
      return;
    }
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    res.write("retry: 2000\n\n");
    const write = (state: unknown) => {
      // A client that reads nothing is not buffered for: past 1 MiB it is cut.
      if (res.writableLength > 1 << 20) return res.destroy();
      res.write(`event: state\ndata: ${JSON.stringify(state)}\n\n`);
    };
    // A feed already ticking sends its next state within a tick: this client gets the latest at once.
    // Otherwise the subscription starts the ticks, and their first refresh is sent as soon as it is made.
    const ticking = deps.feed.ticking;
    const unsubscribe = deps.feed.subscribe(write, () => res.end());
    if (ticking) write(deps.feed.latest());
    const expiry =
      expiresAt === undefined ? undefined : setTimeout(() => res.end(), Math.max(0, expiresAt - Date.now()));
    let released = false;
    res.once("close", () => {
      if (released) return;
      released = true;
      clearTimeout(expiry);
      unsubscribe();
      sse.release(address);
    });
  };

  return async (req, res) => {
    const method = req.method ?? "GET";
    const url = new URL(req.url ?? "/", "http://dashboard.invalid");
    const path = url.pathname;
    if (path === "/ui") {
      res.writeHead(301, { ...SECURITY_HEADERS, location: "/ui/" }).end();
      return;
    }
    const rest = path.slice("/ui/".length);
    if (!rest.startsWith("api/")) {
      if (method !== "GET" && method !== "HEAD")
        return error(res, 405, "UNSUPPORTED", "method not allowed", { allow: "GET, HEAD" });
      return asset(res, rest === "" ? "index.html" : rest, method);
    }
    const api = rest.slice("api/".length);
    const allowed = api === "session" ? ["GET", "POST", "DELETE"] : ["GET"];
    if (!["state", "events", "session", "search", "activity"].includes(api))
      return error(res, 404, "UNSUPPORTED", "no such endpoint");
    if (!allowed.includes(method))
      return error(res, 405, "UNSUPPORTED", "method not allowed", { allow: allowed.join(", ") });
    if (api === "events") return events(req, res, url);
    // Public: whether to show the sign-in form (nothing else), so the page's first request is no 401.
    if (api === "session" && method === "GET")
      return json(res, 200, {
        auth: deps.authorize !== undefined,
        search: deps.search !== undefined,
        activity: deps.activity !== undefined,
        ...(deps.signIn === undefined ? {} : { signIn: deps.signIn, signedIn: await signedIn(req) }),
      });
    if (api === "session" && method === "DELETE") return json(res, 200, { signedOut: true });
    if (!(await admitted(req, res))) return;
    const authorization = req.headers.authorization;
    try {
      switch (api) {
        case "state":
          return json(res, 200, await deps.feed.current());
        case "session": {
          if (deps.authorize === undefined) return json(res, 200, { auth: false });
          const { token, expiresAt } = sessions.issue(subjectOf(authorization!));
          return json(res, 200, { auth: true, token, expiresAt: new Date(expiresAt).toISOString() });
        }
        case "search": {
          const ref = url.searchParams.get("ref") ?? "";
          if (ref === "" || ref.length > MAX_REFERENCE || !/^[^\s:@]+(?::[^\s:@]+|@[^\s@]+)$/.test(ref))
            return error(res, 400, "NAME_INVALID", "want ref=REPO:TAG or ref=REPO@DIGEST");
          if (deps.search === undefined)
            return error(res, 501, "UNSUPPORTED", "search is not available on this server yet");
          return json(res, 200, await deps.search(ref, authorization));
        }
        case "activity":
          if (deps.activity === undefined)
            return error(res, 501, "UNSUPPORTED", "activity is not available on this server yet");
          return json(res, 200, await deps.activity(authorization));
      }
    } catch (err) {
      // A domain error of the caller's making (a malformed reference: 400 NAME_INVALID…) keeps its binding.
      const binding = ociErrorFor(err);
      if (binding !== undefined && binding.status < 500) {
        if (!res.headersSent) error(res, binding.status, binding.code, (err as Error).message);
        return;
      }
      onError(err, api);
      if (!res.headersSent) error(res, 503, "UNAVAILABLE", `the ${api} could not be collected; retry`);
    }
  };
}
