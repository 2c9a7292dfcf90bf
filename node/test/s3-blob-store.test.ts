/**
 * The BlobStore conformance suite on S3BlobStore against a real s3rver
 * (testing/s3.ts: a child process on 127.0.0.1, stopped in cleanup), plus
 * what is specific to S3: a session continued and committed by another store
 * instance (another node process), multipart uploads from small PATCHes,
 * nothing visible after a digest mismatch, abandoned sessions purged.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { digestOf } from "../../protocol/digest.js";
import { DigestMismatchError, UploadNotFoundError } from "../../protocol/errors.js";
import { S3RVER_CREDENTIALS, startTestS3, type TestS3 } from "../../testing/s3.js";
import { MIN_PART_SIZE, S3BlobStore } from "../data/s3-blob-store.js";
import { makeS3Client } from "../data/s3-client.js";
import { type BlobStoreHarness, blobStoreSuite, bytesOf, collect, streamOf } from "./blob-store-suite.js";

const BUCKET = "meridian";
let s3: TestS3;

before(async () => {
  s3 = await startTestS3([BUCKET]);
});
after(() => s3?.stop());

function open(prefix: string): S3BlobStore {
  const client = makeS3Client({ bucket: BUCKET, endpoint: s3.endpoint, forcePathStyle: true });
  // s3rver's fixed key pair, given directly (no credentials file in this test).
  client.config.credentials = async () => S3RVER_CREDENTIALS;
  return new S3BlobStore({ bucket: BUCKET, prefix, client, partSize: MIN_PART_SIZE });
}

async function keys(store: S3BlobStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const res = await store.client.send(
      new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of res.Contents ?? []) if (o.Key) out.push(o.Key);
    token = res.IsTruncated ? res.NextContinuationToken : undefined;
  } while (token !== undefined);
  return out;
}

function s3Harness(): () => Promise<BlobStoreHarness> {
  return async () => {
    const prefix = `t-${randomUUID()}/`;
    const store = open(prefix);
    return {
      store,
      reopen: async () => open(prefix),
      committed: async () =>
        (await keys(store, store.keys.blobs))
          .map((k) => {
            const [algorithm, , encoded] = k.slice(store.keys.blobs.length).split("/");
            return `${algorithm}:${encoded}`;
          })
          .sort(),
      stray: () => keys(store, store.keys.tmp),
      dispose: async () => {
        for (const k of await keys(store, prefix)) await store.deleteObject(k);
      },
    };
  };
}

blobStoreSuite("S3BlobStore (s3rver)", s3Harness());

describe("S3BlobStore specifics", () => {
  test("an upload of small PATCHes continued on a second node becomes multipart and commits there", async () => {
    const prefix = `t-${randomUUID()}/`;
    const a = open(prefix);
    const b = open(prefix);
    // 12 MiB + 7 in 300 KiB PATCHes: two full parts and a tail, half sent to each "node".
    const data = bytesOf(7, (12 * MIN_PART_SIZE) / 5 + 7);
    const chunk = 300 * 1024;
    const earlier = (await s3.multipartUploads(BUCKET)).length;
    const s = await a.startUpload("team/app");
    let offset = 0;
    while (offset < data.length) {
      const piece = data.subarray(offset, offset + chunk);
      const node = offset < data.length / 2 ? a : b;
      offset = (await node.appendUpload(s.id, streamOf(piece), offset, piece.length)).offset;
    }
    assert.equal((await a.uploadState(s.id)).offset, data.length);
    // The bytes live in S3 only: a multipart upload and a tail, no local files.
    const sessionKeys = (await keys(a, a.keys.upload(s.id))).map((k) => k.slice(a.keys.upload(s.id).length));
    assert.ok(sessionKeys.includes("state.json"), sessionKeys.join());
    assert.ok(
      sessionKeys.some((k) => k.startsWith("tail-")),
      sessionKeys.join(),
    );
    assert.ok(!sessionKeys.includes("data"), "the multipart upload is not visible before commit");
    assert.equal((await s3.multipartUploads(BUCKET)).length, earlier + 1);
    // A third instance (a node that never saw a byte) commits: it re-hashes the staged object.
    const c = open(prefix);
    assert.deepEqual(await c.commitUpload(s.id, digestOf(data)), {
      digest: digestOf(data),
      size: data.length,
    });
    assert.ok((await collect(await a.read(digestOf(data)))).equals(data));
    assert.deepEqual(await keys(a, a.keys.uploads), [], "the session left nothing behind");
  });

  test("ranged reads come from the object, across part boundaries", async () => {
    const store = open(`t-${randomUUID()}/`);
    const data = bytesOf(8, 2 * MIN_PART_SIZE + 100);
    const s = await store.startUpload("r");
    await store.appendUpload(s.id, streamOf(data), 0, data.length);
    await store.commitUpload(s.id, digestOf(data));
    for (const [start, end] of [
      [MIN_PART_SIZE - 10, MIN_PART_SIZE + 10],
      [0, 0],
      [data.length - 1, data.length - 1],
    ] as const) {
      const got = await collect(await store.read(digestOf(data), { start, end }));
      assert.ok(got.equals(data.subarray(start, end + 1)), `range ${start}-${end}`);
    }
    assert.equal(await store.stat(digestOf(data)), data.length);
  });

  test("a digest mismatch on a multipart session leaves nothing: no blob, no session objects", async () => {
    const prefix = `t-${randomUUID()}/`;
    const store = open(prefix);
    const data = bytesOf(9, MIN_PART_SIZE + 5);
    const s = await store.startUpload("r");
    await store.appendUpload(s.id, streamOf(data), 0, data.length);
    const wrong = digestOf(Buffer.concat([data, Buffer.from("x")]));
    await assert.rejects(open(prefix).commitUpload(s.id, wrong), DigestMismatchError);
    assert.equal(await store.stat(wrong), undefined);
    assert.equal(await store.stat(digestOf(data)), undefined);
    assert.deepEqual(await keys(store, prefix), []);
    await assert.rejects(store.uploadState(s.id), UploadNotFoundError);
  });

  test("a multipart write straight to a wrong digest's key: DigestMismatchError, no key, no parts left", async () => {
    const prefix = `t-${randomUUID()}/`;
    const store = open(prefix);
    const data = bytesOf(12, 3 * MIN_PART_SIZE + 3);
    const wrong = digestOf(data.subarray(1));
    const earlier = await s3.multipartUploads(BUCKET);
    await assert.rejects(store.write(streamOf(data), wrong, data.length), DigestMismatchError);
    assert.equal(await store.stat(wrong), undefined);
    assert.deepEqual(await keys(store, prefix), []);
    assert.deepEqual(await s3.multipartUploads(BUCKET), earlier, "the parts were aborted");
    // The right digest goes straight to its key (no tmp/ object, no copy).
    assert.deepEqual(await store.write(streamOf(data), digestOf(data), data.length), {
      digest: digestOf(data),
      size: data.length,
    });
    assert.deepEqual(await keys(store, prefix), [store.keys.blob(digestOf(data))]);
  });

  test("purging abandoned sessions drops their multipart uploads and tails, also after a failed append", async () => {
    const prefix = `t-${randomUUID()}/`;
    const store = open(prefix);
    const data = bytesOf(10, MIN_PART_SIZE + 1000);
    const earlier = await s3.multipartUploads(BUCKET);
    const s = await store.startUpload("r");
    await store.appendUpload(s.id, streamOf(data), 0, data.length);
    assert.equal((await s3.multipartUploads(BUCKET)).length, earlier.length + 1, "one part went up");
    const live = await store.startUpload("r");
    // A session whose first append failed after its first part went up: the
    // multipart upload was recorded when created, so it is not orphaned.
    const failed = await store.startUpload("r");
    const broken = Readable.from(
      (async function* () {
        yield bytesOf(11, MIN_PART_SIZE + 10);
        throw new Error("client went away");
      })(),
    );
    await assert.rejects(store.appendUpload(failed.id, broken, 0, undefined), /client went away/);
    assert.equal((await store.uploadState(failed.id)).offset, 0, "the failed append changed nothing");
    assert.equal((await s3.multipartUploads(BUCKET)).length, earlier.length + 2);
    // Such a session still commits (empty here: S3 refuses to complete a multipart upload of no parts).
    const small = await store.startUpload("r");
    await assert.rejects(
      store.appendUpload(
        small.id,
        Readable.from(
          (async function* () {
            yield bytesOf(13, MIN_PART_SIZE);
            throw new Error("gone again");
          })(),
        ),
        0,
        undefined,
      ),
      /gone again/,
    );
    assert.deepEqual(await store.commitUpload(small.id, digestOf("")), { digest: digestOf(""), size: 0 });
    await store.delete(digestOf(""));
    const result = await open(prefix).purgeStale(new Date(Date.now() + 60_000), {
      idleBefore: new Date(Date.now() + 60_000),
    });
    assert.deepEqual(result, { uploads: 3, leftovers: 0 });
    assert.deepEqual(await s3.multipartUploads(BUCKET), earlier, "the multipart upload was aborted");
    await assert.rejects(store.uploadState(s.id), UploadNotFoundError);
    await assert.rejects(store.uploadState(live.id), UploadNotFoundError);
    assert.deepEqual(await keys(store, prefix), []);
  });

  test("a staged write interrupted by a crash (a tmp/ object) is a leftover purge removes", async () => {
    const prefix = `t-${randomUUID()}/`;
    const store = open(prefix);
    await store.putBytes(`${store.keys.tmp}${randomUUID()}`, Buffer.from("half a blob"));
    assert.deepEqual(await store.purgeStale(new Date(Date.now() - 3_600_000)), { uploads: 0, leftovers: 0 });
    assert.deepEqual(await store.purgeStale(new Date(Date.now() + 60_000)), { uploads: 0, leftovers: 1 });
    assert.deepEqual(await keys(store, prefix), []);
  });
});
