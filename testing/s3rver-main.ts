/**
 * Child-process entry of testing/s3.ts: s3rver 3.7 plus the one S3 call the
 * blob store needs that s3rver lacks, AbortMultipartUpload (DELETE
 * /bucket/key?uploadId=ID: its parts' directory is removed; an unknown id is
 * 404 NoSuchUpload, as on S3). Prints "S3rver listening on ADDRESS:PORT".
 *
 *   node s3rver-main.js DIR BUCKET...
 */
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";

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
  store: { getResourcePath(bucket: string, key: string | undefined, resource: string): string };
  run(): Promise<{ address: string; port: number }>;
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
