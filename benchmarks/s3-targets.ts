/**
 * The three contestants of the S3 benchmark (s3.ts), each started fresh for
 * one round and driven through the same four operations:
 *
 * - `meridian-fs`: a Meridian node on its filesystem store (default
 *   settings, fsync on), with its own nats-server (servers.ts);
 * - `meridian-s3`: the same node with `storage.type=s3` on a fresh s3rver
 *   child process (testing/s3.ts startTestS3: s3rver 3.7 plus
 *   read-after-write fixes, objects in a temporary directory);
 * - `plain-sdk`: no registry: the same bytes put to and got from a fresh
 *   s3rver by this process with a plain `@aws-sdk/client-s3` client (the
 *   node's own client settings, node/data/s3-client.ts makeS3Client): the
 *   S3 server's limit on this machine, which Meridian-S3 is held against.
 *
 * The operations, in the forms real clients use:
 *
 * | operation | Meridian (HTTP, node:http client) | plain SDK |
 * |---|---|---|
 * | push POST+PUT | empty `POST`, one `PUT ?digest=` with the 256 MiB body | lib-storage `Upload`, 8 MiB parts, 4 in flight |
 * | push chunked | `POST`, 8 MiB `PATCH`es with `Content-Range`, empty `PUT ?digest=` | lib-storage `Upload` (the limit); also `UploadPart` one 8 MiB part at a time |
 * | pull | `GET` by curl to /dev/null | `GetObject` streamed and counted in this process; also curl of a presigned URL |
 * | images | per blob `HEAD`, `POST`, `PUT ?digest=`, 8 in flight; then each manifest `PUT` | per blob `HeadObject` + `PutObject`, 8 in flight; each manifest `PutObject` |
 *
 * Digests: the client knows them up front (as docker and skopeo do); pulls
 * are checked once per contestant, outside the timing (`verifyPull`).
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { promisify } from "node:util";
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { makeS3Client } from "../node/data/s3-client.js";
import { S3RVER_CREDENTIALS, startTestS3, type TestS3 } from "../testing/s3.js";
import { BenchClient, Limiter } from "./client.js";
import { type GeneratedBlob, MiB } from "./data.js";
import { pushImages } from "./pushforms.js";
import { startTarget, type Target } from "./servers.js";
import type { ImageData } from "./suites.js";

const execFileAsync = promisify(execFile);

export const CONTESTANTS = ["meridian-fs", "meridian-s3", "plain-sdk"] as const;
export type Contestant = (typeof CONTESTANTS)[number];

export const BUCKET = "meridian";
/** Part size of the plain client's multipart uploads: the S3 store's default (s3-blob-store.ts). */
export const PLAIN_PART_BYTES = 8 * MiB;
/** lib-storage's default number of parts in flight. */
export const PLAIN_QUEUE_SIZE = 4;

export interface Running {
  name: Contestant;
  /** The registry's base URL (Meridian only). */
  url?: string;
  /** Processes whose CPU is counted: the registry node, its nats-server, the S3 server. */
  pids: { node?: number; nats?: number; s3?: number };
  settings: Record<string, unknown>;
  pushPostPut(blob: GeneratedBlob): Promise<void>;
  /** Meridian: PATCH chunks. Plain: lib-storage Upload (`sequential`: one UploadPart at a time). */
  pushChunked(blob: GeneratedBlob, chunkBytes: number, sequential?: boolean): Promise<void>;
  /** Bytes received (`sdk`: the plain client's GetObject rather than curl). */
  pull(blob: GeneratedBlob, sdk?: boolean): Promise<number>;
  /** The digest of a full download (outside timing). */
  verifyPull(blob: GeneratedBlob): Promise<string>;
  pushImages(data: ImageData, inFlight: number): Promise<number>;
  stop(): Promise<void>;
}

export interface StartOptions {
  cpuProfDir?: string;
}

export async function startContestant(name: Contestant, options: StartOptions = {}): Promise<Running> {
  if (name === "meridian-fs") return meridian(name, undefined, options);
  const s3 = await startTestS3([BUCKET]);
  const dir = mkdtempSync(join(tmpdir(), "meridian-bench-s3-"));
  const credentialsFile = join(dir, "credentials.json");
  writeFileSync(credentialsFile, JSON.stringify(S3RVER_CREDENTIALS), { mode: 0o600 });
  const cleanup = async () => {
    await s3.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const running =
      name === "meridian-s3"
        ? await meridian(name, { s3, credentialsFile }, options)
        : plain(s3, credentialsFile);
    const stop = running.stop;
    running.stop = async () => {
      await stop();
      await cleanup();
    };
    return running;
  } catch (err) {
    await cleanup();
    throw err;
  }
}

