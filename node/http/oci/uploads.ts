/**
 * Blob uploads (`/v2/<name>/blobs/uploads/[<id>]`): a monolithic push
 * (`POST ?digest=`), a cross-repository mount (`POST ?mount=&from=`), and
 * sessions (POST to open, PATCH chunks, PUT `?digest=` to complete, GET
 * status, DELETE cancel). Bodies are never parsed: each handler streams
 * `request.raw` into the blob store (registry.uploads, node/data/uploads.ts).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { type Digest, parseDigest } from "../../../protocol/digest.js";
import { DigestInvalidError, NameInvalidError, SizeInvalidError } from "../../../protocol/errors.js";
import { parseRepository } from "../../../protocol/names.js";
import { clientAddress } from "../forwarded.js";
import { contentLength, uploadContentRange } from "../headers.js";
import {
  abortOnClose,
  hasBody,
  mayPull,
  methodsNotAllowed,
  type OciRoutesOptions,
  ociConfig,
  queryErrors,
  type RepoRequest,
  SEQ_HEADER,
} from "./common.js";
import { OCI_URLS } from "./paths.js";

type StartRequest = FastifyRequest<{
  Params: { name: string };
  Querystring: { mount?: string; from?: string; digest?: string };
}>;
type SessionRequest = RepoRequest<{ name: string; id: string }>;
type CompleteRequest = FastifyRequest<{
  Params: { name: string; id: string };
  Querystring: { digest: string };
}>;

const digestInvalid = (message: string) => new DigestInvalidError(message);

const START_QUERY = {
  type: "object",
  properties: { mount: { type: "string" }, from: { type: "string" }, digest: { type: "string" } },
} as const;
const COMPLETE_QUERY = {
  type: "object",
  properties: { digest: { type: "string" } },
  required: ["digest"],
} as const;

export async function uploadRoutes(app: FastifyInstance, options: OciRoutesOptions): Promise<void> {
  const reg = options.registry;

  async function startUpload(req: StartRequest, reply: FastifyReply) {
    const repo = parseRepository(req.params.name);
    // A pull-through cache project holds upstream's copy only (node/pull-through.ts): 403 DENIED.
    options.pullThrough?.refusePush(repo);
    const q = req.query;
    if (q.mount !== undefined) {
      const digest = parseDigest(q.mount);
      const from = q.from === undefined ? undefined : parseRepository(q.from);
      // Without pull on the source, no mount: the client uploads instead (as Distribution answers).
      const seq =
        from === undefined || !(await mayPull(options.auth, req, from))
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

  async function uploadStatus(req: SessionRequest, reply: FastifyReply) {
    const repo = parseRepository(req.params.name);
    const state = await reg.uploads.state(repo, req.params.id);
    return uploadAccepted(reply.status(204), repo, state.id, state.offset);
  }

  async function patchUpload(req: SessionRequest, reply: FastifyReply) {
    const repo = parseRepository(req.params.name);
    const { start, length } = chunkBounds(req);
    const ac = abortOnClose(req.raw);
    const state = await reg.uploads.append(repo, req.params.id, req.raw, start, length, ac.signal);
    return uploadAccepted(reply.status(202), repo, state.id, state.offset);
  }

  async function putUpload(req: CompleteRequest, reply: FastifyReply) {
    const repo = parseRepository(req.params.name);
    options.pullThrough?.refusePush(repo);
    const id = req.params.id;
    const digest = parseDigest(req.query.digest);
    const { start, length } = chunkBounds(req);
    const seq =
      hasBody(req) && length !== 0
        ? await reg.uploads.finish(
            repo,
            id,
            req.raw,
            start,
            length,
            digest,
            req.identity.name,
            abortOnClose(req.raw).signal,
          )
        : await reg.uploads.complete(repo, id, digest, req.identity.name);
    return blobCreated(reply, repo, digest, `${reg.region}:${seq}`);
  }

  async function cancelUpload(req: SessionRequest, reply: FastifyReply) {
    const repo = parseRepository(req.params.name);
    await reg.uploads.cancel(repo, req.params.id);
    return reply.status(204).send();
  }

  app.post(
    OCI_URLS.upload_start,
    {
      config: ociConfig("upload_start", "push"),
      schema: { querystring: START_QUERY },
      schemaErrorFormatter: queryErrors({
        mount: digestInvalid,
        digest: digestInvalid,
        from: (m) => new NameInvalidError(m),
      }),
    },
    startUpload,
  );
  methodsNotAllowed(app, "upload_start", ["POST"]);
  // Reading a session's status is a read (pull); cancelling one needs delete, as every DELETE does.
  app.get(OCI_URLS.upload, { config: ociConfig("upload", "pull") }, uploadStatus);
  app.patch(OCI_URLS.upload, { config: ociConfig("upload", "push") }, patchUpload);
  app.put(
    OCI_URLS.upload,
    {
      config: ociConfig("upload", "push"),
      schema: { querystring: COMPLETE_QUERY },
      schemaErrorFormatter: queryErrors({ digest: digestInvalid }),
    },
    putUpload,
  );
  app.delete(OCI_URLS.upload, { config: ociConfig("upload", "delete") }, cancelUpload);
  methodsNotAllowed(app, "upload", ["GET", "PATCH", "PUT", "DELETE"]);
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
