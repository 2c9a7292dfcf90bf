/**
 * The OCI Distribution HTTP API (spec v1.1) as a fastify plugin over a
 * `Registry`. Tests build it with `buildApp` and `inject()` or `listen({port:0})`;
 * node/server.ts runs it as a process.
 *
 * Repository names contain slashes, so one wildcard route takes everything
 * under /v2/ and `dispatch` matches the path against the API's shapes (upload
 * shapes first: a repository may itself be called `…/blobs`).
 */
import type { IncomingMessage } from "node:http";
import type { Readable } from "node:stream";
import fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from "fastify";
import fp from "fastify-plugin";
import type { Logger } from "pino";
import { Histogram, type Registry as MetricsRegistry } from "prom-client";
import type { Action } from "../../protocol/access.js";
import { type Digest, parseDigest } from "../../protocol/digest.js";
import {
  AccessDeniedError,
  BlobNotFoundError,
  DigestInvalidError,
  ManifestNotFoundError,
  ManifestReferenceError,
  ManifestTooLargeError,
  MethodNotAllowedError,
  RepositoryNotFoundError,
  RequestAbortedError,
  RouteNotFoundError,
  SizeInvalidError,
  TagInvalidError,
  UnauthorizedError,
} from "../../protocol/errors.js";
import {
  ConnectionCounter,
  type HttpLimits,
  limitConnections,
  serverTimeouts,
} from "../../protocol/http-limits.js";
import { MediaType } from "../../protocol/media-types.js";
import { parseRepository, parseTag } from "../../protocol/names.js";
import type { AuditLog } from "../audit.js";
import { ANONYMOUS, type Identity } from "../auth/authenticator.js";
import type { ByteRange } from "../data/blob-store.js";
import { parseReference, type Reference, type Registry } from "../data/registry.js";
import type { FetchOnMiss } from "../fetch-on-miss.js";
import { type AuditSink, authFailureHeaders, challenge, type HttpAuth, loginRecord } from "./access.js";
import { adminApiPlugin } from "./admin.js";
import { handleError, ociClientError, ociErrorBody } from "./errors.js";
import { clientAddress, PROXY_PROOF_HEADER, type ProxyTrust } from "./forwarded.js";
import { blobRange, contentLength, pageSize, uploadContentRange } from "./headers.js";
import { tokenRoutes } from "./token-routes.js";

export interface OciApiOptions {
  registry: Registry;
  metrics: MetricsRegistry;
  /** Content this region lacks, from the other regions (node/fetch-on-miss.ts); absent for a lone region. */
  fetchOnMiss?: FetchOnMiss;
  /** Authentication (node/auth/); absent: everyone may do everything, as `anonymous`. */
  auth?: HttpAuth;
  /** Where pulls, pushes, deletes and logins are recorded (node/audit.ts). */
  audit?: AuditSink;
}

/**
 * Every write answers with `Meridian-Seq: <region>:<seq>`, the position of
 * its event in the region's log: a read carrying the token (through the
 * front door) goes only to a region that has applied it (read-your-writes).
 */
const SEQ_HEADER = "meridian-seq";

declare module "fastify" {
  interface FastifyRequest {
    /** Name of the OCI route matched (a bounded metrics label). */
    ociRoute: string;
    /** Who is asking (anonymous until authenticated; everyone is anonymous without auth). */
    identity: Identity;
    /** The repository and reference an OCI route named (for the audit log). */
    ociTarget?: { repo: string; reference?: string };
  }
}

const MAX_PAGE = 1000;

type Handler = (req: FastifyRequest, reply: FastifyReply, m: RegExpExecArray) => Promise<unknown>;
interface Route {
  name: string;
  pattern: RegExp;
  methods: Partial<Record<string, Handler>>;
}

