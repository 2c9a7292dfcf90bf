/**
 * A real OIDC provider for the tests (issue 18): the certified
 * `oidc-provider` package, configured here, on 127.0.0.1 and a free port.
 * One confidential client (client_secret_basic) with its redirect and
 * post-logout URLs, PKCE required, a `groups` claim (in the ID token) and
 * RP-initiated logout. Accounts are a table the test changes between
 * sign-ins (groups taken away). Its development login form (any password)
 * is the "browser" part; the consent step is skipped by a grant of the
 * scopes asked for.
 *
 * `signIn` drives the authorization-code flow as a browser would: a real
 * HTTP client following every redirect itself (fetch with
 * `redirect: "manual"`), keeping each origin's cookies, submitting the
 * provider's login form.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { After } from "./harness.js";

export interface TestProvider {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Account id → its groups (change it to change the next sign-in's claims). */
  accounts: Map<string, { groups: string[]; username?: string }>;
  /**
   * Register the client and start answering (before: 503). Apart from the
   * start: the node's redirect URL has its port, and the node needs the issuer first.
   */
  register(client: { redirectUri: string; postLogoutRedirectUri: string }): Promise<void>;
  /** Stop answering (the port is closed: connections refused). */
  stop(): Promise<void>;
}

export async function startTestProvider(
  after: After,
  options: { issuerHost?: string } = {},
): Promise<TestProvider> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://${options.issuerHost ?? "127.0.0.1"}:${port}`;
  const clientId = "meridian";
  const clientSecret = "test-client-secret-0123456789";
  const accounts = new Map<string, { groups: string[]; username?: string }>();
  const notYet = (_req: unknown, res: { writeHead(s: number): { end(): void } }) => res.writeHead(503).end();
  server.on("request", notYet);
  const register: TestProvider["register"] = async (client) => {
    server.off("request", notYet);
    server.on("request", (await makeProvider(issuer, clientId, clientSecret, accounts, client)).callback());
  };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  after(stop);
  return { issuer, clientId, clientSecret, accounts, register, stop };
}

async function makeProvider(
  issuer: string,
  clientId: string,
  clientSecret: string,
  accounts: TestProvider["accounts"],
  options: { redirectUri: string; postLogoutRedirectUri: string },
): Promise<{ callback(): (...args: unknown[]) => void }> {
  // Untyped package (no declarations shipped): imported by a computed name.
  const name = "oidc-provider";
  const { default: Provider } = (await import(name)) as {
    default: new (issuer: string, config: object) => { callback(): (...args: unknown[]) => void };
  };
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [options.redirectUri],
        post_logout_redirect_uris: [options.postLogoutRedirectUri],
        grant_types: ["authorization_code"],
        response_types: ["code"],
        token_endpoint_auth_method: "client_secret_basic",
      },
    ],
    pkce: { required: () => true },
    claims: {
      openid: ["sub"],
      profile: ["preferred_username", "name"],
      email: ["email"],
      groups: ["groups"],
    },
    // The claims the scopes ask for go into the ID token (Meridian reads them there).
    conformIdTokenClaims: false,
    cookies: { keys: ["meridian-test-provider-cookie-key"] },
    features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
    ttl: {
      AuthorizationCode: 60,
      IdToken: 3600,
      AccessToken: 3600,
      Session: 3600,
      Interaction: 600,
      Grant: 3600,
    },
    async findAccount(_ctx: unknown, id: string) {
      const account = accounts.get(id);
      if (account === undefined) return undefined;
      return {
        accountId: id,
        claims: async () => ({
          sub: id,
          preferred_username: account.username ?? id,
          name: id,
          groups: [...account.groups],
        }),
      };
    },
    // No consent step: the scopes asked for are granted.
    async loadExistingGrant(ctx: {
      oidc: {
        provider: { Grant: new (o: object) => { addOIDCScope(s: string): void; save(): Promise<string> } };
        client: { clientId: string };
        session: { accountId: string };
        params: { scope: string };
      };
    }) {
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope(ctx.oidc.params.scope);
      await grant.save();
      return grant;
    },
  });
  return provider;
}

/** Cookies by origin, as a browser keeps them (enough for these flows: no paths, no expiry). */
export class CookieJar {
  readonly #jar = new Map<string, Map<string, string>>();

  header(url: string): string | undefined {
    const cookies = this.#jar.get(new URL(url).host);
    if (cookies === undefined || cookies.size === 0) return undefined;
    return [...cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }

  take(url: string, res: Response): void {
    const host = new URL(url).host;
    const cookies = this.#jar.get(host) ?? new Map<string, string>();
    this.#jar.set(host, cookies);
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(";");
      const eq = pair!.indexOf("=");
      const key = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const gone = attributes.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === "";
      if (gone) cookies.delete(key);
      else cookies.set(key, value);
    }
  }

  get(url: string, name: string): string | undefined {
    return this.#jar.get(new URL(url).host)?.get(name);
  }

  set(url: string, name: string, value: string): void {
    const host = new URL(url).host;
    if (!this.#jar.has(host)) this.#jar.set(host, new Map());
    this.#jar.get(host)!.set(name, value);
  }
}

/** One hop: a request with the jar's cookies, its Set-Cookie kept; redirects are not followed. */
export async function hop(jar: CookieJar, url: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const cookie = jar.header(url);
  if (cookie !== undefined) headers.set("cookie", cookie);
  const res = await fetch(url, { ...init, headers, redirect: "manual", signal: AbortSignal.timeout(10_000) });
  jar.take(url, res);
  return res;
}

/**
 * Follow redirects from `url` (at most 20 hops), submitting the provider's
 * login form as `account` when it is shown. Stops at the first answer that
 * is not a redirect or a login form, or before requesting a URL `stopAt`
 * accepts (it is returned unrequested, with the last response).
 */
export async function follow(
  jar: CookieJar,
  url: string,
  account: string,
  stopAt?: (url: URL) => boolean,
): Promise<{ url: string; res: Response; stopped: boolean }> {
  let current = url;
  let init: RequestInit = {};
  for (let i = 0; i < 20; i++) {
    const res = await hop(jar, current, init);
    init = {};
    const location = res.headers.get("location");
    if (res.status >= 300 && res.status < 400 && location !== null) {
      const next = new URL(location, current).href;
      await res.arrayBuffer();
      if (stopAt?.(new URL(next)) === true) return { url: next, res, stopped: true };
      current = next;
      continue;
    }
    const type = res.headers.get("content-type") ?? "";
    if (res.status === 200 && type.includes("text/html")) {
      const html = await res.text();
      const action = /<form[^>]*action="([^"]+)"[^>]*method="post"/i.exec(html)?.[1];
      if (action !== undefined && /name="prompt" value="login"/.test(html)) {
        current = new URL(action, current).href;
        init = {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ prompt: "login", login: account, password: "any" }).toString(),
        };
        continue;
      }
      return {
        url: current,
        res: new Response(html, { status: res.status, headers: res.headers }),
        stopped: false,
      };
    }
    return { url: current, res, stopped: false };
  }
  throw new Error(`more than 20 redirects from ${url}`);
}
