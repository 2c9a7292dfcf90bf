/**
 * The BlobStore conformance suite (blob-store-suite.ts) on FsBlobStore, with
 * and without fsync, and what is specific to the filesystem store.
 */
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { describe, test } from "node:test";
import { digestOf } from "../../protocol/digest.js";
import { UploadNotFoundError } from "../../protocol/errors.js";
import { FsBlobStore } from "../data/fs-blob-store.js";
import { type BlobStoreHarness, blobStoreSuite, streamOf, walk } from "./blob-store-suite.js";

// ---------------------------------------------------------------------------
// FsBlobStore

function fsHarness(fsync: boolean): () => Promise<BlobStoreHarness> {
  return async () => {
    const root = await mkdtemp(join(tmpdir(), "meridian-blob-store-"));
    const open = async () => {
      const s = new FsBlobStore(root, { fsync });
      await s.init();
      return s;
    };
    return {
      store: await open(),
      reopen: open,
      committed: async () => {
        const files = await walk(join(root, "blobs"));
        return files
          .map((f) => {
            const [algorithm, , encoded] = f.slice(join(root, "blobs").length + 1).split(/[\\/]/);
            return `${algorithm}:${encoded}`;
          })
          .sort();
      },
      stray: () => walk(join(root, "tmp")),
      dispose: () => rm(root, { recursive: true, force: true }),
    };
  };
}

blobStoreSuite("FsBlobStore (fsync)", fsHarness(true));
blobStoreSuite("FsBlobStore (no fsync)", fsHarness(false));

describe("FsBlobStore specifics", () => {
  test("an upload's data lives under uploads/ and leaves when committed", async () => {
    const root = await mkdtemp(join(tmpdir(), "meridian-blob-store-"));
    try {
      const store = new FsBlobStore(root, { fsync: false });
      await store.init();
      const s = await store.startUpload("r");
      await store.appendUpload(s.id, streamOf(Buffer.from("abc")), 0, 3);
      assert.deepEqual((await readdir(join(root, "uploads"))).sort(), [s.id]);
      await store.commitUpload(s.id, digestOf("abc"));
      assert.deepEqual(await readdir(join(root, "uploads")), []);
      const encoded = digestOf("abc").slice("sha256:".length);
      assert.deepEqual(await walk(join(root, "blobs")), [
        join(root, "blobs", "sha256", encoded.slice(0, 2), encoded),
      ]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  // The push forms clients use are bound by file-system calls per blob (benchmarks/README.md,
  // "Real client forms"): a session is a directory with its meta.json, and the data file comes
  // with the first chunk, so an empty POST then a PUT with the body never creates it.
  test("a session has no data file until its first chunk, and reports offset 0 meanwhile", async () => {
    const root = await mkdtemp(join(tmpdir(), "meridian-blob-store-"));
    try {
      const store = new FsBlobStore(root, { fsync: false });
      await store.init();
      const s = await store.startUpload("r");
      assert.deepEqual(await readdir(join(root, "uploads", s.id)), ["meta.json"]);
      assert.equal((await store.uploadState(s.id)).offset, 0);
      // Another process on the same root reads the same session.
      const other = new FsBlobStore(root, { fsync: false });
      assert.deepEqual(await other.uploadState(s.id), { ...s, offset: 0 });
      await store.appendUpload(s.id, streamOf(Buffer.from("abc")), 0, 3);
      assert.deepEqual((await readdir(join(root, "uploads", s.id))).sort(), ["data", "meta.json"]);
      assert.equal((await other.uploadState(s.id)).offset, 3);
      // Ended by this process: the other one, which cached the session's meta, sees it gone.
      await store.cancelUpload(s.id);
      await assert.rejects(other.uploadState(s.id), UploadNotFoundError);
      await assert.rejects(other.cancelUpload(s.id), UploadNotFoundError);
      assert.deepEqual(await readdir(join(root, "uploads")), []);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  // A session this process last saw without a data file is removed without unlinking one (one
  // file-system call less per POST + PUT push); a chunk appended meanwhile through another process
  // must still leave with it, and a session committed from its chunks leaves nothing either.
  test("a session last seen without data is removed whole, even after another process appended to it", async () => {
    const root = await mkdtemp(join(tmpdir(), "meridian-blob-store-"));
    try {
      const store = new FsBlobStore(root, { fsync: false });
      await store.init();
      const other = new FsBlobStore(root, { fsync: false });
      const s = await store.startUpload("r");
      assert.equal((await store.uploadState(s.id)).offset, 0);
      await other.appendUpload(s.id, streamOf(Buffer.from("abc")), 0, 3);
      await store.cancelUpload(s.id);
      assert.deepEqual(await readdir(join(root, "uploads")), []);
      await assert.rejects(other.uploadState(s.id), UploadNotFoundError);
      // Chunks appended here, then committed: nothing of the session stays either.
      const t = await store.startUpload("r");
      await store.appendUpload(t.id, streamOf(Buffer.from("xyz")), 0, 3);
      await store.commitUpload(t.id, digestOf("xyz"));
      assert.deepEqual(await readdir(join(root, "uploads")), []);
      // A blob written whole (POST ?digest=, or PUT with the body) lands in its prefix directory.
      await store.write(streamOf(Buffer.from("whole")), digestOf("whole"), 5);
      assert.deepEqual(await store.readAll(digestOf("whole")), Buffer.from("whole"));
      assert.equal((await readdir(join(root, "blobs", "sha256"))).length, 256);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  // The write loop takes the source's pieces as they are (writev, no gathering copy): a source in
  // object mode (Readable.from) may give strings or byte views rather than Buffers.
  test("sources of strings and byte views are stored as their bytes", async () => {
    const root = await mkdtemp(join(tmpdir(), "meridian-blob-store-"));
    try {
      const store = new FsBlobStore(root, { fsync: true });
      await store.init();
      const text = await store.write(Readable.from(["ab", "c"]), digestOf("abc"), 3);
      assert.deepEqual(text, { digest: digestOf("abc"), size: 3 });
      const view = new Uint8Array([1, 2, 3, 4]).subarray(1, 3);
      const s = await store.startUpload("r");
      await store.appendUpload(s.id, Readable.from([view, "x"]), 0, 3);
      const bytes = Buffer.from([2, 3, 120]);
      await store.commitUpload(s.id, digestOf(bytes));
      assert.deepEqual(await store.readAll(digestOf(bytes)), bytes);
      assert.deepEqual(await store.readAll(digestOf("abc")), Buffer.from("abc"));
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test("committing a session that never got a chunk stores the empty blob and removes the session", async () => {
    const root = await mkdtemp(join(tmpdir(), "meridian-blob-store-"));
    try {
      const store = new FsBlobStore(root, { fsync: true });
      await store.init();
      const s = await store.startUpload("r");
      assert.deepEqual(await store.commitUpload(s.id, digestOf("")), { digest: digestOf(""), size: 0 });
      assert.equal(await store.stat(digestOf("")), 0);
      assert.deepEqual(await readdir(join(root, "uploads")), []);
      await assert.rejects(store.uploadState(s.id), UploadNotFoundError);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
