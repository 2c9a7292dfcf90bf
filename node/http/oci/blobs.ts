/**
 * Blob reads and deletes: `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`. A miss
 * is answered from another region when the mesh holds the blob (fetch on
 * miss: relayed, or redirected with a pull token; a HEAD from that region's
 * metadata, copying no bytes). On a store with direct URLs (S3, `redirect`),
 * a GET of a blob this region holds is a 307 to a presigned URL.
 */
import type { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply } from "fastify";
import { parseDigest } from "../../../protocol/digest.js";
import { BlobNotFoundError } from "../../../protocol/errors.js";
import { parseRepository } from "../../../protocol/names.js";
import type { ByteRange } from "../../data/blob-store.js";
import { FileBody } from "../../data/file-body.js";
import { sendOciError } from "../errors.js";
import { blobRange } from "../headers.js";
import {
  abortOnClose,
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

type BlobRequest = RepoRequest<{ name: string; digest: string }>;

/**
 * The fs store's bytes, written by the body itself into the response through
 * reused buffers (file-body.ts: no per-chunk allocation, so no GC per pull)
 * instead of piped by fastify. Everything before the body is as for any reply:
 * auth and the gate ran, the status and headers are the reply's (Content-Length,
 * so no chunked framing), and a failed first read is still an ordinary error
 * answer, because the reply is taken over only once the first bytes are in
 * hand. After that, a failure (client gone, cut by the idle timeout, a read
 * error) destroys the connection, as a piped stream's does; the onResponse
 * hooks (metrics, audit) run on 'finish' as for every reply.
 */
async function sendFileBody(reply: FastifyReply, body: FileBody): Promise<void> {
  const res = reply.raw;
  try {
    await body.writeTo(res, () => {
      reply.hijack();
      for (const [name, value] of Object.entries(reply.getHeaders())) {
        if (value !== undefined) res.setHeader(name, value);
      }
      res.writeHead(res.statusCode);
    });
  } catch (err) {
    if (!reply.sent) throw err;
    res.destroy();
  }
}

export async function blobRoutes(app: FastifyInstance, options: OciRoutesOptions): Promise<void> {
  const reg = options.registry;

  async function getBlob(req: BlobRequest, reply: FastifyReply) {
    const repo = parseRepository(req.params.name);
    const digest = parseDigest(req.params.digest);
    const headers = {
      "docker-content-digest": digest,
      etag: `"${digest}"`,
      "accept-ranges": "bytes",
      "content-type": "application/octet-stream",
      "cache-control": "max-age=31536000",
    };
    if (req.method === "HEAD") {
      // Every blob push begins with this HEAD, usually a miss: answered without an error thrown.
      let size = await reg.linkedBlobSize(repo, digest);
      const upstream = onlyIfCached(req) ? undefined : options.pullThrough?.upstreamOf(repo);
      if (upstream !== undefined) {
        // A pull-through cache project: a miss is fetched into the cache, then answered from it.
        if (size === undefined) await options.pullThrough?.blobMiss(repo, digest, upstream);
        else options.pullThrough?.count("blob", "hit");
        size = await reg.linkedBlobSize(repo, digest);
      }
      if (size !== undefined) return reply.headers({ ...headers, "content-length": size }).send();
      // Answered from where the repository holds it elsewhere, copying no bytes (see fetch-on-miss.ts).
      const located =
        options.fetchOnMiss === undefined || onlyIfCached(req)
          ? undefined
          : await options.fetchOnMiss.blobHead(repo, digest);
      if (located === undefined) return sendOciError(reply, BlobNotFoundError, "blob unknown", { digest });
      reply.header(FETCHED_FROM_HEADER, located.region);
      return reply.headers({ ...headers, "content-length": located.size }).send();
    }
    const ac = abortOnClose(req.raw);
    const wanted = (size: number) => blobRange(req.headers.range, size);
    let opened: { size: number; range?: ByteRange; stream?: Readable };
    try {
      if (req.method === "GET" && reg.redirectsBlobs) {
        // S3 with `redirect`: the bytes come from the bucket, through a presigned URL that
        // expires within a minute (s3-blob-store.ts); the view still decides what is visible.
        const location = await reg.blobUrl(repo, digest);
        return reply
          .status(307)
          .headers({ location, "docker-content-digest": digest, "content-length": 0 })
          .send();
      }
      opened = await reg.openBlob(repo, digest, wanted, ac.signal);
      if (options.pullThrough?.upstreamOf(repo) !== undefined) options.pullThrough.count("blob", "hit");
    } catch (err) {
      const upstream = onlyIfCached(req) ? undefined : options.pullThrough?.upstreamOf(repo);
      if (err instanceof BlobNotFoundError && upstream !== undefined) {
        // A pull-through cache project: fetched from upstream into the cache, then served from it.
        await options.pullThrough?.blobMiss(repo, digest, upstream);
        opened = await reg.openBlob(repo, digest, wanted, ac.signal);
        return sendBlob(reply, headers, opened);
      }
      if (!(err instanceof BlobNotFoundError) || options.fetchOnMiss === undefined || onlyIfCached(req))
        throw err;
      const miss = await options.fetchOnMiss.blob(repo, digest, wanted, ac.signal);
      if (miss === undefined) throw err;
      if ("redirect" in miss) return redirectTo(reply, await presigned(options.auth, req, repo, miss));
      reply.header(FETCHED_FROM_HEADER, miss.found.region);
      opened = miss.found;
    }
    return sendBlob(reply, headers, opened);
  }

  function sendBlob(
    reply: FastifyReply,
    headers: Record<string, string>,
    opened: { size: number; range?: ByteRange; stream?: Readable },
  ) {
    const { size, range, stream } = opened;
    if (stream === undefined) return reply.headers({ ...headers, "content-length": size }).send();
    reply.headers(headers);
    if (range !== undefined) {
      reply.status(206).header("content-range", `bytes ${range.start}-${range.end}/${size}`);
      reply.header("content-length", range.end - range.start + 1);
    } else {
      reply.header("content-length", size);
    }
    if (stream instanceof FileBody) return sendFileBody(reply, stream);
    return reply.send(stream);
  }

  async function deleteBlob(req: BlobRequest, reply: FastifyReply) {
    const repo = parseRepository(req.params.name);
    const seq = await reg.deleteBlob(repo, parseDigest(req.params.digest), req.identity.name);
    return reply
      .status(202)
      .headers({ "content-length": 0, [SEQ_HEADER]: `${reg.region}:${seq}` })
      .send();
  }

  app.route({
    method: ["GET", "HEAD"],
    url: OCI_URLS.blob,
    config: ociConfig("blob", "pull"),
    handler: getBlob,
  });
  app.route({
    method: "DELETE",
    url: OCI_URLS.blob,
    config: ociConfig("blob", "delete"),
    handler: deleteBlob,
  });
  methodsNotAllowed(app, "blob", ["GET", "HEAD", "DELETE"]);
}
