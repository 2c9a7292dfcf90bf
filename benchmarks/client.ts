/**
 * The benchmark's OCI client: plain node:http with keep-alive, request bodies
 * streamed piece by piece with back-pressure, response bodies counted (not
 * hashed) unless asked for. The same code talks to both registries.
 *
 * Monolithic blob push: a single `POST ?digest=` with the whole body where the
 * registry supports it (Meridian); CNCF Distribution 2.8 answers such a POST
 * with 202 without reading the body, so for it the client uses the spec's
 * other monolithic form, `POST` (empty) then one `PUT ?digest=` with the whole
 * body. The choice is made once per registry by a small probe.
 */

import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { Agent, type IncomingHttpHeaders, request } from "node:http";
import { promisify } from "node:util";
import type { GeneratedBlob } from "./data.js";

const execFileAsync = promisify(execFile);

export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
export const OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip";

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  /** Bytes of the body received. */
  bytes: number;
  /** The body when `collect` was asked for, else at least its first 64 KiB. */
  body: Buffer;
}

export type Body = Buffer | Iterable<Buffer> | undefined;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export type MonolithicMode = "post" | "post-put";

export class BenchClient {
  readonly agent: Agent;
  monolithic: MonolithicMode | undefined;

  /** `headers` go with every request (an `authorization` for a registry that requires one). */
  constructor(
    readonly base: string,
    maxSockets = 8,
    readonly headers: Record<string, string> = {},
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets });
  }

  close(): void {
    this.agent.destroy();
  }

  url(pathOrLocation: string): URL {
    return new URL(pathOrLocation, this.base);
  }

  send(
    method: string,
    target: string | URL,
    options: { headers?: Record<string, string | number>; body?: Body; collect?: boolean } = {},
  ): Promise<Reply> {
    const url = typeof target === "string" ? this.url(target) : target;
    return new Promise<Reply>((resolve, reject) => {
      const req = request(url, {
        method,
        agent: this.agent,
        headers: { ...this.headers, ...options.headers },
      });
      req.on("error", reject);
      req.on("response", (res) => {
        let bytes = 0;
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => {
          // Small bodies are kept anyway, for error messages.
          if (options.collect || bytes < 65536) chunks.push(chunk);
          bytes += chunk.length;
        });
        res.on("error", reject);
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            bytes,
            body: Buffer.concat(chunks),
          }),
        );
      });
      writeBody(req, options.body).catch((err) => {
        req.destroy(err);
        reject(err);
      });
    });
  }

  /** Find out once whether the registry accepts a single-request `POST ?digest=` upload. */
  async probeMonolithic(repo: string): Promise<MonolithicMode> {
    if (this.monolithic !== undefined) return this.monolithic;
    const bytes = Buffer.from(`probe ${Date.now()} ${Math.random()}`);
    const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    const res = await this.send("POST", `/v2/${repo}/blobs/uploads/?digest=${digest}`, {
      headers: { "content-type": "application/octet-stream", "content-length": bytes.length },
      body: bytes,
    });
    if (res.status === 201) {
      this.monolithic = "post";
    } else if (res.status === 202) {
      this.monolithic = "post-put";
      const location = res.headers.location;
      if (location) await this.send("DELETE", this.url(location));
    } else {
      throw new Error(`monolithic probe: ${res.status}`);
    }
    return this.monolithic;
  }

  /** Monolithic push of `size` bytes (a single request carries the whole body). */
  async pushMonolithic(
    repo: string,
    digest: string,
    size: number,
    body: Body,
    mediaType = OCI_LAYER,
  ): Promise<Descriptor> {
    const mode = await this.probeMonolithic(repo);
    const headers = { "content-type": "application/octet-stream", "content-length": size };
    if (mode === "post") {
      const res = await this.send("POST", `/v2/${repo}/blobs/uploads/?digest=${digest}`, { headers, body });
      expect(res, 201, "blob POST");
    } else {
      const start = await this.send("POST", `/v2/${repo}/blobs/uploads/`, {
        headers: { "content-length": 0 },
      });
      expect(start, 202, "upload start");
      const put = withDigest(this.url(location(start)), digest);
      const res = await this.send("PUT", put, { headers, body });
      expect(res, 201, "blob PUT");
    }
    return { mediaType, digest, size };
  }

  /** POST a session, PATCH `chunkSize` chunks with Content-Range, PUT ?digest= with no body. */
  async pushChunked(repo: string, blob: GeneratedBlob, chunkSize: number): Promise<Descriptor> {
    const digest = blob.digest();
    const start = await this.send("POST", `/v2/${repo}/blobs/uploads/`, { headers: { "content-length": 0 } });
    expect(start, 202, "upload start");
    let loc = location(start);
    for (let offset = 0; offset < blob.size; offset += chunkSize) {
      const n = Math.min(chunkSize, blob.size - offset);
      const res = await this.send("PATCH", this.url(loc), {
        headers: {
          "content-type": "application/octet-stream",
          "content-length": n,
          "content-range": `${offset}-${offset + n - 1}`,
        },
        body: blob.pieces(offset, n),
      });
      expect(res, 202, `upload chunk at ${offset}`);
      loc = location(res);
    }
    const res = await this.send("PUT", withDigest(this.url(loc), digest), {
      headers: { "content-length": 0 },
    });
    expect(res, 201, "upload finish");
    return { mediaType: OCI_LAYER, digest, size: blob.size };
  }

  /** GET a blob, counting its bytes (no hashing). */
  /**
   * Download a large blob with curl (a C client, as wrk is for small requests):
   * the Node client tops out near 460 MiB/s on these machines, well below what
   * either registry serves, so a Node download would measure the client.
   */
  async pullBlobCurl(repo: string, digest: string, size: number): Promise<number> {
    const { stdout } = await execFileAsync("curl", [
      "-sS",
      "--fail",
      "-o",
      "/dev/null",
      "-w",
      "%{size_download}",
      ...Object.entries(this.headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]),
      this.url(`/v2/${repo}/blobs/${digest}`).href,
    ]);
    const bytes = Number(stdout.trim());
    if (bytes !== size) throw new Error(`blob GET (curl): ${bytes} bytes, expected ${size}`);
    return bytes;
  }

  async pullBlob(repo: string, digest: string, size: number): Promise<number> {
    const res = await this.send("GET", `/v2/${repo}/blobs/${digest}`);
    expect(res, 200, "blob GET");
    if (res.bytes !== size) throw new Error(`blob GET: ${res.bytes} bytes, expected ${size}`);
    return res.bytes;
  }

  async putManifest(repo: string, reference: string, manifest: unknown): Promise<string> {
    const bytes = Buffer.from(JSON.stringify(manifest));
    const res = await this.send("PUT", `/v2/${repo}/manifests/${reference}`, {
      headers: { "content-type": OCI_MANIFEST, "content-length": bytes.length },
      body: bytes,
    });
    expect(res, 201, "manifest PUT");
    return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
  }

  async getManifest(repo: string, reference: string): Promise<{ digest: string; manifest: ImageManifest }> {
    const res = await this.send("GET", `/v2/${repo}/manifests/${reference}`, {
      headers: { accept: OCI_MANIFEST },
      collect: true,
    });
    expect(res, 200, "manifest GET");
    return {
      digest: String(res.headers["docker-content-digest"]),
      manifest: JSON.parse(res.body.toString("utf8")),
    };
  }
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

