/**
 * What the two upload forms real clients use cost on the S3 store, counted
 * as the S3 requests a real client (the SDK against a real s3rver) sends:
 *
 * - chunked (POST, PATCHes, empty PUT) in one process: the running digest is
 *   kept from the first byte, so the commit never downloads the staged
 *   object again to hash it;
 * - POST, then PUT with the whole body (Uploads.finish): the bytes stream
 *   straight to the digest's key (verified while streaming), with no parts
 *   under the session, no completion of them and no server-side copy.
 *
 * The figures they move are in benchmarks/README.md ("S3 store (issue 13)").
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { PassThrough } from "node:stream";
import { after, before, describe, test } from "node:test";
import { setTimeout } from "node:timers/promises";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { digestOf } from "../../protocol/digest.js";
import { DigestMismatchError, SizeInvalidError, UploadNotFoundError } from "../../protocol/errors.js";
import { S3RVER_CREDENTIALS, startTestS3, type TestS3 } from "../../testing/s3.js";
import { MIN_PART_SIZE, S3BlobStore } from "../data/s3-blob-store.js";
import { makeS3Client } from "../data/s3-client.js";
import { Uploads } from "../data/uploads.js";
import { bytesOf, collect, streamOf } from "./blob-store-suite.js";

const BUCKET = "meridian";
let s3: TestS3;

before(async () => {
  s3 = await startTestS3([BUCKET]);
});
after(() => s3?.stop());

interface Sent {
  command: string;
  key: string;
}

/** A store whose client records every S3 command it sends (with its key), in order. */
function open(): { store: S3BlobStore; sent: Sent[] } {
  const client = makeS3Client({ bucket: BUCKET, endpoint: s3.endpoint, forcePathStyle: true });
  client.config.credentials = async () => S3RVER_CREDENTIALS;
  const sent: Sent[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { Key?: string };
      sent.push({ command: context.commandName ?? "?", key: input.Key ?? "" });
      return next(args);
    },
    { step: "initialize", name: "countCommands" },
  );
  const store = new S3BlobStore({
    bucket: BUCKET,
    prefix: `t-${randomUUID()}/`,
    client,
    partSize: MIN_PART_SIZE,
  });
  return { store, sent };
}

/** Uploads over `store`, linking into a list instead of the log (the link is not what is counted here). */
function uploadsOf(store: S3BlobStore): { uploads: Uploads; linked: string[] } {
  const linked: string[] = [];
  const uploads = new Uploads(store, undefined, async (repo, digest, size) => {
    linked.push(`${repo} ${digest} ${size}`);
    return linked.length;
  });
  return { uploads, linked };
}