async function meridian(
  name: Contestant,
  s3: { s3: TestS3; credentialsFile: string } | undefined,
  options: StartOptions,
): Promise<Running> {
  const env =
    s3 === undefined
      ? undefined
      : {
          MERIDIAN_STORAGE_TYPE: "s3",
          MERIDIAN_S3_BUCKET: BUCKET,
          MERIDIAN_S3_ENDPOINT: s3.s3.endpoint,
          MERIDIAN_S3_FORCE_PATH_STYLE: "true",
          MERIDIAN_S3_CREDENTIALS_FILE: s3.credentialsFile,
        };
  const target: Target = await startTarget("meridian", {
    ...(env === undefined ? {} : { env }),
    ...(options.cpuProfDir === undefined ? {} : { cpuProfDir: options.cpuProfDir }),
  });
  // 8 sockets: the image push's 8 requests in flight.
  const client = new BenchClient(target.url, 8);
  // The two-request form every client can use (docker, containerd, skopeo): POST, then PUT with the body.
  client.monolithic = "post-put";
  const repo = "bench/s3";
  return {
    name,
    url: target.url,
    pids: { node: target.pid, nats: target.natsPid, s3: s3?.s3.pid },
    settings: { ...target.settings, storage: s3 === undefined ? "fs" : "s3 (s3rver child process)" },
    async pushPostPut(blob) {
      await client.pushMonolithic(repo, blob.digest(), blob.size, blob.pieces());
    },
    async pushChunked(blob, chunkBytes) {
      await client.pushChunked(repo, blob, chunkBytes);
    },
    pull: (blob) => client.pullBlobCurl(repo, blob.digest(), blob.size),
    async verifyPull(blob) {
      const hash = createHash("sha256");
      const res = await new Promise<number>((resolve, reject) => {
        get(client.url(`/v2/${repo}/blobs/${blob.digest()}`), (r) => {
          r.on("data", (c: Buffer) => hash.update(c));
          r.on("end", () => resolve(r.statusCode ?? 0));
          r.on("error", reject);
        }).on("error", reject);
      });
      if (res !== 200) throw new Error(`verify GET: HTTP ${res}`);
      return `sha256:${hash.digest("hex")}`;
    },
    pushImages: (data, inFlight) => pushImages(client, data, inFlight),
    async stop() {
      client.close();
      await target.stop();
    },
  };
}

function plain(s3: TestS3, credentialsFile: string): Running {
  const client: S3Client = makeS3Client({
    bucket: BUCKET,
    endpoint: s3.endpoint,
    forcePathStyle: true,
    credentialsFile,
  });
  const key = (blob: GeneratedBlob) => `plain/${blob.digest()}`;
  const getBody = async (blob: GeneratedBlob) =>
    (await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key(blob) }))).Body as Readable;
  return {
    name: "plain-sdk",
    pids: { s3: s3.pid },
    settings: {
      client:
        "@aws-sdk/client-s3 with node/data/s3-client.ts makeS3Client settings, in the benchmark process",
      partBytes: PLAIN_PART_BYTES,
      queueSize: PLAIN_QUEUE_SIZE,
    },
    async pushPostPut(blob) {
      await new Upload({
        client,
        params: { Bucket: BUCKET, Key: key(blob), Body: Readable.from(blob.pieces()) },
        partSize: PLAIN_PART_BYTES,
        queueSize: PLAIN_QUEUE_SIZE,
      }).done();
    },
    async pushChunked(blob, chunkBytes, sequential = false) {
      if (!sequential) return this.pushPostPut(blob);
      const Key = key(blob);
      const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key }));
      const parts: { PartNumber: number; ETag: string }[] = [];
      for (let offset = 0, n = 1; offset < blob.size; offset += chunkBytes, n++) {
        const length = Math.min(chunkBytes, blob.size - offset);
        const Body = Buffer.concat([...blob.pieces(offset, length)], length);
        const res = await client.send(
          new UploadPartCommand({ Bucket: BUCKET, Key, UploadId, PartNumber: n, Body }),
        );
        parts.push({ PartNumber: n, ETag: res.ETag ?? "" });
      }
      await client.send(
        new CompleteMultipartUploadCommand({
          Bucket: BUCKET,
          Key,
          UploadId,
          MultipartUpload: { Parts: parts },
        }),
      );
    },
    async pull(blob, sdk = true) {
      let bytes = 0;
      if (sdk) {
        for await (const chunk of await getBody(blob)) bytes += (chunk as Buffer).length;
      } else {
        const url = await getSignedUrl(client, new GetObjectCommand({ Bucket: BUCKET, Key: key(blob) }), {
          expiresIn: 600,
        });
        const { stdout } = await execFileAsync("curl", [
          "-sS",
          "--fail",
          "-o",
          "/dev/null",
          "-w",
          "%{size_download}",
          url,
        ]);
        bytes = Number(stdout.trim());
      }
      if (bytes !== blob.size) throw new Error(`GetObject: ${bytes} bytes, expected ${blob.size}`);
      return bytes;
    },
    async verifyPull(blob) {
      const hash = createHash("sha256");
      for await (const chunk of await getBody(blob)) hash.update(chunk as Buffer);
      return `sha256:${hash.digest("hex")}`;
    },
    async pushImages(data, inFlight) {
      let requests = 0;
      const limit = new Limiter(inFlight);
      const exists = async (Key: string) => {
        try {
          await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key }));
          return true;
        } catch (err) {
          if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404)
            return false;
          throw err;
        }
      };
      await Promise.all(
        data.images.map(async (img) => {
          await Promise.all(
            img.blobs.map((b) =>
              limit.run(async () => {
                const Key = `plain/${b.desc.digest}`;
                requests++;
                if (await exists(Key)) return;
                requests++;
                await client.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body: b.bytes }));
              }),
            ),
          );
          requests++;
          const body = Buffer.from(JSON.stringify(img.manifest));
          await limit.run(() =>
            client.send(
              new PutObjectCommand({
                Bucket: BUCKET,
                Key: `plain/manifests/${img.repo}/${img.tag}`,
                Body: body,
              }),
            ),
          );
        }),
      );
      return requests;
    },
    async stop() {
      client.destroy();
    },
  };
}
