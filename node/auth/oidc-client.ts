/**
 * The relying party (issue 18 item 2): the authorization-code flow with PKCE,
 * state and nonce, through `openid-client` (6.x), against the provider of the
 * `oidc` settings (./oidc-config.ts).
 *
 * - `begin`: a fresh state, nonce and PKCE verifier (S256), and the
 *   provider's authorization URL. What the callback must check is sealed
 *   (AES-256-GCM under a key derived from the client secret, which every
 *   node of every region shares) into `flow`, which node/http/oidc-routes.ts
 *   keeps in an HttpOnly cookie: any node can finish a sign-in another began,
 *   and nothing is held in memory per pending sign-in.
 * - `finish`: the callback URL checked against the sealed flow (state, the
 *   code exchanged with the verifier, the ID token's signature, issuer,
 *   audience, expiry and nonce, all by openid-client); the claims Meridian
 *   reads come back, the tokens are dropped. A mismatch or a refusal by the
 *   provider is OidcSignInError (400); a provider that does not answer
 *   within `timeoutMs` is IdentityProviderUnavailableError (503).
 * - `endSessionUrl`: the provider's end_session_endpoint (RP-initiated
 *   logout), when it has one.
 *
 * The provider's metadata is discovered on first use and kept; a failed
 * discovery is retried at the next sign-in (a provider down at start does not
 * stop the node, and CLI secrets never need the provider).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { request as httpsRequest } from "node:https";
import * as client from "openid-client";
import { IdentityProviderUnavailableError, OidcSignInError } from "../../protocol/errors.js";
import { USER_NAME } from "../../protocol/events.js";
import { type GroupGrants, grantsOf } from "../../protocol/oidc.js";
import type { OidcConfig } from "./oidc-config.js";

/** What a finished sign-in yields: who, their groups and what those grant; no token. */
export interface OidcSignIn extends GroupGrants {
  name: string;
  issuer: string;
  sub: string;
  groups: string[];
  /** When the ID token expires (ms since the epoch). */
  expiresAt: number;
}

/** The checks a callback must pass, sealed into the flow cookie. */
interface Flow {
  state: string;
  nonce: string;
  verifier: string;
  /** Where to send the browser once signed in (a path on this server). */
  next: string;
  /** When this sign-in must have come back by (ms since the epoch). */
  until: number;
}

export class OidcClient {
  readonly #o: OidcConfig;
  readonly #key: Buffer;
  #discovered: Promise<client.Configuration> | undefined;

  constructor(config: OidcConfig) {
    this.#o = config;
    this.#key = createHash("sha256").update("meridian oidc flow\0").update(config.clientSecret).digest();
  }

