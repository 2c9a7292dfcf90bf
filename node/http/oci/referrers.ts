/**
 * `GET /v2/<name>/referrers/<digest>[?artifactType=]`: the manifests whose
 * subject is the digest, as an OCI image index (filtered by artifact type
 * when asked, and then saying so in `OCI-Filters-Applied`).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { parseDigest } from "../../../protocol/digest.js";
import { UnsupportedError } from "../../../protocol/errors.js";
import { MediaType } from "../../../protocol/media-types.js";
import { parseRepository } from "../../../protocol/names.js";
import { methodsNotAllowed, type OciRoutesOptions, ociConfig, queryErrors } from "./common.js";
import { OCI_URLS } from "./paths.js";

type ReferrersRequest = FastifyRequest<{
  Params: { name: string; digest: string };
  Querystring: { artifactType?: string };
}>;

const REFERRERS_QUERY = { type: "object", properties: { artifactType: { type: "string" } } } as const;

export async function referrersRoutes(app: FastifyInstance, options: OciRoutesOptions): Promise<void> {
  const reg = options.registry;

  async function referrers(req: ReferrersRequest, reply: FastifyReply) {
    const repo = parseRepository(req.params.name);
    const digest = parseDigest(req.params.digest);
    const artifactType = req.query.artifactType;
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

  app.get(
    OCI_URLS.referrers,
    {
      config: ociConfig("referrers", "pull"),
      schema: { querystring: REFERRERS_QUERY },
      // One artifact type per request (the spec's filter); several are refused rather than half-applied.
      schemaErrorFormatter: queryErrors({ artifactType: (m) => new UnsupportedError(m) }),
    },
    referrers,
  );
  methodsNotAllowed(app, "referrers", ["GET"]);
}