describe("S3 store: the upload forms clients use", () => {
  test("chunked in one process: the commit does not read the staged bytes back to hash them", async () => {
    const { store, sent } = open();
    const data = bytesOf(21, 2 * MIN_PART_SIZE + 1234);
    const s = await store.startUpload("team/app");
    const chunk = MIN_PART_SIZE;
    for (let offset = 0; offset < data.length; offset += chunk) {
      const piece = data.subarray(offset, offset + chunk);
      await store.appendUpload(s.id, streamOf(piece), offset, piece.length);
    }
    sent.length = 0;
    assert.deepEqual(await store.commitUpload(s.id, digestOf(data)), {
      digest: digestOf(data),
      size: data.length,
    });
    const session = store.keys.upload(s.id);
    const readBack = sent.filter((c) => c.command === "GetObjectCommand" && c.key !== `${session}state.json`);
    // The tail is read once, to go up as the last part; the data object never.
    assert.deepEqual(
      readBack.map((c) => c.key.slice(session.length).replace(/^tail-.*/, "tail")),
      ["tail"],
      "bytes read back at commit",
    );
    assert.ok((await collect(await store.read(digestOf(data)))).equals(data));
  });

  test("POST then PUT with the whole body: one upload to the digest's key, no session parts, no copy", async () => {
    const { store, sent } = open();
    const { uploads, linked } = uploadsOf(store);
    const data = bytesOf(22, 2 * MIN_PART_SIZE + 77);
    const digest = digestOf(data);
    const s = await uploads.start("team/app");
    sent.length = 0;
    await uploads.finish("team/app", s.id, streamOf(data), undefined, data.length, digest, "alice");
    assert.deepEqual(linked, [`team/app ${digest} ${data.length}`]);
    const blobKey = store.keys.blob(digest);
    const bulk = sent.filter((c) =>
      [
        "UploadPartCommand",
        "PutObjectCommand",
        "CopyObjectCommand",
        "CompleteMultipartUploadCommand",
      ].includes(c.command),
    );
    assert.ok(bulk.length > 0, "the bytes went somewhere");
    for (const c of bulk)
      assert.equal(c.key, blobKey, `${c.command} of ${c.key}: only the digest's key is written`);
    assert.ok(!sent.some((c) => c.command === "CopyObjectCommand"), "no server-side copy");
    assert.ok(
      !sent.some((c) => c.command === "ListObjectsV2Command"),
      "a session with no parts is not listed",
    );
    const left = await store.client.send(
      new ListObjectsV2Command({ Bucket: BUCKET, Prefix: store.keys.uploads }),
    );
    assert.deepEqual(left.Contents ?? [], [], "the session left nothing behind");
    assert.ok((await collect(await store.read(digest))).equals(data));
    await assert.rejects(store.uploadState(s.id), UploadNotFoundError, "the session is over");
  });

  test("POST then PUT with a body of the wrong digest: refused, nothing stored, the session is over", async () => {
    const { store } = open();
    const { uploads, linked } = uploadsOf(store);
    const data = bytesOf(23, MIN_PART_SIZE + 5);
    const wrong = digestOf(Buffer.concat([data, Buffer.from("x")]));
    const s = await uploads.start("team/app");
    await assert.rejects(
      uploads.finish("team/app", s.id, streamOf(data), undefined, data.length, wrong, "alice"),
      DigestMismatchError,
    );
    assert.deepEqual(linked, []);
    assert.equal(await store.stat(wrong), undefined);
    assert.equal(await store.stat(digestOf(data)), undefined);
    await assert.rejects(store.uploadState(s.id), UploadNotFoundError);
  });

  test("the store's client does not sign payloads: parts are hashed once, for the digest", async () => {
    const { store } = open();
    const signed: string[] = [];
    store.client.middlewareStack.add(
      (next) => async (args) => {
        const headers = (args.request as { headers: Record<string, string> }).headers;
        signed.push(headers["x-amz-content-sha256"] ?? "");
        return next(args);
      },
      { step: "deserialize", name: "seeSignedRequest" },
    );
    const data = bytesOf(25, 1000);
    await store.writeAll(data, digestOf(data));
    assert.ok(signed.length >= 2, signed.join());
    assert.deepEqual([...new Set(signed.slice(1))], ["UNSIGNED-PAYLOAD"], "the PutObject");
  });

  test("a PATCH whose Content-Length announces a whole part streams it to S3 while it arrives", async () => {
    const { store, sent } = open();
    const data = bytesOf(26, 2 * MIN_PART_SIZE + 500);
    const s = await store.startUpload("team/app");
    const source = new PassThrough();
    const appended = store.appendUpload(s.id, source, 0, data.length);
    // Only the first MiB is sent until S3 sees the part: buffering a whole part first would wait forever.
    source.write(data.subarray(0, 1 << 20));
    const deadline = Date.now() + 10_000;
    while (!sent.some((c) => c.command === "UploadPartCommand") && Date.now() < deadline)
      await setTimeout(20);
    assert.ok(
      sent.some((c) => c.command === "UploadPartCommand"),
      "the part's upload starts before its bytes are all in",
    );
    source.end(data.subarray(1 << 20));
    assert.equal((await appended).offset, data.length);
    await store.commitUpload(s.id, digestOf(data));
    assert.ok((await collect(await store.read(digestOf(data)))).equals(data));
  });

  test("a PATCH cut short of its Content-Length inside a streamed part fails without hanging; the session is unchanged", async () => {
    const { store, sent } = open();
    const data = bytesOf(27, 2 * MIN_PART_SIZE);
    const s = await store.startUpload("team/app");
    const short = data.subarray(0, MIN_PART_SIZE + 1000);
    await assert.rejects(store.appendUpload(s.id, streamOf(short), 0, data.length), SizeInvalidError);
    const failing = new PassThrough();
    failing.on("error", () => undefined); // what an HTTP server's request has: the store sees it through its reads
    const parts = sent.filter((c) => c.command === "UploadPartCommand").length;
    const appended = store.appendUpload(s.id, failing, 0, data.length);
    failing.write(data.subarray(0, 1 << 20));
    const deadline = Date.now() + 10_000;
    while (sent.filter((c) => c.command === "UploadPartCommand").length === parts && Date.now() < deadline) {
      await setTimeout(20);
    }
    failing.destroy(new Error("client went away"));
    await assert.rejects(appended, /client went away/);
    assert.equal((await store.uploadState(s.id)).offset, 0);
    await store.appendUpload(s.id, streamOf(data), 0, data.length);
    await store.commitUpload(s.id, digestOf(data));
    assert.ok((await collect(await store.read(digestOf(data)))).equals(data));
  });

  test("a write with its digest and size streams its parts while the bytes arrive; short or long bodies leave nothing", async () => {
    const { store, sent } = open();
    const data = bytesOf(28, 2 * MIN_PART_SIZE + 300);
    const digest = digestOf(data);
    const earlier = await s3.multipartUploads(BUCKET);
    const source = new PassThrough();
    const written = store.write(source, digest, data.length);
    source.write(data.subarray(0, 1 << 20));
    const deadline = Date.now() + 10_000;
    while (!sent.some((c) => c.command === "UploadPartCommand") && Date.now() < deadline)
      await setTimeout(20);
    assert.ok(
      sent.some((c) => c.command === "UploadPartCommand"),
      "the first part's upload starts before its bytes are all in",
    );
    assert.equal(await store.stat(digest), undefined, "nothing visible before the bytes are complete");
    source.end(data.subarray(1 << 20));
    assert.deepEqual(await written, { digest, size: data.length });
    assert.ok((await collect(await store.read(digest))).equals(data));
    const other = bytesOf(29, MIN_PART_SIZE + 10);
    for (const body of [other.subarray(0, MIN_PART_SIZE + 5), Buffer.concat([other, Buffer.from("more")])]) {
      await assert.rejects(store.write(streamOf(body), digestOf(other), other.length), SizeInvalidError);
    }
    assert.equal(await store.stat(digestOf(other)), undefined);
    assert.deepEqual(
      await s3.multipartUploads(BUCKET),
      earlier,
      "every multipart upload completed or aborted",
    );
  });

  test("PUT with the last bytes of a session that has some: appended, then committed as before", async () => {
    const { store } = open();
    const { uploads, linked } = uploadsOf(store);
    const data = bytesOf(24, MIN_PART_SIZE + 99);
    const digest = digestOf(data);
    const s = await uploads.start("team/app");
    const head = data.subarray(0, 1000);
    await uploads.append("team/app", s.id, streamOf(head), 0, head.length);
    const rest = data.subarray(1000);
    await uploads.finish("team/app", s.id, streamOf(rest), 1000, rest.length, digest, "alice");
    assert.deepEqual(linked, [`team/app ${digest} ${data.length}`]);
    assert.ok((await collect(await store.read(digest))).equals(data));
    await assert.rejects(store.uploadState(s.id), UploadNotFoundError);
  });
});