async function writeBody(req: ReturnType<typeof request>, body: Body): Promise<void> {
  if (body === undefined) {
    req.end();
    return;
  }
  if (Buffer.isBuffer(body)) {
    req.end(body);
    return;
  }
  for (const piece of body) {
    if (req.destroyed) return;
    if (!req.write(piece)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          req.off("drain", done);
          req.off("close", done);
          resolve();
        };
        req.on("drain", done);
        req.on("close", done);
      });
    }
  }
  req.end();
}

function location(res: Reply): string {
  const loc = res.headers.location;
  if (!loc) throw new Error(`no Location in a ${res.status} response`);
  return loc;
}

function withDigest(url: URL, digest: string): URL {
  url.searchParams.set("digest", digest);
  return url;
}

function expect(res: Reply, status: number, what: string): void {
  if (res.status !== status) {
    const text = res.body.toString("utf8").slice(0, 300);
    throw new Error(`${what}: HTTP ${res.status}, expected ${status} ${text}`);
  }
}

/** At most `limit` tasks at a time, in the order they were asked for. */
export class Limiter {
  #active = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(readonly limit: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    // A finishing task hands its slot straight to the next waiter.
    if (this.#active >= this.limit) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#active++;
    try {
      return await task();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#active--;
    }
  }
}
