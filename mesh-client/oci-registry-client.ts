/**
 * A client of another registry's OCI Distribution API (an external endpoint:
 * CNCF Distribution, Harbor, a cloud registry, or a Meridian region, which
 * is just an OCI registry to it). The base of promotion, import and the
 * pull-through cache (issue 17).
 *
 * Contracts:
 * - Auth: anonymous first; on 401 the challenge decides: `Basic` → the
 *   credentials' username:password; `Bearer realm,service,scope` → GET realm
 *   (Basic credentials when given) for a token, cached per scope until its
 *   `expires_in` (60 s when absent) less 10 s. A bearer-token credential is
 *   sent as is. A second 401 is UNAUTHORIZED, never a loop.
 * - Every call has a deadline for the answer (`deadlineMs`, 30 s) and bodies an
 *   idle bound (`idleMs`, 30 s); errors are `ExternalRegistryError` with the
 *   registry's OCI code and status.
 * - Manifests and blobs are verified against their digest: a manifest's bytes
 *   against the digest asked for (or the one the registry names), a blob
 *   stream errors at its end with DIGEST_MISMATCH, before anything trusts it.
 */
import type { OutgoingHttpHeaders } from "node:http";
import type { Agent as HttpsAgent } from "node:https";
import { PassThrough, type Readable } from "node:stream";
import { type Digest, digestOf, isDigest, newHash, parseDigest } from "../protocol/digest.js";
import { MediaType } from "../protocol/media-types.js";
import {
  answerError,
  type Exchange,
  ExternalRegistryError,
  exchange,
  httpsAgent,
  nextLink,
  parseChallenge,
  readBody,
  type TransportOptions,
} from "./registry-http.js";

export { ExternalRegistryError } from "./registry-http.js";

/** What an endpoint's credentials file holds once parsed (see `oci-credentials.ts`). */
export type RegistryCredentials = { username: string; password: string } | { token: string };

export interface OciRegistryClientOptions {
  /** Base URL, http(s)://host[:port] (no path). */
  url: string;
  credentials?: RegistryCredentials;
  ca?: string | Buffer;
  insecure?: boolean;
  deadlineMs?: number;
  idleMs?: number;
}

/** Every manifest media type a copy accepts (OCI and Docker, images and indexes). */
export const MANIFEST_ACCEPT = [
  MediaType.OciManifest,
  MediaType.OciIndex,
  MediaType.DockerManifest,
  MediaType.DockerManifestList,
].join(", ");

export interface ManifestBytes {
  bytes: Buffer;
  mediaType: string;
  digest: Digest;
}

export interface OciDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

type Action = "pull" | "push" | "pull,push" | "delete";

export class OciRegistryClient {
  readonly base: URL;
  private readonly transport: TransportOptions;
  private readonly agent: HttpsAgent | undefined;
  private readonly tokens = new Map<string, { token: string; until: number }>();
  /** The scheme the registry last challenged with (Basic is then sent pre-emptively). */
  private scheme: "" | "basic" | "bearer" = "";

  constructor(readonly options: OciRegistryClientOptions) {
    this.base = new URL(options.url);
    this.transport = {
      deadlineMs: options.deadlineMs ?? 30_000,
      idleMs: options.idleMs ?? 30_000,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      ...(options.insecure === true ? { insecure: true } : {}),
    };
    this.agent = this.base.protocol === "https:" ? httpsAgent(this.transport) : undefined;
  }

  /** The registry answers /v2/ (with our credentials): resolves, else throws. */
  async ping(): Promise<void> {
    const ex = await this.call("GET", "/v2/", {}, undefined, "");
    await this.expect(ex, [200], "ping");
    ex.body.resume();
  }

  /** A manifest by tag or digest, its bytes verified; undefined when the registry says unknown. */
  async getManifest(repository: string, reference: string): Promise<ManifestBytes | undefined> {
    const ex = await this.call(
      "GET",
      `/v2/${repository}/manifests/${reference}`,
      { accept: MANIFEST_ACCEPT },
      undefined,
      scopeOf(repository, "pull"),
    );
    if (ex.status === 404) {
      ex.body.resume();
      return undefined;
    }
    await this.expect(ex, [200], `GET manifest ${repository}:${reference}`);
    const bytes = await readBody(ex.body, 4 * 1024 * 1024);
    const digest = digestOf(bytes);
    const named = isDigest(reference) ? reference : header(ex, "docker-content-digest");
    if (named !== undefined && named !== digest) {
      throw new ExternalRegistryError(
        `manifest ${repository}@${named}: the registry sent bytes of ${digest}`,
        "DIGEST_MISMATCH",
        ex.status,
      );
    }
    const mediaType = header(ex, "content-type")?.split(";")[0]?.trim() ?? mediaTypeIn(bytes);
    return { bytes, mediaType, digest };
  }

