/**
 * Manifests: `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>`. A read
 * misses over to another region (fetch on miss); a push refers only to
 * content the repository holds, adopting from another region what a HEAD
 * answered from there told the client to skip.
 */
import type { IncomingMessage } from "node:http";
import type { FastifyInstance, FastifyReply } from "fastify";
import type { Digest } from "../../../protocol/digest.js";
import {
  DigestInvalidError,
  ManifestNotFoundError,
  ManifestReferenceError,
  ManifestTooLargeError,
  RepositoryNotFoundError,
  RequestAbortedError,
  TagInvalidError,
} from "../../../protocol/errors.js";
import { parseRepository } from "../../../protocol/names.js";
import { parseReference, type Reference } from "../../data/registry.js";
import type { PullThrough, Upstream } from "../../pull-through.js";
import { contentLength } from "../headers.js";
import {
  FETCHED_FROM_HEADER,
  methodsNotAllowed,
  type OciRoutesOptions,
  ociConfig,
  onlyIfCached,
  presigned,
  type RepoRequest,
  redirectTo,
  SEQ_HEADER,
} from "./common.js";
import { OCI_URLS } from "./paths.js";

type ManifestRequest = RepoRequest<{ name: string; reference: string }>;

/** Most missing references one manifest push adopts from other regions (putManifestAdopting). */
const MAX_ADOPTED = 256;

export async function manifestRoutes(app: FastifyInstance, options: OciRoutesOptions): Promise<void> {
  const reg = options.registry;

  async function getManifest(req: ManifestRequest, reply: FastifyReply) {
    const repo = parseRepository(req.params.name);
    const raw = req.params.reference;
    const reference = readableReference(raw);
    let found: { digest: Digest; mediaType: string; bytes: Buffer };
    const upstream = onlyIfCached(req) ? undefined : options.pullThrough?.upstreamOf(repo);
    if (upstream !== undefined) {
      // A pull-through cache project: a miss (or a tag past its freshness) asks upstream.
      const local = await resolveProxied(repo, reference, upstream);
      if (req.method === "GET") reg.pulls?.pulled(repo, local.digest);
      return sendManifest(req, reply, {
        digest: local.digest,
        mediaType: local.record.mediaType,
        bytes: local.bytes,
      });
    }
    try {
      const local = await reg.resolveManifest(repo, reference);
      found = { digest: local.digest, mediaType: local.record.mediaType, bytes: local.bytes };
      // Retention's pulledDays: a Map update, no await (node/data/pull-record.ts).
      if (req.method === "GET") reg.pulls?.pulled(repo, local.digest);
    } catch (err) {
      const missing = err instanceof ManifestNotFoundError || err instanceof RepositoryNotFoundError;
      if (!missing || options.fetchOnMiss === undefined || onlyIfCached(req)) throw err;
      if (req.method === "HEAD") {
        // A HEAD never redirects: the manifest's few bytes are fetched and its metadata answered here.
        const remote = await options.fetchOnMiss.manifestHead(repo, raw);
        if (remote === undefined) throw err;
        reply.header(FETCHED_FROM_HEADER, remote.region);
        found = remote;
      } else {
        const miss = await options.fetchOnMiss.manifest(repo, raw);
        if (miss === undefined) throw err;
        if ("redirect" in miss) return redirectTo(reply, await presigned(options.auth, req, repo, miss));
        reply.header(FETCHED_FROM_HEADER, miss.found.region);
        found = miss.found;
      }
    }
    return sendManifest(req, reply, found);
  }

  async function sendManifest(
    req: ManifestRequest,
    reply: FastifyReply,
    found: { digest: Digest; mediaType: string; bytes: Buffer },
  ) {
    // A project's block-pull policy judges what a GET would hand out (../../pull-gate.ts).
    if (req.method === "GET" && options.pullGate !== undefined)
      await options.pullGate.check(req.identity, parseRepository(req.params.name), found.digest, (reason) => {
        req.auditDetail = reason;
      });
    reply.headers({
      "content-type": found.mediaType,
      "content-length": found.bytes.byteLength,
      "docker-content-digest": found.digest,
      etag: `"${found.digest}"`,
    });
    return reply.send(req.method === "HEAD" ? undefined : found.bytes);
  }

  /**
   * A manifest of a pull-through cache project (node/pull-through.ts): the
   * cached one (a tag past its freshness confirmed with upstream first,
   * within a bound; moved when upstream moved it), else fetched from
   * upstream with its closure, stored, and read back as any pushed manifest.
   * Misses in these projects never go to other regions: upstream is the source.
   */
  async function resolveProxied(repo: string, reference: Reference, upstream: Upstream) {
    const pt = options.pullThrough as PullThrough;
    try {
      const local = await reg.resolveManifest(repo, reference);
      if (!("tag" in reference)) {
        pt.count("manifest", "hit");
        return local;
      }
      if (!(await pt.refresh(repo, reference.tag, local.digest, upstream))) return local;
    } catch (err) {
      if (!(err instanceof ManifestNotFoundError || err instanceof RepositoryNotFoundError)) throw err;
      await pt.manifestMiss(repo, reference, upstream);
    }
    return reg.resolveManifest(repo, reference);
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

  async function putManifest(req: ManifestRequest, reply: FastifyReply) {
    const repo = parseRepository(req.params.name);
    // A pull-through cache project holds upstream's copy only: 403 DENIED, the body unread.
    options.pullThrough?.refusePush(repo);
    const reference = parseReference(req.params.reference);
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

  async function deleteManifest(req: ManifestRequest, reply: FastifyReply) {
    const repo = parseRepository(req.params.name);
    const seq = await reg.deleteManifest(repo, parseReference(req.params.reference), req.identity.name);
    return reply
      .status(202)
      .headers({ "content-length": 0, [SEQ_HEADER]: `${reg.region}:${seq}` })
      .send();
  }

  const url = OCI_URLS.manifest;
  app.route({ method: ["GET", "HEAD"], url, config: ociConfig("manifest", "pull"), handler: getManifest });
  app.put(url, { config: ociConfig("manifest", "push") }, putManifest);
  app.delete(url, { config: ociConfig("manifest", "delete") }, deleteManifest);
  methodsNotAllowed(app, "manifest", ["GET", "HEAD", "PUT", "DELETE"]);
}

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
