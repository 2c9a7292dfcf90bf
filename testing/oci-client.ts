/**
 * A minimal OCI Distribution client over fetch, for tests and benchmarks:
 * push blobs (monolithic or chunked) and manifests, build random images.
 */
import { createHash, randomBytes } from "node:crypto";

export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
export const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
export const OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip";

export function sha256(bytes: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string };
}

export class OciClient {
  /** `authorization`: sent with every request that does not set its own (e.g. "Basic …", "Bearer …"). */
  constructor(
    readonly base: string,
    readonly authorization?: string,
  ) {}

  url(path: string): string {
    return `${this.base}${path}`;
  }

  fetch(path: string, init?: RequestInit): Promise<Response> {
    if (this.authorization === undefined) return fetch(this.url(path), init);
    const headers = new Headers(init?.headers);
    if (!headers.has("authorization")) headers.set("authorization", this.authorization);
    return fetch(this.url(path), { ...init, headers });
  }

  /** POST ?digest= with the whole body; returns the descriptor. */
  async pushBlob(repo: string, bytes: Uint8Array, mediaType = OCI_LAYER): Promise<Descriptor> {
    const digest = sha256(bytes);
    const res = await this.fetch(`/v2/${repo}/blobs/uploads/?digest=${digest}`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: bytes,
    });
    if (res.status !== 201) throw new Error(`blob push ${res.status}: ${await res.text()}`);
    return { mediaType, digest, size: bytes.byteLength };
  }

  /** POST a session, PATCH chunks with Content-Range, PUT to finish. */
  async pushBlobChunked(repo: string, bytes: Uint8Array, chunkSize: number): Promise<Descriptor> {
    const digest = sha256(bytes);
    let res = await this.fetch(`/v2/${repo}/blobs/uploads/`, { method: "POST" });
    if (res.status !== 202) throw new Error(`upload start ${res.status}`);
    let location = res.headers.get("location")!;
    for (let offset = 0; offset < bytes.byteLength; offset += chunkSize) {
      const chunk = bytes.subarray(offset, Math.min(offset + chunkSize, bytes.byteLength));
      res = await fetch(new URL(location, this.base), {
        method: "PATCH",
        headers: {
          "content-type": "application/octet-stream",
          "content-range": `${offset}-${offset + chunk.byteLength - 1}`,
        },
        body: chunk,
      });
      if (res.status !== 202) throw new Error(`upload chunk ${res.status}: ${await res.text()}`);
      location = res.headers.get("location")!;
    }
    const put = new URL(location, this.base);
    put.searchParams.set("digest", digest);
    res = await fetch(put, { method: "PUT" });
    if (res.status !== 201) throw new Error(`upload finish ${res.status}: ${await res.text()}`);
    return { mediaType: OCI_LAYER, digest, size: bytes.byteLength };
  }

  async pushManifest(
    repo: string,
    reference: string,
    manifest: unknown,
    mediaType = OCI_MANIFEST,
  ): Promise<{ digest: string; bytes: Buffer; response: Response }> {
    const bytes = Buffer.from(typeof manifest === "string" ? manifest : JSON.stringify(manifest));
    const response = await this.fetch(`/v2/${repo}/manifests/${reference}`, {
      method: "PUT",
      headers: { "content-type": mediaType },
      body: bytes,
    });
    if (response.status !== 201)
      throw new Error(`manifest push ${response.status}: ${await response.text()}`);
    return { digest: sha256(bytes), bytes, response };
  }

  /** Push a random image (config + `layers` layers of `layerSize` bytes) and tag it. */
  async pushRandomImage(
    repo: string,
    tag: string,
    layers = 2,
    layerSize = 1024,
    extra: Record<string, unknown> = {},
  ): Promise<{
    digest: string;
    manifest: Record<string, unknown>;
    layers: Descriptor[];
    config: Descriptor;
  }> {
    const config = await this.pushBlob(
      repo,
      Buffer.from(
        JSON.stringify({ architecture: "amd64", os: "linux", nonce: randomBytes(8).toString("hex") }),
      ),
      OCI_CONFIG,
    );
    const layerDescs: Descriptor[] = [];
    for (let i = 0; i < layers; i++) layerDescs.push(await this.pushBlob(repo, randomBytes(layerSize)));
    const manifest = { schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: layerDescs, ...extra };
    const { digest } = await this.pushManifest(repo, tag, manifest);
    return { digest, manifest, layers: layerDescs, config };
  }
}

/** The OCI error envelope's first code, for assertions. */
export async function errorCode(res: Response): Promise<string | undefined> {
  const body = (await res.json()) as { errors?: Array<{ code: string }> };
  return body.errors?.[0]?.code;
}