  /** HEAD a manifest: its digest and media type, or undefined. */
  async headManifest(
    repository: string,
    reference: string,
  ): Promise<{ digest: string; mediaType: string } | undefined> {
    const ex = await this.call(
      "HEAD",
      `/v2/${repository}/manifests/${reference}`,
      { accept: MANIFEST_ACCEPT },
      undefined,
      scopeOf(repository, "pull"),
    );
    ex.body.resume();
    if (ex.status === 404) return undefined;
    await this.expect(ex, [200], `HEAD manifest ${repository}:${reference}`);
    return { digest: header(ex, "docker-content-digest") ?? "", mediaType: header(ex, "content-type") ?? "" };
  }

  /** PUT a manifest under a tag or its digest. */
  async putManifest(
    repository: string,
    reference: string,
    manifest: ManifestBytes,
  ): Promise<{ subject: boolean }> {
    const ex = await this.call(
      "PUT",
      `/v2/${repository}/manifests/${reference}`,
      { "content-type": manifest.mediaType, "content-length": manifest.bytes.length },
      manifest.bytes,
      scopeOf(repository, "pull,push"),
    );
    await this.expect(ex, [201], `PUT manifest ${repository}:${reference}`);
    ex.body.resume();
    return { subject: header(ex, "oci-subject") !== undefined };
  }

  /**
   * DELETE a manifest by digest (the registry drops every tag on it, as
   * Distribution does); false when it was not there.
   */
  async deleteManifest(repository: string, digest: string): Promise<boolean> {
    const d = parseDigest(digest);
    const ex = await this.call(
      "DELETE",
      `/v2/${repository}/manifests/${d}`,
      {},
      undefined,
      scopeOf(repository, "delete"),
    );
    if (ex.status === 404) {
      ex.body.resume();
      return false;
    }
    await this.expect(ex, [202, 200], `DELETE manifest ${repository}@${d}`);
    ex.body.resume();
    return true;
  }

  /** Whether the registry holds a blob (HEAD). */
  async hasBlob(repository: string, digest: string): Promise<boolean> {
    const ex = await this.call(
      "HEAD",
      `/v2/${repository}/blobs/${digest}`,
      {},
      undefined,
      scopeOf(repository, "pull"),
    );
    ex.body.resume();
    if (ex.status === 404) return false;
    await this.expect(ex, [200], `HEAD blob ${repository}@${digest}`);
    return true;
  }

  /** A blob as a stream that errors with DIGEST_MISMATCH at its end when its bytes are not `digest`. */
  async getBlob(repository: string, digest: string): Promise<{ size: number; stream: Readable }> {
    const wanted = parseDigest(digest);
    const ex = await this.call(
      "GET",
      `/v2/${repository}/blobs/${wanted}`,
      {},
      undefined,
      scopeOf(repository, "pull"),
    );
    await this.expect(ex, [200], `GET blob ${repository}@${wanted}`);
    const hash = newHash(wanted.startsWith("sha512:") ? "sha512" : "sha256");
    const out = new PassThrough();
    ex.body.on("data", (chunk: Buffer) => hash.update(chunk));
    ex.body.on("error", (err) => out.destroy(err));
    ex.body.on("end", () => {
      const got = `${wanted.slice(0, wanted.indexOf(":"))}:${hash.digest("hex")}`;
      if (got !== wanted)
        out.destroy(
          new ExternalRegistryError(
            `blob ${repository}@${wanted}: the registry sent ${got}`,
            "DIGEST_MISMATCH",
            200,
          ),
        );
    });
    ex.body.pipe(out);
    return { size: Number(header(ex, "content-length") ?? -1), stream: out };
  }

