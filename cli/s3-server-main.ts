/**
 * Child-process entry of ./s3-server.ts (`meridian up --s3`, and the tests'
 * testing/s3.ts): s3rver 3.7 on 127.0.0.1 plus what the blob store needs
 * that s3rver lacks.
 *
 * - AbortMultipartUpload (DELETE /bucket/key?uploadId=ID): its parts'
 *   directory is removed; an unknown id is 404 NoSuchUpload, as on S3.
 * - Read-after-write consistency: s3rver answers a PutObject or UploadPart
 *   before its file is written (it resolves on its hashing stream's end, not
 *   the file's close, and truncates the file first), so a GET right after a
 *   PUT could read an empty or partial object. Here both write to a
 *   temporary file, wait for its close and rename it.
 * - With CREDENTIALS (a JSON file {accessKeyId, secretAccessKey}, the format
 *   storage.s3.credentialsFile reads): that key pair replaces s3rver's
 *   built-in S3RVER/S3RVER and unsigned requests are refused (403
 *   AccessDenied; s3rver itself lets them through). Limit: s3rver checks a
 *   V4 request's access key id but not its signature, so this keeps out a
 *   client without the key file's id, not one that read it — a trial
 *   server on loopback, not a security boundary.
 *
 * Buckets named on the command line are created when missing (existing
 * objects are kept). Prints "S3rver listening on ADDRESS:PORT".
 *
 *   node s3-server-main.js DIR PORT CREDENTIALS|- BUCKET...
 *   (PORT 0: any free port; CREDENTIALS "-": s3rver's own key pair, open to unsigned requests)
 */
import { createHash, randomUUID } from "node:crypto";
import { createWriteStream, existsSync, readFileSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { exitWithParent } from "../node/parent-watch.js";

interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | undefined>;
  status: number;
  body: unknown;
  type: string;
  headers: Record<string, string | undefined>;
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

const require = createRequire(import.meta.url);
const S3rver = require("s3rver") as new (options: object) => S3rverApp;
const [directory, port, credentialsFile, ...buckets] = process.argv.slice(2);
const app = new S3rver({
  directory,
  address: "127.0.0.1",
  port: Number(port),
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
if (credentialsFile !== undefined && credentialsFile !== "-") {
  const { accessKeyId, secretAccessKey } = JSON.parse(readFileSync(credentialsFile, "utf8")) as {
    accessKeyId: string;
    secretAccessKey: string;
  };
  const account = require("s3rver/lib/models/account.js") as {
    DUMMY_ACCOUNT: {
      createKeyPair(id: string, secret: string): void;
      revokeAccessKey(id: string): void;
    };
  };
  account.DUMMY_ACCOUNT.revokeAccessKey("S3RVER");
  account.DUMMY_ACCOUNT.createKeyPair(accessKeyId, secretAccessKey);
  // First in the chain: an unsigned request never reaches s3rver's routes.
  app.middleware.unshift(async (ctx, next) => {
    const signed =
      ctx.headers.authorization !== undefined ||
      ctx.query["X-Amz-Algorithm"] !== undefined ||
      ctx.query.Signature !== undefined;
    if (signed) return next();
    ctx.status = 403;
    ctx.type = "application/xml";
    ctx.body =
      '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>' +
      "<Message>Access Denied</Message></Error>";
  });
}
// Under `meridian up` (MERIDIAN_PARENT_PID): exit once `up` is gone, even by SIGKILL.
exitWithParent();
const listening = await app.run();
console.log(`S3rver listening on ${listening.address}:${listening.port}`);
