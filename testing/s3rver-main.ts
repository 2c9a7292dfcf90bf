/**
 * Child-process entry of testing/s3.ts: s3rver 3.7 plus the one S3 call the
 * blob store needs that s3rver lacks, AbortMultipartUpload (DELETE
 * /bucket/key?uploadId=ID: its parts' directory is removed; an unknown id is
 * 404 NoSuchUpload, as on S3), and read-after-write consistency: s3rver
 * answers a PutObject or UploadPart before its file is written (it resolves
 * on its hashing stream's end, not the file's close, and truncates the file
 * first), so a GET right after a PUT could read an empty or partial object.
 * Here both write to a temporary file, wait for its close and rename it.
 * Prints "S3rver listening on ADDRESS:PORT".
 *
 *   node s3rver-main.js DIR BUCKET...
 */
import { createHash, randomUUID } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | undefined>;
  status: number;
  body: unknown;
  type: string;
}
interface S3rverApp {
  middleware: ((ctx: KoaContext, next: () => Promise<void>) => Promise<void>)[];
  store: {
    getResourcePath(bucket: string, key: string | undefined, resource: string): string;
    putMetadata(bucket: string, key: string, metadata: unknown, md5: string): Promise<void>;
    putObject(object: {
      bucket: string;
      key: string;
      content: Buffer | Readable;
      metadata: unknown;
    }): Promise<Written>;
    putPart(bucket: string, uploadId: string, partNumber: number, content: Readable): Promise<Written>;
  };
  run(): Promise<{ address: string; port: number }>;
}

interface Written {
  size: number;
  md5: string;
}

/** Write `content` to `path` whole: a temporary file, closed, then renamed. */
async function writeWhole(path: string, content: Buffer | Readable): Promise<Written> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${randomUUID()}`;
  const md5 = createHash("md5");
  let size = 0;
  const source = Buffer.isBuffer(content) ? Readable.from([content]) : content;
  await pipeline(
    source,
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        md5.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    },
    createWriteStream(tmp),
  );
  await rename(tmp, path);
  return { size, md5: md5.digest("hex") };
}

const S3rver = createRequire(import.meta.url)("s3rver") as new (options: object) => S3rverApp;
const [directory, ...buckets] = process.argv.slice(2);
const app = new S3rver({
  directory,
  address: "127.0.0.1",
  port: 0,
  silent: true,
  configureBuckets: buckets.map((name) => ({ name, configs: [] })),
});
const store = app.store;
store.putObject = async (object) => {
  const written = await writeWhole(
    store.getResourcePath(object.bucket, object.key, "object"),
    object.content,
  );
  await store.putMetadata(object.bucket, object.key, object.metadata, written.md5);
  return written;
};
store.putPart = async (bucket, uploadId, partNumber, content) => {
  const path = join(store.getResourcePath(bucket, undefined, "uploads"), uploadId, String(partNumber));
  const written = await writeWhole(path, content);
  await writeFile(`${path}.md5`, written.md5);
  return written;
};
app.middleware.unshift(async (ctx, next) => {
  const uploadId = ctx.query.uploadId;
  if (ctx.method !== "DELETE" || uploadId === undefined || !/^[\w-]+$/.test(uploadId)) return next();
  const bucket = decodeURIComponent(ctx.path.split("/")[1] ?? "");
  const dir = join(app.store.getResourcePath(bucket, undefined, "uploads"), uploadId);
  if (!existsSync(dir)) {
    ctx.status = 404;
    ctx.type = "application/xml";
    ctx.body =
      '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchUpload</Code>' +
      "<Message>The specified upload does not exist.</Message></Error>";
    return;
  }
  await rm(dir, { recursive: true, force: true });
  ctx.status = 204;
});
const { address, port } = await app.run();
console.log(`S3rver listening on ${address}:${port}`);