  /**
   * Upload a blob: POST (a cross-repository mount when `mountFrom` names a
   * repository of this same registry) then one PUT ?digest= with the bytes.
   * `body` is called only when the bytes are needed (not after a mount).
   */
  async pushBlob(
    repository: string,
    descriptor: { digest: string; size: number },
    body: () => Promise<Buffer | Readable>,
    mountFrom?: string,
  ): Promise<"mounted" | "uploaded"> {
    const digest = parseDigest(descriptor.digest);
    const query = mountFrom === undefined ? "" : `?mount=${digest}&from=${encodeURIComponent(mountFrom)}`;
    const scope =
      mountFrom === undefined
        ? scopeOf(repository, "pull,push")
        : `${scopeOf(repository, "pull,push")} ${scopeOf(mountFrom, "pull")}`;
    const started = await this.call(
      "POST",
      `/v2/${repository}/blobs/uploads/${query}`,
      { "content-length": 0 },
      Buffer.alloc(0),
      scope,
    );
    await this.expect(started, [201, 202], `POST upload ${repository}`);
    started.body.resume();
    if (started.status === 201) return "mounted";
    const location = header(started, "location");
    if (location === undefined)
      throw new ExternalRegistryError("upload without a Location", "BLOB_UPLOAD_INVALID", 202);
    const put = new URL(location, this.base);
    put.searchParams.set("digest", digest);
    const ex = await this.call(
      "PUT",
      put.pathname + put.search,
      { "content-type": "application/octet-stream", "content-length": descriptor.size },
      await body(),
      scope,
    );
    await this.expect(ex, [201], `PUT blob ${repository}@${digest}`);
    ex.body.resume();
    return "uploaded";
  }

  /** Every tag of a repository, following the Link header's pages. */
  async listTags(repository: string, pageSize = 1000): Promise<string[]> {
    return this.paged(`/v2/${repository}/tags/list?n=${pageSize}`, scopeOf(repository, "pull"), "tags");
  }

  /** Every repository of the registry (catalog), following the Link header's pages. */
  async catalog(pageSize = 1000): Promise<string[]> {
    return this.paged(`/v2/_catalog?n=${pageSize}`, "registry:catalog:*", "repositories");
  }

  /**
   * The referrers of a manifest: the Referrers API, or when the registry
   * answers it 404, the referrers tag schema (`sha256-<hex>`). `api` says
   * which answered (false: the tag schema, also when that tag is absent).
   */
  async referrers(repository: string, digest: string): Promise<{ api: boolean; manifests: OciDescriptor[] }> {
    const d = parseDigest(digest);
    const ex = await this.call(
      "GET",
      `/v2/${repository}/referrers/${d}`,
      { accept: MediaType.OciIndex },
      undefined,
      scopeOf(repository, "pull"),
    );
    if (ex.status === 200) {
      const index = JSON.parse((await readBody(ex.body)).toString("utf8")) as { manifests?: OciDescriptor[] };
      return { api: true, manifests: index.manifests ?? [] };
    }
    if (ex.status !== 404) throw await answerError(`GET referrers ${repository}@${d}`, ex);
    ex.body.resume();
    const fallback = await this.getManifest(repository, referrersTag(d));
    if (fallback === undefined) return { api: false, manifests: [] };
    const index = JSON.parse(fallback.bytes.toString("utf8")) as { manifests?: OciDescriptor[] };
    return { api: false, manifests: index.manifests ?? [] };
  }

  private async paged(first: string, scope: string, field: "tags" | "repositories"): Promise<string[]> {
    const out: string[] = [];
    let path: string | undefined = first;
    for (let page = 0; path !== undefined && page < 10_000; page++) {
      const ex = await this.call("GET", path, {}, undefined, scope);
      if (ex.status === 404 && field === "tags") {
        ex.body.resume();
        return out;
      }
      await this.expect(ex, [200], `GET ${path}`);
      const link = header(ex, "link");
      const parsed = JSON.parse((await readBody(ex.body)).toString("utf8")) as Record<string, unknown>;
      const names = parsed[field];
      if (Array.isArray(names)) out.push(...names.filter((n): n is string => typeof n === "string"));
      const next = nextLink(link, this.base);
      path = next === undefined ? undefined : next.pathname + next.search;
    }
    return out;
  }

  private async expect(ex: Exchange, ok: number[], what: string): Promise<void> {
    if (!ok.includes(ex.status)) throw await answerError(what, ex);
  }