  /** A new sign-in: the provider's URL to send the browser to, and the sealed flow to keep for the callback. */
  async begin(next: string, now = Date.now()): Promise<{ url: string; flow: string }> {
    const config = await this.#config();
    const flow: Flow = {
      state: client.randomState(),
      nonce: client.randomNonce(),
      verifier: client.randomPKCECodeVerifier(),
      next,
      until: now + this.#o.loginTimeoutSeconds * 1000,
    };
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: this.#o.redirectUrl,
      scope: this.#o.scopes.join(" "),
      code_challenge: await client.calculatePKCECodeChallenge(flow.verifier),
      code_challenge_method: "S256",
      state: flow.state,
      nonce: flow.nonce,
    });
    return { url: url.href, flow: this.#seal(flow) };
  }

  /** Complete a sign-in from the callback's URL and the flow cookie; see the header for the errors. */
  async finish(callbackUrl: URL, sealed: string | undefined): Promise<{ signIn: OidcSignIn; next: string }> {
    const flow = sealed === undefined ? undefined : this.#open(sealed);
    if (flow === undefined)
      throw new OidcSignInError(
        "no sign-in in progress in this browser (or it was tampered with): start again",
      );
    if (Date.now() > flow.until) throw new OidcSignInError("the sign-in took too long: start again");
    const error = callbackUrl.searchParams.get("error");
    if (error !== null)
      throw new OidcSignInError(
        `the identity provider refused the sign-in: ${error} ${callbackUrl.searchParams.get("error_description") ?? ""}`.trim(),
      );
    const config = await this.#config();
    // The callback as the provider was told to call it: the redirect URL's origin and path, this request's query.
    const current = new URL(this.#o.redirectUrl);
    current.search = callbackUrl.search;
    let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
    try {
      tokens = await client.authorizationCodeGrant(config, current, {
        expectedState: flow.state,
        expectedNonce: flow.nonce,
        pkceCodeVerifier: flow.verifier,
        idTokenExpected: true,
      });
    } catch (err) {
      throw this.#classify(err, "the sign-in could not be completed");
    }
    const claims = tokens.claims();
    if (claims === undefined) throw new OidcSignInError("the identity provider sent no ID token");
    const name = claims[this.#o.usernameClaim];
    if (typeof name !== "string" || !USER_NAME.test(name))
      throw new OidcSignInError(
        `the ID token's ${this.#o.usernameClaim} ${JSON.stringify(name ?? null)} is not a Meridian user name (lower-case letters, digits, ._-)`,
      );
    const raw = claims[this.#o.groupsClaim];
    const groups = Array.isArray(raw) ? raw.filter((g): g is string => typeof g === "string") : [];
    return {
      signIn: {
        name,
        issuer: claims.iss,
        sub: claims.sub,
        groups,
        expiresAt: claims.exp * 1000,
        ...grantsOf(groups, this.#o.groupRoles),
      },
      next: flow.next,
    };
  }

  /** The provider's RP-initiated logout URL (undefined: it has no end_session_endpoint, or is unreachable). */
  async endSessionUrl(): Promise<string | undefined> {
    let config: client.Configuration;
    try {
      config = await this.#config();
    } catch {
      return undefined;
    }
    if (config.serverMetadata().end_session_endpoint === undefined) return undefined;
    const params: Record<string, string> = { client_id: this.#o.clientId };
    if (this.#o.postLogoutRedirectUrl !== undefined)
      params.post_logout_redirect_uri = this.#o.postLogoutRedirectUrl;
    return client.buildEndSessionUrl(config, params).href;
  }

  #config(): Promise<client.Configuration> {
    this.#discovered ??= this.#discover();
    const discovered = this.#discovered;
    discovered.catch(() => {
      if (this.#discovered === discovered) this.#discovered = undefined;
    });
    return discovered;
  }

  async #discover(): Promise<client.Configuration> {
    const o = this.#o;
    const insecure = o.issuer.startsWith("http://");
    try {
      const config = await client.discovery(
        new URL(o.issuer),
        o.clientId,
        undefined,
        client.ClientSecretBasic(o.clientSecret),
        {
          timeout: Math.ceil(o.timeoutMs / 1000),
          ...(insecure ? { execute: [client.allowInsecureRequests] } : {}),
          ...(o.ca === undefined ? {} : { [client.customFetch]: fetchWithCa(o.ca) }),
        },
      );
      config.timeout = Math.ceil(o.timeoutMs / 1000);
      if (o.ca !== undefined) config[client.customFetch] = fetchWithCa(o.ca);
      return config;
    } catch (err) {
      throw this.#classify(err, `the identity provider ${o.issuer} could not be reached`);
    }
  }

  /** A provider that answered wrongly or refused: 400; one that did not answer: 503. */
  #classify(err: unknown, what: string): Error {
    const e = err as { name?: string; code?: string; message?: string; error?: string };
    const unreachable =
      e.name === "TimeoutError" ||
      e.name === "AbortError" ||
      (e.name === "TypeError" && /fetch failed/i.test(e.message ?? "")) ||
      e.code === "ECONNREFUSED" ||
      e.code === "OAUTH_RESPONSE_IS_NOT_CONFORM" ||
      (e.code === "OAUTH_RESPONSE_IS_NOT_JSON" && e.error === undefined);
    if (unreachable)
      return new IdentityProviderUnavailableError(`${what}: ${e.message ?? e.name}`, { cause: err });
    // openid-client's message is generic ("invalid response encountered"); its cause names the check.
    const cause = (err as { cause?: unknown }).cause;
    const why = cause instanceof Error && cause.message !== "" ? ` (${cause.message})` : "";
    const detail =
      e.error === undefined ? `${e.message ?? String(err)}${why}` : `${e.error}: ${e.message ?? ""}`;
    return new OidcSignInError(`${what}: ${detail}`, { cause: err });
  }

  #seal(flow: Flow): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv);
    const body = Buffer.concat([cipher.update(JSON.stringify(flow), "utf8"), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64url");
  }

  #open(sealed: string): Flow | undefined {
    try {
      const raw = Buffer.from(sealed, "base64url");
      const decipher = createDecipheriv("aes-256-gcm", this.#key, raw.subarray(0, 12));
      decipher.setAuthTag(raw.subarray(12, 28));
      const text = Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString("utf8");
      return JSON.parse(text) as Flow;
    } catch {
      return undefined;
    }
  }
}

/**
 * openid-client's fetch with a CA of our own (`oidc.caFile`): Node's global
 * fetch takes no CA without undici's Agent, so this small one speaks
 * node:https. Bodies are small (metadata, keys, a token answer): capped at 1 MiB.
 */
function fetchWithCa(ca: string): client.CustomFetch {
  return (url, options) =>
    new Promise<Response>((resolve, reject) => {
      const req = httpsRequest(
        url,
        { method: options.method, headers: options.headers, ca, signal: options.signal },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size > 1 << 20) req.destroy(new Error("identity provider answer over 1 MiB"));
            else chunks.push(chunk);
          });
          res.on("end", () => {
            const headers = new Headers();
            for (const [k, v] of Object.entries(res.headers))
              if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(", ") : v);
            const status = res.statusCode ?? 502;
            const body = status === 204 || status === 304 ? null : Buffer.concat(chunks);
            resolve(new Response(body, { status, headers }));
          });
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      if (typeof options.body === "string" || options.body instanceof Uint8Array) req.end(options.body);
      else if (options.body instanceof URLSearchParams) req.end(options.body.toString());
      else req.end();
    });
}