async function ociApi(app: FastifyInstance, options: OciApiOptions): Promise<void> {
  const reg = options.registry;
  const duration = new Histogram({
    name: "meridian_http_request_duration_seconds",
    help: "HTTP request durations by OCI route, method and status",
    labelNames: ["route", "method", "code"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30],
    registers: [options.metrics],
  });

  app.decorateRequest("ociRoute", "other");
  // Reference-typed decorators must start null (fastify shares them otherwise); every request starts anonymous.
  app.decorateRequest("identity", null as unknown as Identity);
  app.decorateRequest("ociTarget", undefined);
  app.removeAllContentTypeParsers();
  // Bodies are streamed by the handlers from request.raw; nothing is parsed up front.
  app.addContentTypeParser("*", (_req, _payload, done) => done(null, undefined));
  app.setErrorHandler(closeOnUnreadBody);
  app.addHook("onRequest", async (req, reply) => {
    req.identity = ANONYMOUS;
    reply.header("docker-distribution-api-version", "registry/2.0");
  });
  app.addHook("onResponse", async (req, reply) => {
    duration.observe(
      { route: req.ociRoute, method: req.method, code: reply.statusCode },
      reply.elapsedTime / 1000,
    );
    const action = auditedAction(req.ociRoute, req.method);
    if (action !== undefined && options.audit !== undefined && req.ociTarget !== undefined)
      options.audit.record({
        actor: req.identity.name,
        kind: req.identity.kind,
        action,
        address: clientAddress(req),
        repo: req.ociTarget.repo,
        reference: req.ociTarget.reference,
        status: reply.statusCode,
      });
  });

  const routes: Route[] = [
    { name: "base", pattern: /^\/v2\/?$/, methods: { GET: base, HEAD: base } },
    { name: "catalog", pattern: /^\/v2\/_catalog$/, methods: { GET: catalog } },
    { name: "upload_start", pattern: /^\/v2\/(.+)\/blobs\/uploads\/?$/, methods: { POST: startUpload } },
    {
      name: "upload",
      pattern: /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/,
      methods: { GET: uploadStatus, PATCH: patchUpload, PUT: putUpload, DELETE: cancelUpload },
    },
    {
      name: "blob",
      pattern: /^\/v2\/(.+)\/blobs\/([^/]+)$/,
      methods: { GET: getBlob, HEAD: getBlob, DELETE: deleteBlob },
    },
    {
      name: "manifest",
      pattern: /^\/v2\/(.+)\/manifests\/([^/]+)$/,
      methods: { GET: getManifest, HEAD: getManifest, PUT: putManifest, DELETE: deleteManifest },
    },
    { name: "tags", pattern: /^\/v2\/(.+)\/tags\/list$/, methods: { GET: listTags } },
    { name: "referrers", pattern: /^\/v2\/(.+)\/referrers\/([^/]+)$/, methods: { GET: referrers } },
  ];

  const dispatch = async (req: FastifyRequest, reply: FastifyReply) => {
    const path = (req.raw.url ?? "/").split("?", 1)[0]!;
    for (const route of routes) {
      const m = route.pattern.exec(path);
      if (m === null) continue;
      req.ociRoute = route.name;
      const handler = route.methods[req.method];
      if (handler === undefined) {
        reply.header("allow", Object.keys(route.methods).join(", "));
        throw new MethodNotAllowedError(`${req.method} not allowed on ${route.name}`);
      }
      if (m[1] !== undefined) req.ociTarget = { repo: m[1], reference: m[2] };
      if (options.auth !== undefined) {
        const pending = gate(options.auth, req, reply, route.name, m[1]);
        if (pending !== undefined) await pending;
      }
      return handler(req, reply, m);
    }
    throw new RouteNotFoundError("no such endpoint");
  };
  app.route({ method: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"], url: "/v2", handler: dispatch });
  app.route({ method: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"], url: "/v2/*", handler: dispatch });

  // ------------------------------------------------------------ access

  /**
   * Authenticate the request and check it may do what its route does: a
   * read is `pull`, an upload or manifest PUT `push`, a DELETE `delete`;
   * `GET /v2/` and the catalog only need some identity. Anonymous requests
   * and tokens lacking the scope get 401 with the Bearer challenge naming
   * the scope to ask for (how clients discover the token endpoint); known
   * identities without the right get 403 DENIED. Denial comes before any
   * lookup, so nobody learns whether a repository they may not read exists.
   */
  function gate(
    auth: HttpAuth,
    req: FastifyRequest,
    reply: FastifyReply,
    route: string,
    rawRepo?: string,
  ): Promise<void> | undefined {
    // Fast lane (most requests): credentials and settings all cached, allowed: nothing to await.
    const known = auth.authenticator.identifyCached(authorizationOf(req));
    if (known !== undefined && known.claims?.only === undefined) {
      if (rawRepo === undefined && known.kind !== "anonymous") {
        req.identity = known;
        return undefined;
      }
      if (rawRepo !== undefined) {
        const repo = parseRepository(rawRepo);
        if (auth.authenticator.decideCached(known, actionOf(req.method), repo)?.allowed === true) {
          req.identity = known;
          return undefined;
        }
      }
    }
    return gateSlow(auth, req, reply, route, rawRepo);
  }

  async function gateSlow(
    auth: HttpAuth,
    req: FastifyRequest,
    reply: FastifyReply,
    route: string,
    rawRepo?: string,
  ): Promise<void> {
    try {
      const address = clientAddress(req);
      req.identity = await auth.authenticator.identify(authorizationOf(req), address, (outcome) =>
        options.audit?.record(loginRecord(outcome, address, "basic")),
      );
    } catch (err) {
      authFailureHeaders(auth, req, reply, err);
      throw err;
    }
    // A redirect's `_token` reads the one path it was made for, nothing else.
    const only = req.identity.claims?.only;
    if (
      only !== undefined &&
      (only !== (req.raw.url ?? "").split("?", 1)[0] || (req.method !== "GET" && req.method !== "HEAD"))
    )
      throw new AccessDeniedError("this token is good only for the one read it was issued for");
    const anonymous = req.identity.kind === "anonymous";
    if (rawRepo === undefined) {
      if (!anonymous) return;
      challenge(auth, req, reply, route === "catalog" ? "registry:catalog:*" : undefined);
      throw new UnauthorizedError("authentication required");
    }
    const repo = parseRepository(rawRepo);
    const action = actionOf(req.method);
    const decision = await auth.authenticator.decide(req.identity, action, repo);
    if (decision.allowed) return;
    if (anonymous || decision.scopeMissing === true) {
      challenge(
        auth,
        req,
        reply,
        `repository:${repo}:${action === "push" ? "pull,push" : action}`,
        decision.scopeMissing,
      );
      throw new UnauthorizedError(`authentication required to ${action} ${repo}`);
    }
    throw new AccessDeniedError(`denied: ${decision.reason}`);
  }

  /**
   * With auth, a fetch-on-miss redirect carries a pull token for the
   * repository in `_token`: clients drop their Authorization header when
   * redirected to another host (as with a storage backend's presigned URL),
   * and every region accepts the mesh's tokens.
   */
  async function presigned(req: FastifyRequest, repo: string, miss: { redirect: string; region: string }) {
    if (options.auth === undefined) return miss;
    const { token } = await options.auth.authenticator.issue(req.identity, [`repository:${repo}:pull`], {
      only: new URL(miss.redirect).pathname,
    });
    return { ...miss, redirect: `${miss.redirect}?${TOKEN_PARAM}=${encodeURIComponent(token)}` };
  }

  /** May this request's identity pull `repo`? (A cross-repository mount needs it of the source.) */
  async function mayPull(req: FastifyRequest, repo: string): Promise<boolean> {
    if (options.auth === undefined) return true;
    return (await options.auth.authenticator.decide(req.identity, "pull", repo)).allowed;
  }

  // ------------------------------------------------------------ handlers

  async function base(_req: FastifyRequest, reply: FastifyReply) {
    return reply.type("application/json").send("{}");
  }

  async function catalog(req: FastifyRequest, reply: FastifyReply) {
    const q = req.query as Record<string, string | undefined>;
    const n = pageSize(q.n, MAX_PAGE) ?? MAX_PAGE;
    const last = q.last === undefined ? undefined : parseRepository(q.last);
    const page = await visibleRepositories(req, n, last);
    if (page.more) {
      const lastItem = page.items[page.items.length - 1]!;
      reply.header("link", `</v2/_catalog?n=${n}&last=${encodeURIComponent(lastItem)}>; rel="next"`);
    }
    return reply.type("application/json").send(JSON.stringify({ repositories: page.items }));
  }

  /** A catalog page of the repositories this request's identity may pull (all of them without auth). */
  async function visibleRepositories(req: FastifyRequest, n: number, last: string | undefined) {
    const all = req.identity.subject.kind === "user" && req.identity.subject.systemAdmin;
    if (options.auth === undefined || all) return reg.repositories(n, last);
    const items: string[] = [];
    let after = last;
    for (;;) {
      const page = await reg.repositories(MAX_PAGE, after);
      for (const repo of page.items) {
        if (!(await mayPull(req, repo))) continue;
        if (items.length === n) return { items, more: true };
        items.push(repo);
      }
      if (!page.more || page.items.length === 0) return { items, more: false };
      after = page.items[page.items.length - 1];
    }
  }

  async function getBlob(req: FastifyRequest, reply: FastifyReply, m: RegExpExecArray) {
    const repo = parseRepository(m[1]!);
    const digest = parseDigest(m[2]!);
    const headers = {
      "docker-content-digest": digest,
      etag: `"${digest}"`,
      "accept-ranges": "bytes",
      "content-type": "application/octet-stream",
      "cache-control": "max-age=31536000",
    };
    const ac = abortOnClose(req.raw);
    const wanted = (size: number) => blobRange(req.headers.range, size);
    let opened: { size: number; range?: ByteRange; stream?: Readable };
    try {
      opened =
        req.method === "HEAD"
          ? { size: await reg.blobSize(repo, digest) }
          : await reg.openBlob(repo, digest, wanted, ac.signal);
    } catch (err) {
      if (!(err instanceof BlobNotFoundError) || options.fetchOnMiss === undefined || onlyIfCached(req))
        throw err;
      if (req.method === "HEAD") {
        // Answered from where the repository holds it elsewhere, copying no bytes (see fetch-on-miss.ts).
        const located = await options.fetchOnMiss.blobHead(repo, digest);
        if (located === undefined) throw err;
        reply.header(FETCHED_FROM_HEADER, located.region);
        return reply.headers({ ...headers, "content-length": located.size }).send();
      }
      const miss = await options.fetchOnMiss.blob(repo, digest, wanted, ac.signal);
      if (miss === undefined) throw err;
      if ("redirect" in miss) return redirectTo(reply, await presigned(req, repo, miss));
      reply.header(FETCHED_FROM_HEADER, miss.found.region);
      opened = miss.found;
    }
    const { size, range, stream } = opened;
    if (stream === undefined) return reply.headers({ ...headers, "content-length": size }).send();
    reply.headers(headers);
    if (range !== undefined) {
      reply.status(206).header("content-range", `bytes ${range.start}-${range.end}/${size}`);
      reply.header("content-length", range.end - range.start + 1);
    } else {
      reply.header("content-length", size);
    }
    return reply.send(stream);
  }

  async function deleteBlob(req: FastifyRequest, reply: FastifyReply, m: RegExpExecArray) {
    const repo = parseRepository(m[1]!);
    const seq = await reg.deleteBlob(repo, parseDigest(m[2]!), req.identity.name);
    return reply
      .status(202)
      .headers({ "content-length": 0, [SEQ_HEADER]: `${reg.region}:${seq}` })
      .send();
  }

  async function startUpload(req: FastifyRequest, reply: FastifyReply, m: RegExpExecArray) {
    const repo = parseRepository(m[1]!);
    const q = req.query as Record<string, string | undefined>;
    if (q.mount !== undefined) {
      const digest = parseDigest(q.mount);
      const from = q.from === undefined ? undefined : parseRepository(q.from);
      // Without pull on the source, no mount: the client uploads instead (as Distribution answers).
      const seq =
        from === undefined || !(await mayPull(req, from))
          ? undefined
          : await reg.mountBlob(repo, from, digest, req.identity.name);
      if (seq !== undefined) return blobCreated(reply, repo, digest, `${reg.region}:${seq}`);
    } else if (q.digest !== undefined) {
      const digest = parseDigest(q.digest);
      const length = contentLength(req.headers["content-length"]);
      const ac = abortOnClose(req.raw);
      const seq = await reg.pushBlob(repo, req.raw, digest, length, req.identity.name, ac.signal);
      return blobCreated(reply, repo, digest, `${reg.region}:${seq}`);
    }
    // Sessions are capped per client: the identity, or for anonymous clients their address.
    const owner =
      req.identity.kind === "anonymous" ? `address:${clientAddress(req)}` : `identity:${req.identity.name}`;
    const state = await reg.uploads.start(repo, owner);
    return uploadAccepted(reply.status(202), repo, state.id, state.offset);
  }

  async function uploadStatus(_req: FastifyRequest, reply: FastifyReply, m: RegExpExecArray) {
    const repo = parseRepository(m[1]!);
    const state = await reg.uploads.state(repo, m[2]!);
    return uploadAccepted(reply.status(204), repo, state.id, state.offset);
  }

  async function patchUpload(req: FastifyRequest, reply: FastifyReply, m: RegExpExecArray) {
    const repo = parseRepository(m[1]!);
    const { start, length } = chunkBounds(req);
    const ac = abortOnClose(req.raw);
    const state = await reg.uploads.append(repo, m[2]!, req.raw, start, length, ac.signal);
    return uploadAccepted(reply.status(202), repo, state.id, state.offset);
  }

  async function putUpload(req: FastifyRequest, reply: FastifyReply, m: RegExpExecArray) {
    const repo = parseRepository(m[1]!);
    const id = m[2]!;
    const q = req.query as Record<string, string | undefined>;
    if (q.digest === undefined) throw new DigestInvalidError("digest parameter is required");
    const digest = parseDigest(q.digest);
    const { start, length } = chunkBounds(req);
    if (hasBody(req) && length !== 0) {
      const ac = abortOnClose(req.raw);
      await reg.uploads.append(repo, id, req.raw, start, length, ac.signal);
    }
    const seq = await reg.uploads.complete(repo, id, digest, req.identity.name);
    return blobCreated(reply, repo, digest, `${reg.region}:${seq}`);
  }

  async function cancelUpload(_req: FastifyRequest, reply: FastifyReply, m: RegExpExecArray) {
    const repo = parseRepository(m[1]!);
    await reg.uploads.cancel(repo, m[2]!);
    return reply.status(204).send();
  }

  async function getManifest(req: FastifyRequest, reply: FastifyReply, m: RegExpExecArray) {
    const repo = parseRepository(m[1]!);
    const reference = readableReference(m[2]!);
    let found: { digest: Digest; mediaType: string; bytes: Buffer };
    try {
      const local = await reg.resolveManifest(repo, reference);
      found = { digest: local.digest, mediaType: local.record.mediaType, bytes: local.bytes };
    } catch (err) {
      const missing = err instanceof ManifestNotFoundError || err instanceof RepositoryNotFoundError;
      if (!missing || options.fetchOnMiss === undefined || onlyIfCached(req)) throw err;
      if (req.method === "HEAD") {
        // A HEAD never redirects: the manifest's few bytes are fetched and its metadata answered here.
        const remote = await options.fetchOnMiss.manifestHead(repo, m[2]!);
        if (remote === undefined) throw err;
        reply.header(FETCHED_FROM_HEADER, remote.region);
        found = remote;
      } else {
        const miss = await options.fetchOnMiss.manifest(repo, m[2]!);
        if (miss === undefined) throw err;
        if ("redirect" in miss) return redirectTo(reply, await presigned(req, repo, miss));
        reply.header(FETCHED_FROM_HEADER, miss.found.region);
        found = miss.found;
      }
    }
    reply.headers({
      "content-type": found.mediaType,
      "content-length": found.bytes.byteLength,
      "docker-content-digest": found.digest,
      etag: `"${found.digest}"`,
    });
    return reply.send(req.method === "HEAD" ? undefined : found.bytes);
  }

  /**
   * reg.putManifest, and when the manifest refers to content this region
   * lacks but another region holds in the same repository (a HEAD answered
   * from there told the client to skip the upload), that content is adopted
   * here first (fetch-on-miss.ts) and the push tried once more; whatever no
   * region holds stays refused (MANIFEST_BLOB_UNKNOWN).
   */
  async function putManifestAdopting(
    repo: string,
    reference: Reference,
    bytes: Buffer,
    contentType: string | undefined,
    actor: string,
    depth = 0,
  ): ReturnType<typeof reg.putManifest> {
    try {
      return await reg.putManifest(repo, reference, bytes, contentType, actor);
    } catch (err) {
      const fom = options.fetchOnMiss;
      if (!(err instanceof ManifestReferenceError) || fom === undefined || depth > 4) throw err;
      // An index nests at most a few levels; the depth bound keeps a crafted chain from recursing far.
      const missing = (err.detail as { missing?: Digest[] } | undefined)?.missing ?? [];
      // Each is asked of the mesh in turn: a manifest naming more than an image ever does is refused as it is.
      if (missing.length > MAX_ADOPTED) throw err;
      for (const digest of missing) {
        if (await fom.adoptBlob(repo, digest)) {
          await reg.linkStored(repo, digest, actor);
          continue;
        }
        const child = await fom.manifestHead(repo, digest);
        if (child === undefined) throw err;
        await putManifestAdopting(repo, { digest }, child.bytes, child.mediaType, actor, depth + 1);
      }
      return reg.putManifest(repo, reference, bytes, contentType, actor);
    }
  }

  async function putManifest(req: FastifyRequest, reply: FastifyReply, m: RegExpExecArray) {
    const repo = parseRepository(m[1]!);
    const reference = parseReference(m[2]!);
    const bytes = await readBody(req.raw, reg.maxManifestBytes, contentLength(req.headers["content-length"]));
    const result = await putManifestAdopting(
      repo,
      reference,
      bytes,
      req.headers["content-type"],
      req.identity.name,
    );
    reply.status(201).headers({
      location: `/v2/${repo}/manifests/${result.digest}`,
      "docker-content-digest": result.digest,
      "content-length": 0,
      [SEQ_HEADER]: `${reg.region}:${result.seq}`,
    });
    if (result.subject !== undefined) reply.header("oci-subject", result.subject);
    return reply.send();
  }

  async function deleteManifest(req: FastifyRequest, reply: FastifyReply, m: RegExpExecArray) {
    const repo = parseRepository(m[1]!);
    const seq = await reg.deleteManifest(repo, parseReference(m[2]!), req.identity.name);
    return reply
      .status(202)
      .headers({ "content-length": 0, [SEQ_HEADER]: `${reg.region}:${seq}` })
      .send();
  }

  async function listTags(req: FastifyRequest, reply: FastifyReply, m: RegExpExecArray) {
    const repo = parseRepository(m[1]!);
    const q = req.query as Record<string, string | undefined>;
    const n = pageSize(q.n, Number.MAX_SAFE_INTEGER);
    const last = q.last === undefined ? undefined : parseTag(q.last);
    const page = await reg.tags(repo, n ?? Number.MAX_SAFE_INTEGER, last);
    if (page.more && n !== undefined) {
      const lastItem = page.items[page.items.length - 1]!;
      reply.header("link", `</v2/${repo}/tags/list?n=${n}&last=${encodeURIComponent(lastItem)}>; rel="next"`);
    }
    return reply.type("application/json").send(JSON.stringify({ name: repo, tags: page.items }));
  }

  async function referrers(req: FastifyRequest, reply: FastifyReply, m: RegExpExecArray) {
    const repo = parseRepository(m[1]!);
    const digest = parseDigest(m[2]!);
    const q = req.query as Record<string, string | undefined>;
    const artifactType = q.artifactType;
    const found = await reg.referrers(repo, digest, artifactType);
    if (artifactType !== undefined) reply.header("oci-filters-applied", "artifactType");
    const body = {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: found.map((r) => ({
        mediaType: r.mediaType,
        digest: r.digest,
        size: r.size,
        ...(r.artifactType !== undefined ? { artifactType: r.artifactType } : {}),
        ...(r.annotations !== undefined ? { annotations: r.annotations } : {}),
      })),
    };
    return reply.header("content-type", MediaType.OciIndex).send(Buffer.from(JSON.stringify(body)));
  }
}

/** The query parameter of a redirect's pull token (see `presigned`). */
const TOKEN_PARAM = "_token";

/** The request's credentials: its Authorization header, or on a read a redirect's `_token`. */
function authorizationOf(req: FastifyRequest): string | undefined {
  if (req.headers.authorization !== undefined) return req.headers.authorization;
  if (req.method !== "GET" && req.method !== "HEAD") return undefined;
  const token = (req.query as Record<string, string | undefined>)[TOKEN_PARAM];
  return typeof token === "string" && token !== "" ? `Bearer ${token}` : undefined;
}

/** What a request on a repository does: a read pulls, a DELETE deletes, anything else pushes. */
/**
 * `Cache-Control: only-if-cached` (RFC 9111 5.2.1.7): the client asks what
 * this region holds itself, so a miss is answered 404 without asking the
 * mesh (how replication checks and tests tell replicated from fetchable).
 * Read on the miss path only.
 */
function onlyIfCached(req: FastifyRequest): boolean {
  return req.headers["cache-control"]?.includes("only-if-cached") === true;
}

function actionOf(method: string): Action {
  return method === "DELETE" ? "delete" : method === "GET" || method === "HEAD" ? "pull" : "push";
}

/** What the audit log records of a request on an OCI route: artifact-level reads and every write. */
function auditedAction(route: string, method: string): "pull" | "push" | "delete" | undefined {
  if (route === "manifest")
    return method === "GET" ? "pull" : method === "PUT" ? "push" : method === "DELETE" ? "delete" : undefined;
  if (route === "blob" && method === "DELETE") return "delete";
  return undefined;
}

function blobCreated(reply: FastifyReply, repo: string, digest: Digest, seq: string) {
  return reply
    .status(201)
    .headers({
      location: `/v2/${repo}/blobs/${digest}`,
      "docker-content-digest": digest,
      "content-length": 0,
      [SEQ_HEADER]: seq,
    })
    .send();
}

/** Which region content fetched on miss came from (for operators and tests). */
const FETCHED_FROM_HEADER = "meridian-fetched-from";
/**
 * The reference of a manifest GET or HEAD. One that is neither a valid tag nor
 * a valid digest names nothing that can exist, so it is 404 MANIFEST_UNKNOWN
 * (as Distribution, zot and the OCI conformance suite answer), not a 400: a
 * PUT or DELETE keeps the 400 (TAG/DIGEST invalid), since there the client
 * asked to write something malformed.
 */
function readableReference(value: string): Reference {
  try {
    return parseReference(value);
  } catch (err) {
    if (err instanceof TagInvalidError || err instanceof DigestInvalidError) {
      throw new ManifestNotFoundError(`manifest unknown: ${value.slice(0, 200)}`);
    }
    throw err;
  }
}

/** Most missing references one manifest push adopts from other regions (putManifestAdopting). */
const MAX_ADOPTED = 256;

/** Send the client to the region that holds the content (fetch on miss, redirect mode). */
function redirectTo(reply: FastifyReply, miss: { redirect: string; region: string }) {
  return reply
    .status(307)
    .headers({ location: miss.redirect, [FETCHED_FROM_HEADER]: miss.region, "content-length": 0 })
    .send();
}

function uploadAccepted(reply: FastifyReply, repo: string, id: string, offset: number) {
  return reply
    .headers({
      location: `/v2/${repo}/blobs/uploads/${id}`,
      range: `0-${Math.max(0, offset - 1)}`,
      "docker-upload-uuid": id,
      "content-length": 0,
    })
    .send();
}

/** Start and length of a chunk from Content-Range and Content-Length, cross-checked. */
function chunkBounds(req: FastifyRequest): { start: number | undefined; length: number | undefined } {
  const range = uploadContentRange(req.headers["content-range"]);
  let length = contentLength(req.headers["content-length"]);
  if (range !== undefined) {
    const rangeLength = range.end - range.start + 1;
    if (length !== undefined && length !== rangeLength) {
      throw new SizeInvalidError("Content-Length does not match Content-Range");
    }
    length = rangeLength;
  }
  return { start: range?.start, length };
}

/**
 * Errors answered before the request's body was read (a 401/403 of the gate,
 * a refused upload) close the connection instead of reading the rest of the
 * body: a client that is not allowed to send it must not hold the socket
 * while it does, however slowly.
 */
function closeOnUnreadBody(err: Error, req: FastifyRequest, reply: FastifyReply): void {
  if (!req.raw.complete && hasBody(req)) reply.header("connection", "close");
  handleError(err, req, reply);
}

function hasBody(req: FastifyRequest): boolean {
  return req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? 0) > 0;
}

/** An AbortSignal that fires if the client goes away before the response is done. */
function abortOnClose(raw: IncomingMessage): AbortController {
  const ac = new AbortController();
  raw.once("close", () => {
    if (!raw.complete) ac.abort(new RequestAbortedError("client went away"));
  });
  return ac;
}

/** Read a small body whole, refusing more than `limit` bytes (413). */
async function readBody(raw: IncomingMessage, limit: number, declared: number | undefined): Promise<Buffer> {
  if (declared !== undefined && declared > limit) {
    raw.resume();
    throw new ManifestTooLargeError(`manifest larger than ${limit} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of raw) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      raw.resume();
      throw new ManifestTooLargeError(`manifest larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  if (!raw.complete) throw new RequestAbortedError("request body incomplete");
  return Buffer.concat(chunks, size);
}

export const ociApiPlugin = fp(ociApi, { name: "meridian-oci-api", fastify: "5.x" });

export interface BuildAppOptions extends OciApiOptions {
  logger: Logger;
  /** Proxies whose forwarded headers are honoured, when they prove themselves (./forwarded.ts). */
  proxyTrust?: ProxyTrust;
  /** The audit log (recorded to by every API, read by the admin API's GET /audit). */
  audit?: AuditLog;
  /** Serve HTTPS with this certificate (PEM, with its chain) and key; plain HTTP without. */
  https?: { cert: Buffer; key: Buffer };
  /** Timeouts and the per-client connection cap (node/config.ts `http`); Node's defaults without. */
  http?: HttpLimits;
  /** Without auth: where admin writes are accepted from (./admin.ts writesFrom; default loopback). */
  adminWriteAddresses?: readonly string[];
}

/**
 * The node's HTTP application, not listening: the OCI API, the admin API,
 * with `auth` the token endpoint (/auth/token), /metrics and /healthz (both
 * open to all: they carry no content, and scrapers and probes hold no
 * credentials).
 */
export async function buildApp(options: BuildAppOptions): Promise<FastifyInstance> {
  const timeouts = options.http === undefined ? undefined : serverTimeouts(options.http);
  const app = fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    exposeHeadRoutes: false,
    bodyLimit: 1 << 20,
    keepAliveTimeout: options.http?.keepAliveTimeoutMs ?? 75_000,
    // No total deadline (a big upload that keeps moving is never cut); an idle connection is.
    requestTimeout: 0,
    connectionTimeout: options.http?.idleTimeoutMs ?? 0,
    ...(timeouts === undefined ? {} : { http: timeouts }),
    return503OnClosing: true,
    https: options.https === undefined ? null : { ...timeouts, ...options.https },
    // Forwarded headers are judged by ./forwarded.ts (a proxy must prove itself), never by fastify.
    trustProxy: false,
    // Requests Node's HTTP parser rejects (headers too large, malformed, too slow) get the OCI envelope too.
    clientErrorHandler: ociClientError,
  });
  if (options.http !== undefined) {
    const log = options.logger;
    limitConnections(
      app.server,
      new ConnectionCounter(options.http),
      options.https !== undefined,
      (address, refused) => log.warn({ address, refused }, "connections refused: too many from one address"),
    );
  }
  app.decorateRequest("proxied", false);
  const proxyTrust = options.proxyTrust;
  // Only when proxies are configured; before every other hook, so logins and the realm see its verdict.
  if (proxyTrust !== undefined)
    app.addHook("onRequest", (req, _reply, done) => {
      const proof = req.headers[PROXY_PROOF_HEADER];
      if (proof === undefined) return done();
      const trusted = proxyTrust.check(req.socket.remoteAddress, proof);
      if (typeof trusted === "boolean") {
        req.proxied = trusted;
        return done();
      }
      trusted.then((ok) => {
        req.proxied = ok;
        done();
      }, done);
    });
  await app.register(ociApiPlugin, {
    registry: options.registry,
    metrics: options.metrics,
    fetchOnMiss: options.fetchOnMiss,
    auth: options.auth,
    audit: options.audit,
  });
  if (options.auth !== undefined)
    await tokenRoutes(app, {
      authenticator: options.auth.authenticator,
      audit: options.audit,
      realm: options.auth.realm,
    });
  await app.register(adminApiPlugin, {
    registry: options.registry,
    auth: options.auth,
    audit: options.audit,
    writeAddresses: options.adminWriteAddresses,
  });
  app.get("/metrics", async (_req, reply) => {
    return reply.type(options.metrics.contentType).send(await options.metrics.metrics());
  });
  app.get("/healthz", async () => ({
    region: options.registry.region,
    writable: options.registry.writable,
    appliedSeq: options.registry.view.appliedSeq,
  }));
  app.setNotFoundHandler((_req, reply) => {
    reply.status(404).type("application/json").send(ociErrorBody("UNSUPPORTED", "no such endpoint"));
  });
  return app;
}