  /** One request with auth: pre-emptive when known, else on the 401's challenge, once. */
  private async call(
    method: string,
    path: string,
    headers: OutgoingHttpHeaders,
    body: Buffer | Readable | undefined,
    scope: string,
  ): Promise<Exchange> {
    const url = new URL(path, this.base);
    const known = this.authorization(scope);
    const first = await exchange(url, method, withAuth(headers, known), body, this.transport, this.agent);
    if (first.status !== 401) return first;
    const challenge = parseChallenge(header(first, "www-authenticate"));
    first.body.resume();
    const auth = await this.answer(challenge, scope);
    if (auth === undefined || (body !== undefined && !Buffer.isBuffer(body))) {
      // A stream cannot be sent twice: the caller authenticates first (pushBlob's POST, same scope).
      if (body !== undefined && !Buffer.isBuffer(body)) body.destroy();
      throw new ExternalRegistryError(`${method} ${url.pathname}: 401 UNAUTHORIZED`, "UNAUTHORIZED", 401);
    }
    const second = await exchange(url, method, withAuth(headers, auth), body, this.transport, this.agent);
    if (second.status === 401) {
      second.body.resume();
      throw new ExternalRegistryError(
        `${method} ${url.pathname}: 401 UNAUTHORIZED (credentials refused)`,
        "UNAUTHORIZED",
        401,
      );
    }
    return second;
  }

  private authorization(scope: string): string | undefined {
    const creds = this.options.credentials;
    if (creds !== undefined && "token" in creds) return `Bearer ${creds.token}`;
    if (this.scheme === "basic" && creds !== undefined) return basic(creds);
    const cached = this.tokens.get(scope);
    if (cached !== undefined && cached.until > Date.now()) return `Bearer ${cached.token}`;
    return undefined;
  }

  private async answer(
    challenge: { scheme: string; params: Record<string, string> },
    scope: string,
  ): Promise<string | undefined> {
    const creds = this.options.credentials;
    if (challenge.scheme === "basic") {
      this.scheme = "basic";
      return creds === undefined || "token" in creds ? undefined : basic(creds);
    }
    if (challenge.scheme !== "bearer" || challenge.params.realm === undefined) return undefined;
    this.scheme = "bearer";
    const realm = new URL(challenge.params.realm);
    if (challenge.params.service !== undefined) realm.searchParams.set("service", challenge.params.service);
    for (const s of (challenge.params.scope ?? scope).split(" ").filter((x) => x !== "")) {
      realm.searchParams.append("scope", s);
    }
    const ex = await exchange(
      realm,
      "GET",
      creds === undefined || "token" in creds ? {} : { authorization: basic(creds) },
      undefined,
      this.transport,
      realm.protocol === "https:" ? (this.agent ?? httpsAgent(this.transport)) : undefined,
    );
    if (ex.status !== 200) throw await answerError(`token from ${realm.host}`, ex);
    const answer = JSON.parse((await readBody(ex.body, 1024 * 1024)).toString("utf8")) as {
      token?: string;
      access_token?: string;
      expires_in?: number;
    };
    const token = answer.token ?? answer.access_token;
    if (typeof token !== "string")
      throw new ExternalRegistryError("token answer without a token", "UNAUTHORIZED", 200);
    const lifetime = typeof answer.expires_in === "number" ? answer.expires_in : 60;
    this.tokens.set(scope, { token, until: Date.now() + Math.max(0, lifetime - 10) * 1000 });
    return `Bearer ${token}`;
  }
}

/** The referrers tag schema's tag for a digest: `<alg>-<hex>`. */
export function referrersTag(digest: Digest): string {
  return digest.replace(":", "-");
}

function scopeOf(repository: string, action: Action): string {
  return `repository:${repository}:${action}`;
}

function basic(creds: { username: string; password: string }): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}`;
}

function withAuth(headers: OutgoingHttpHeaders, auth: string | undefined): OutgoingHttpHeaders {
  return auth === undefined ? headers : { ...headers, authorization: auth };
}

function header(ex: Exchange, name: string): string | undefined {
  const v = ex.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function mediaTypeIn(bytes: Buffer): string {
  try {
    const m = (JSON.parse(bytes.toString("utf8")) as { mediaType?: unknown }).mediaType;
    return typeof m === "string" ? m : MediaType.OciManifest;
  } catch {
    return MediaType.OciManifest;
  }
}
