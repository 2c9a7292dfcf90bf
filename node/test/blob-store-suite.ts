/**
 * The BlobStore conformance suite: every implementation runs
 * `blobStoreSuite` with a factory for fresh, empty stores. FsBlobStore runs it
 * with and without fsync (blob-store.test.ts), S3BlobStore against a real
 * s3rver (s3-blob-store.test.ts). Not a test file itself, so importing it
 * registers no tests twice.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { type Digest, digestOf, newHash } from "../../protocol/digest.js";
import {
  BlobNotFoundError,
  DigestMismatchError,
  RangeNotSatisfiableError,
  SizeInvalidError,
  UploadNotFoundError,
  UploadRangeError,
} from "../../protocol/errors.js";
import type { BlobStore, UploadState } from "../data/blob-store.js";

const MiB = 1 << 20;

/** One fresh store, plus what the suite needs to look behind it. */
export interface BlobStoreHarness {
  store: BlobStore;
  /** A new store instance over the same storage (a simulated restart). */
  reopen(): Promise<BlobStore>;
  /** Digests of every committed blob in the backing storage. */
  committed(): Promise<string[]>;
  /** Leftovers of monolithic writes in flight (must be empty when none is running). */
  stray(): Promise<string[]>;
  dispose(): Promise<void>;
}

// ---------------------------------------------------------------------------
// helpers

export function bytesOf(seed: number, size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A stream of `data` in chunks of `chunk` bytes. */
export function streamOf(data: Buffer, chunk = 64 * 1024): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += chunk) parts.push(data.subarray(i, i + chunk));
  return Readable.from(parts, { objectMode: false });
}

/** A stream that yields `good` and then fails with `error`. */
function failingStream(good: Buffer, error: Error): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(good);
      } else {
        setImmediate(() => this.destroy(error));
      }
    },
  });
}

/** An endless stream of `chunk`, calling `onBytes` with the running total; slow enough to abort. */
function endlessStream(chunk: Buffer, onBytes: (total: number) => void): Readable {
  let total = 0;
  return new Readable({
    read() {
      setImmediate(() => {
        total += chunk.length;
        onBytes(total);
        this.push(chunk);
      });
    },
  });
}

export async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

export async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  let entries: import("node:fs").Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return out;
    throw err;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(path)));
    else out.push(path);
  }
  return out;
}

/** A full garbage collection, when gc can be exposed at run time. */
function gcNow(): void {
  try {
    setFlagsFromString("--expose-gc");
    (runInNewContext("gc") as () => void)();
  } catch {
    // best effort: the bound in the memory test is loose enough without it
  }
}

const isAbort = (reason: unknown) => (err: unknown) => err === reason;

// ---------------------------------------------------------------------------
// the suite

async function bytesFromStore(store: BlobStore, digest: Digest): Promise<Buffer> {
  return collect(await store.read(digest));
}

export function blobStoreSuite(name: string, makeStore: () => Promise<BlobStoreHarness>): void {
  describe(`BlobStore conformance: ${name}`, () => {
    let h: BlobStoreHarness;
    let store: BlobStore;
    const fresh = async () => {
      await h?.dispose();
      h = await makeStore();
      store = h.store;
    };
    before(fresh);
    after(() => h.dispose());

    /** Nothing committed under these digests, nothing at all committed, no leftovers. */
    async function assertNothingVisible(...digests: Digest[]) {
      for (const d of digests) assert.equal(await store.stat(d), undefined, `${d} is visible`);
      assert.deepEqual(await h.committed(), [], "a blob was committed");
      assert.deepEqual(await h.stray(), [], "in-flight files were left behind");
    }

    test("garbage collection's listing and set-aside: listed with sizes, absent while aside, put back intact, never over a blob stored again, dropped for good", async () => {
      await fresh();
      const [a, b, c] = [bytesOf(71, 3000), bytesOf(72, 10), bytesOf(73, 0)];
      const [da, db, dc] = [digestOf(a), digestOf(b), digestOf(c)];
      for (const bytes of [a, b, c]) await store.writeAll(bytes, digestOf(bytes));
      const listed = new Map<string, number>();
      for await (const blob of store.listBlobs!()) {
        assert.ok(blob.modifiedMs > Date.now() - 60_000 && blob.modifiedMs <= Date.now() + 5_000);
        listed.set(blob.digest, blob.size);
      }
      assert.deepEqual(
        [...listed].sort(),
        [
          [da, 3000],
          [db, 10],
          [dc, 0],
        ].sort(),
      );
      // Set aside: reads see it absent, the listing skips it; put back: the same bytes.
      assert.equal((await store.setAside!(da, "run-1"))?.size, 3000);
      assert.equal(await store.stat(da), undefined);
      assert.equal(await store.setAside!(da, "run-1"), undefined, "already aside: absent");
      assert.ok(await store.putBack!(da, "run-1"));
      assert.ok((await store.readAll(da)).equals(a));
      // Stored again while aside: putting back keeps the new copy (the same bytes), reports false.
      await store.setAside!(db, "run-2");
      await store.writeAll(b, db);
      assert.equal(await store.putBack!(db, "run-2"), false);
      assert.ok((await store.readAll(db)).equals(b));
      // Dropped: gone for good, nothing left aside to put back.
      await store.setAside!(dc, "run-3");
      await store.dropAside!(dc, "run-3");
      assert.equal(await store.putBack!(dc, "run-3"), false);
      assert.equal(await store.stat(dc), undefined);
      assert.deepEqual((await h.committed()).sort(), [da, db].sort());
      await assert.rejects(store.setAside!(da, "../escape"));
    });

    test("purgeStale removes sessions started before the cutoff and keeps the rest", async () => {
      await fresh();
      const old = await store.startUpload("r/old");
      await store.appendUpload(old.id, streamOf(Buffer.from("abandoned")), 0, 9);
      const cutoff = new Date(Date.now() + 1);
      await sleep(5);
      const live = await store.startUpload("r/live");
      const kept = await store.write(streamOf(Buffer.from("committed")), undefined);
      assert.deepEqual(await store.purgeStale(cutoff), { uploads: 1, leftovers: 0 });
      await assert.rejects(store.uploadState(old.id), UploadNotFoundError);
      assert.equal((await store.uploadState(live.id)).repo, "r/live");
      assert.equal(await store.stat(kept.digest), 9);
      assert.deepEqual(await store.purgeStale(cutoff), { uploads: 0, leftovers: 0 });
    });

    describe("monolithic writes", () => {
      const sizes: [string, number][] = [
        ["empty", 0],
        ["one byte", 1],
        ["small", 1000],
        ["exactly one read chunk", MiB],
        ["several read chunks, unaligned", 3 * MiB + 17],
      ];
      for (const [label, size] of sizes) {
        test(`write, stat, read and readAll: ${label}`, async () => {
          await fresh();
          const data = bytesOf(size + 1, size);
          const digest = digestOf(data);
          const result = await store.write(streamOf(data), undefined);
          assert.deepEqual(result, { digest, size });
          assert.equal(await store.stat(digest), size);
          assert.ok((await store.readAll(digest)).equals(data));
          assert.ok((await collect(await store.read(digest))).equals(data));
          assert.deepEqual(await h.committed(), [digest]);
          assert.deepEqual(await h.stray(), []);
        });
      }

      test("write with the right expected digest and size", async () => {
        await fresh();
        const data = bytesOf(7, 5000);
        const digest = digestOf(data);
        assert.deepEqual(await store.write(streamOf(data, 333), digest, 5000), { digest, size: 5000 });
        assert.ok((await store.readAll(digest)).equals(data));
      });

      test("write with an expected sha512 digest stores under sha512", async () => {
        await fresh();
        const data = bytesOf(8, 10_000);
        const digest = digestOf(data, "sha512");
        assert.deepEqual(await store.write(streamOf(data), digest), { digest, size: 10_000 });
        assert.equal(await store.stat(digest), 10_000);
        assert.equal(await store.stat(digestOf(data)), undefined, "not also under sha256");
        assert.ok((await store.readAll(digest)).equals(data));
      });

      test("writing the same blob twice is harmless", async () => {
        await fresh();
        const data = bytesOf(9, 100);
        const digest = digestOf(data);
        await store.write(streamOf(data), digest);
        await store.write(streamOf(data), digest);
        assert.ok((await store.readAll(digest)).equals(data));
        assert.deepEqual(await h.committed(), [digest]);
      });

      test("concurrent writes of the same and different blobs", async () => {
        await fresh();
        const blobs = Array.from({ length: 8 }, (_, i) => bytesOf(100 + (i % 4), 200_000 + (i % 4)));
        const results = await Promise.all(blobs.map((b) => store.write(streamOf(b, 10_000), digestOf(b))));
        for (const [i, b] of blobs.entries()) {
          assert.equal(results[i]!.digest, digestOf(b));
          assert.ok((await store.readAll(digestOf(b))).equals(b));
        }
        assert.equal((await h.committed()).length, 4);
        assert.deepEqual(await h.stray(), []);
      });

      test("wrong expected digest: DigestMismatchError, nothing visible under either digest", async () => {
        await fresh();
        const data = bytesOf(10, 70_000);
        const claimed = digestOf("something else");
        await assert.rejects(store.write(streamOf(data), claimed), (err: unknown) => {
          assert.ok(err instanceof DigestMismatchError);
          return true;
        });
        await assertNothingVisible(claimed, digestOf(data));
      });

      test("wrong expected sha512 digest: DigestMismatchError, nothing visible", async () => {
        await fresh();
        const data = bytesOf(11, 1000);
        const claimed = digestOf("other", "sha512");
        await assert.rejects(store.write(streamOf(data), claimed), DigestMismatchError);
        await assertNothingVisible(claimed, digestOf(data, "sha512"), digestOf(data));
      });

      for (const [label, delta] of [
        ["shorter than expected", -1],
        ["longer than expected", 1],
      ] as const) {
        test(`wrong expectedSize (${label}): SizeInvalidError, nothing visible`, async () => {
          await fresh();
          const data = bytesOf(12, 4096);
          await assert.rejects(store.write(streamOf(data), undefined, data.length - delta), SizeInvalidError);
          await assertNothingVisible(digestOf(data));
          await assert.rejects(
            store.write(streamOf(data), digestOf(data), data.length - delta),
            SizeInvalidError,
          );
          await assertNothingVisible(digestOf(data));
        });
      }

      test("a source that fails mid-way: rejects with its error, nothing visible, no stray files", async () => {
        await fresh();
        const good = bytesOf(13, 256 * 1024);
        const boom = new Error("source failed");
        await assert.rejects(
          store.write(failingStream(good, boom), undefined),
          (err: unknown) => err === boom,
        );
        await assertNothingVisible(digestOf(good));
        await assert.rejects(
          store.write(failingStream(good, boom), digestOf(good), good.length),
          (err: unknown) => err === boom,
        );
        await assertNothingVisible(digestOf(good));
      });

      test("a source that fails before any byte leaves nothing", async () => {
        await fresh();
        const boom = new Error("early");
        const source = new Readable({
          read() {
            this.destroy(boom);
          },
        });
        await assert.rejects(store.write(source, undefined), (err: unknown) => err === boom);
        await assertNothingVisible(digestOf(""));
      });

      test("aborting mid-write rejects with the signal's reason and leaves nothing", async () => {
        await fresh();
        const ac = new AbortController();
        const reason = new Error("client went away");
        const chunk = bytesOf(14, 64 * 1024);
        const source = endlessStream(chunk, (total) => {
          if (total >= MiB) ac.abort(reason);
        });
        await assert.rejects(store.write(source, undefined, undefined, ac.signal), isAbort(reason));
        assert.ok(source.destroyed, "the source is stopped");
        await assertNothingVisible();
      });

      test("an already-aborted signal rejects and stores nothing", async () => {
        await fresh();
        const reason = new Error("too late");
        const data = bytesOf(15, 1000);
        await assert.rejects(
          store.write(streamOf(data), digestOf(data), undefined, AbortSignal.abort(reason)),
          isAbort(reason),
        );
        await assertNothingVisible(digestOf(data));
      });

      test("a 64 MiB streamed write does not buffer the blob", async (t) => {
        await fresh();
        const chunk = bytesOf(16, MiB);
        const count = 64;
        const hash = newHash("sha256");
        for (let i = 0; i < count; i++) hash.update(chunk);
        const digest = `sha256:${hash.digest("hex")}` as Digest;
        let sent = 0;
        // A fresh buffer per chunk (a store that kept them would grow by the blob's
        // size), with a collection now and then so garbage does not blur the number.
        const source = new Readable({
          read() {
            if (sent === count) {
              this.push(null);
              return;
            }
            sent++;
            if (sent % 8 === 0) gcNow();
            const copy = Buffer.allocUnsafe(MiB);
            chunk.copy(copy);
            this.push(copy);
          },
        });
        gcNow();
        const baseline = process.memoryUsage().rss;
        let peak = baseline;
        const sampler = setInterval(() => {
          peak = Math.max(peak, process.memoryUsage().rss);
        }, 5);
        try {
          const result = await store.write(source, digest, count * MiB);
          assert.deepEqual(result, { digest, size: count * MiB });
        } finally {
          clearInterval(sampler);
        }
        peak = Math.max(peak, process.memoryUsage().rss);
        const growth = peak - baseline;
        t.diagnostic(`rss growth ${(growth / MiB).toFixed(1)} MiB`);
        assert.ok(growth < 48 * MiB, `rss grew by ${(growth / MiB).toFixed(1)} MiB for a 64 MiB blob`);
        assert.equal(await store.stat(digest), count * MiB);
        // Reading it back streams too, and yields the same bytes.
        const readHash = newHash("sha256");
        let readBytes = 0;
        for await (const part of await store.read(digest)) {
          readHash.update(part as Buffer);
          readBytes += (part as Buffer).length;
        }
        assert.equal(readBytes, count * MiB);
        assert.equal(`sha256:${readHash.digest("hex")}`, digest);
        await store.delete(digest);
      });
    });

    describe("reads", () => {
      const data = bytesOf(20, 3 * MiB + 5);
      const digest = digestOf(data);
      before(async () => {
        await fresh();
        await store.write(streamOf(data), digest);
      });

      const ranges: [string, number, number][] = [
        ["first byte", 0, 0],
        ["whole blob", 0, data.length - 1],
        ["middle", 5, 9],
        ["last byte", data.length - 1, data.length - 1],
        ["tail across read chunks", MiB - 3, 2 * MiB + 3],
        ["all but the first byte", 1, data.length - 1],
      ];
      for (const [label, start, end] of ranges) {
        test(`range ${label} [${start}, ${end}]`, async () => {
          const got = await collect(await store.read(digest, { start, end }));
          assert.equal(got.length, end - start + 1);
          assert.ok(got.equals(data.subarray(start, end + 1)));
        });
      }

      const bad: [string, number, number][] = [
        ["end one past the last byte", 0, data.length],
        ["start at the size", data.length, data.length],
        ["wholly past the end", data.length + 10, data.length + 20],
        ["start after end", 10, 9],
      ];
      for (const [label, start, end] of bad) {
        test(`range ${label}: RangeNotSatisfiableError with the size`, async () => {
          await assert.rejects(store.read(digest, { start, end }), (err: unknown) => {
            assert.ok(err instanceof RangeNotSatisfiableError);
            assert.equal(err.size, data.length);
            return true;
          });
        });
      }

      test("any range of an empty blob is not satisfiable", async () => {
        const empty = digestOf("");
        await store.write(streamOf(Buffer.alloc(0)), empty);
        await assert.rejects(store.read(empty, { start: 0, end: 0 }), RangeNotSatisfiableError);
        assert.equal((await collect(await store.read(empty))).length, 0);
        await store.delete(empty);
      });

      test("absent blobs: stat is undefined, read and readAll throw BlobNotFoundError", async () => {
        const missing = digestOf("never written");
        assert.equal(await store.stat(missing), undefined);
        await assert.rejects(store.read(missing), BlobNotFoundError);
        await assert.rejects(store.read(missing, { start: 0, end: 0 }), BlobNotFoundError);
        await assert.rejects(store.readAll(missing), BlobNotFoundError);
        assert.equal(await store.stat(digestOf("never written", "sha512")), undefined);
      });

      test("aborting a read stops the stream", async () => {
        const ac = new AbortController();
        const stream = await store.read(digest, undefined, ac.signal);
        let received = 0;
        await assert.rejects(
          (async () => {
            for await (const part of stream) {
              received += (part as Buffer).length;
              ac.abort();
            }
          })(),
          { name: "AbortError" },
        );
        assert.ok(received < data.length, "the read was cut short");
        // The blob itself is untouched.
        assert.equal(await store.stat(digest), data.length);
      });
    });

    describe("writeAll and delete", () => {
      test("writeAll stores bytes under their digest, idempotently", async () => {
        await fresh();
        const bytes = Buffer.from('{"schemaVersion":2}');
        const digest = digestOf(bytes);
        await store.writeAll(bytes, digest);
        await store.writeAll(bytes, digest);
        assert.ok((await store.readAll(digest)).equals(bytes));
        assert.deepEqual(await h.committed(), [digest]);
        assert.deepEqual(await h.stray(), []);
      });

      test("writeAll of a Uint8Array view stores only the view", async () => {
        await fresh();
        const outer = Buffer.from("xx{manifest}yy");
        const view = new Uint8Array(outer.buffer, outer.byteOffset + 2, 10);
        const digest = digestOf(view);
        await store.writeAll(view, digest);
        assert.equal((await store.readAll(digest)).toString(), "{manifest}");
      });

      test("writeAll with a sha512 digest", async () => {
        await fresh();
        const bytes = Buffer.from("manifest-512");
        const digest = digestOf(bytes, "sha512");
        await store.writeAll(bytes, digest);
        assert.ok((await store.readAll(digest)).equals(bytes));
      });

      test("writeAll with a digest that does not match: DigestMismatchError, nothing stored", async () => {
        await fresh();
        const claimed = digestOf("b");
        await assert.rejects(store.writeAll(Buffer.from("a"), claimed), DigestMismatchError);
        await assertNothingVisible(claimed, digestOf("a"));
      });

      test("delete removes a blob; deleting an absent blob is not an error", async () => {
        await fresh();
        const a = Buffer.from("a");
        const b = Buffer.from("b");
        await store.writeAll(a, digestOf(a));
        await store.writeAll(b, digestOf(b));
        await store.delete(digestOf(a));
        assert.equal(await store.stat(digestOf(a)), undefined);
        await assert.rejects(store.readAll(digestOf(a)), BlobNotFoundError);
        assert.equal(await store.stat(digestOf(b)), 1, "other blobs are untouched");
        await store.delete(digestOf(a));
        await store.delete(digestOf("never"));
        await store.writeAll(a, digestOf(a));
        assert.equal(await store.stat(digestOf(a)), 1, "a deleted blob can be written again");
      });
    });

    describe("listBlobs and quarantine (the scrub: node/scrub.ts)", () => {
      test("listBlobs lists every committed blob with its size, and nothing in flight", async () => {
        await fresh();
        const a = bytesOf(1, 3000);
        const b = bytesOf(2, 10);
        await store.writeAll(a, digestOf(a));
        await store.write(streamOf(b), digestOf(b));
        const session = await store.startUpload("r");
        await store.appendUpload(session.id, streamOf(bytesOf(3, 100)), 0, 100);
        const listed: Array<{ digest: string; size: number }> = [];
        // The size and digest are compared; modifiedMs (GC's age of the bytes) is checked elsewhere.
        for await (const blob of store.listBlobs!()) listed.push({ digest: blob.digest, size: blob.size });
        listed.sort((x, y) => x.size - y.size);
        assert.deepEqual(listed, [
          { digest: digestOf(b), size: 10 },
          { digest: digestOf(a), size: 3000 },
        ]);
        await store.cancelUpload(session.id);
      });

      test("quarantine takes a blob out of its digest's place: absent to stat, read and listBlobs; writable again", async () => {
        await fresh();
        const a = bytesOf(4, 500);
        const b = bytesOf(5, 20);
        await store.writeAll(a, digestOf(a));
        await store.writeAll(b, digestOf(b));
        assert.equal(await store.quarantine!(digestOf(a)), true);
        assert.equal(await store.stat(digestOf(a)), undefined);
        await assert.rejects(store.read(digestOf(a)), BlobNotFoundError);
        await assert.rejects(store.readAll(digestOf(a)), BlobNotFoundError);
        const listed: string[] = [];
        for await (const blob of store.listBlobs!()) listed.push(blob.digest);
        assert.deepEqual(listed, [digestOf(b)], "only the other blob is listed");
        assert.equal(await store.quarantine!(digestOf(a)), false, "quarantining an absent blob says so");
        assert.deepEqual(await bytesFromStore(store, digestOf(b)), b, "other blobs are untouched");
        await store.write(streamOf(a), digestOf(a), a.byteLength);
        assert.deepEqual(await bytesFromStore(store, digestOf(a)), a, "a repair writes it back");
      });
    });

    describe("upload sessions", () => {
      before(fresh);

      test("start: a fresh session at offset 0", async () => {
        const before = Date.now();
        const s = await store.startUpload("library/ubuntu");
        assert.match(s.id, /^[0-9a-f-]{36}$/);
        assert.equal(s.repo, "library/ubuntu");
        assert.equal(s.offset, 0);
        const at = Date.parse(s.startedAt);
        assert.ok(at >= before - 1000 && at <= Date.now() + 1000, s.startedAt);
        assert.deepEqual(await store.uploadState(s.id), s);
        const other = await store.startUpload("library/ubuntu");
        assert.notEqual(other.id, s.id);
        await store.cancelUpload(other.id);
        await store.cancelUpload(s.id);
      });

      test("chunks: right start appends, wrong start is UploadRangeError and changes nothing", async () => {
        const data = bytesOf(30, 300_000);
        const s = await store.startUpload("r");
        let st = await store.appendUpload(s.id, streamOf(data.subarray(0, 100_000)), 0, 100_000);
        assert.equal(st.offset, 100_000);
        for (const wrong of [0, 99_999, 100_001, 200_000]) {
          await assert.rejects(
            store.appendUpload(s.id, streamOf(data.subarray(100_000, 200_000)), wrong, 100_000),
            UploadRangeError,
          );
          assert.equal((await store.uploadState(s.id)).offset, 100_000, `start ${wrong} changed the session`);
        }
        st = await store.appendUpload(s.id, streamOf(data.subarray(100_000, 200_000)), 100_000, undefined);
        assert.equal(st.offset, 200_000);
        st = await store.appendUpload(s.id, streamOf(data.subarray(200_000)), undefined, undefined);
        assert.equal(st.offset, 300_000);
        assert.equal(st.repo, "r");
        assert.equal(st.id, s.id);
        assert.deepEqual(await store.uploadState(s.id), st);
        const result = await store.commitUpload(s.id, digestOf(data));
        assert.deepEqual(result, { digest: digestOf(data), size: data.length });
        assert.ok((await store.readAll(digestOf(data))).equals(data));
      });

      test("an empty chunk leaves the offset alone", async () => {
        const s = await store.startUpload("r");
        await store.appendUpload(s.id, streamOf(Buffer.from("abc")), 0, 3);
        const st = await store.appendUpload(s.id, streamOf(Buffer.alloc(0)), 3, 0);
        assert.equal(st.offset, 3);
        await store.cancelUpload(s.id);
      });

      test("a chunk whose length disagrees: SizeInvalidError, session stays consistent", async () => {
        const s = await store.startUpload("r");
        await store.appendUpload(s.id, streamOf(Buffer.from("hello ")), 0, 6);
        const chunk = Buffer.from("world");
        await assert.rejects(store.appendUpload(s.id, streamOf(chunk), 6, 99), SizeInvalidError);
        const { offset } = await store.uploadState(s.id);
        assert.ok(offset === 6 || offset === 11, `offset ${offset}`);
        // Whatever the session kept, it can be completed and committed consistently.
        const kept = Buffer.concat([Buffer.from("hello "), chunk]).subarray(0, offset);
        const tail = Buffer.from("!");
        await store.appendUpload(s.id, streamOf(tail), offset, 1);
        const whole = Buffer.concat([kept, tail]);
        assert.deepEqual(await store.commitUpload(s.id, digestOf(whole)), {
          digest: digestOf(whole),
          size: whole.length,
        });
      });

      test("commit an empty session", async () => {
        const s = await store.startUpload("r");
        assert.deepEqual(await store.commitUpload(s.id, digestOf("")), { digest: digestOf(""), size: 0 });
        assert.equal(await store.stat(digestOf("")), 0);
      });

      test("commit with a wrong digest: DigestMismatchError, session gone, nothing visible", async () => {
        await fresh();
        const data = bytesOf(31, 50_000);
        const s = await store.startUpload("r");
        await store.appendUpload(s.id, streamOf(data), 0, data.length);
        const claimed = digestOf("not it");
        await assert.rejects(store.commitUpload(s.id, claimed), DigestMismatchError);
        await assert.rejects(store.uploadState(s.id), UploadNotFoundError);
        await assert.rejects(store.commitUpload(s.id, digestOf(data)), UploadNotFoundError);
        await assertNothingVisible(claimed, digestOf(data));
      });

      test("commit, then the session is gone", async () => {
        const s = await store.startUpload("r");
        await store.appendUpload(s.id, streamOf(Buffer.from("x")), 0, 1);
        await store.commitUpload(s.id, digestOf("x"));
        await assert.rejects(store.uploadState(s.id), UploadNotFoundError);
        await assert.rejects(store.commitUpload(s.id, digestOf("x")), UploadNotFoundError);
        await assert.rejects(store.cancelUpload(s.id), UploadNotFoundError);
        assert.equal(await store.stat(digestOf("x")), 1);
      });

      test("sha512 commit, right and wrong", async () => {
        const data = bytesOf(32, 2 * MiB + 3);
        const s = await store.startUpload("r");
        await store.appendUpload(s.id, streamOf(data.subarray(0, MiB)), 0, MiB);
        await store.appendUpload(s.id, streamOf(data.subarray(MiB)), MiB, data.length - MiB);
        const d512 = digestOf(data, "sha512");
        assert.deepEqual(await store.commitUpload(s.id, d512), { digest: d512, size: data.length });
        assert.ok((await store.readAll(d512)).equals(data));
        assert.equal(await store.stat(digestOf(data)), undefined, "stored only under the digest asked for");

        const t = await store.startUpload("r");
        await store.appendUpload(t.id, streamOf(Buffer.from("abc")), 0, 3);
        const wrong = digestOf("abd", "sha512");
        await assert.rejects(store.commitUpload(t.id, wrong), DigestMismatchError);
        assert.equal(await store.stat(wrong), undefined);
        assert.equal(await store.stat(digestOf("abc", "sha512")), undefined);
        await assert.rejects(store.uploadState(t.id), UploadNotFoundError);
      });

      test("cancel drops the session and its bytes", async () => {
        await fresh();
        const s = await store.startUpload("r");
        await store.appendUpload(s.id, streamOf(Buffer.from("abc")), 0, 3);
        await store.cancelUpload(s.id);
        await assert.rejects(store.uploadState(s.id), UploadNotFoundError);
        await assert.rejects(store.appendUpload(s.id, streamOf(Buffer.from("d")), 3, 1), UploadNotFoundError);
        await assert.rejects(store.commitUpload(s.id, digestOf("abc")), UploadNotFoundError);
        await assert.rejects(store.cancelUpload(s.id), UploadNotFoundError);
        await assertNothingVisible(digestOf("abc"));
      });

      describe("unknown and malformed ids are UploadNotFoundError and touch nothing", () => {
        const ids: [string, string][] = [
          ["unknown uuid", randomUUID()],
          ["parent traversal", "../x"],
          ["traversal to blobs", "../blobs"],
          ["traversal to tmp", "../tmp"],
          ["deep traversal", "../../../../etc"],
          ["not a uuid", "not-a-uuid"],
          ["empty", ""],
          ["dot", "."],
          ["dot dot", ".."],
          ["uppercase uuid", randomUUID().toUpperCase()],
          ["uuid with a suffix", `${randomUUID()}/../..`],
          ["uuid with a newline", `${randomUUID()}\n`],
          ["absolute path", "/tmp"],
        ];
        const ops: [string, (s: BlobStore, id: string) => Promise<unknown>][] = [
          ["uploadState", (s, id) => s.uploadState(id)],
          ["appendUpload", (s, id) => s.appendUpload(id, streamOf(Buffer.from("zz")), undefined, undefined)],
          ["commitUpload", (s, id) => s.commitUpload(id, digestOf(""))],
          ["cancelUpload", (s, id) => s.cancelUpload(id)],
        ];
        const keep = Buffer.from("keep me");
        before(async () => {
          await fresh();
          await store.writeAll(keep, digestOf(keep));
        });
        for (const [label, id] of ids) {
          for (const [op, call] of ops) {
            test(`${op}(${label})`, async () => {
              await assert.rejects(call(store, id), UploadNotFoundError);
              assert.ok((await store.readAll(digestOf(keep))).equals(keep), "an existing blob was touched");
              assert.deepEqual(await h.committed(), [digestOf(keep)]);
              assert.deepEqual(await h.stray(), []);
            });
          }
        }
      });

      test("state survives a restart; the new instance rebuilds the hash from the stored bytes", async () => {
        await fresh();
        const data = bytesOf(33, 3 * MiB + 11);
        const s = await store.startUpload("team/app");
        await store.appendUpload(s.id, streamOf(data.subarray(0, 2 * MiB)), 0, 2 * MiB);

        const restarted = await h.reopen();
        assert.deepEqual(await restarted.uploadState(s.id), { ...s, offset: 2 * MiB });
        await assert.rejects(
          restarted.appendUpload(s.id, streamOf(data.subarray(2 * MiB)), 0, undefined),
          UploadRangeError,
        );
        const st = await restarted.appendUpload(s.id, streamOf(data.subarray(2 * MiB)), 2 * MiB, undefined);
        assert.equal(st.offset, data.length);
        assert.deepEqual(await restarted.commitUpload(s.id, digestOf(data)), {
          digest: digestOf(data),
          size: data.length,
        });
        assert.ok((await store.readAll(digestOf(data))).equals(data), "visible to the old instance too");
      });

      test("commit on a restarted instance without further chunks", async () => {
        const data = bytesOf(34, 123_457);
        const s = await store.startUpload("r");
        await store.appendUpload(s.id, streamOf(data), 0, data.length);
        const restarted = await h.reopen();
        assert.deepEqual(await restarted.commitUpload(s.id, digestOf(data)), {
          digest: digestOf(data),
          size: data.length,
        });
      });

      test("two instances appending in turn (a stale cached hash is not used)", async () => {
        const data = bytesOf(35, 90_000);
        const other = await h.reopen();
        const s = await store.startUpload("r");
        await store.appendUpload(s.id, streamOf(data.subarray(0, 30_000)), 0, 30_000);
        await other.appendUpload(s.id, streamOf(data.subarray(30_000, 60_000)), 30_000, 30_000);
        await store.appendUpload(s.id, streamOf(data.subarray(60_000)), 60_000, 30_000);
        assert.deepEqual(await store.commitUpload(s.id, digestOf(data)), {
          digest: digestOf(data),
          size: data.length,
        });
      });

      test("a wrong digest after a restart still cancels the session", async () => {
        const s = await store.startUpload("r");
        await store.appendUpload(s.id, streamOf(Buffer.from("abc")), 0, 3);
        const restarted = await h.reopen();
        await assert.rejects(restarted.commitUpload(s.id, digestOf("abd")), DigestMismatchError);
        await assert.rejects(store.uploadState(s.id), UploadNotFoundError);
      });

      test("concurrent appends to one session are serialized: offsets add up", async () => {
        await fresh();
        const s = await store.startUpload("r");
        // Distinct sizes, so each chunk's end offset says where it landed.
        const chunks = Array.from({ length: 12 }, (_, i) => bytesOf(40 + i, 10_000 + i * 1_001));
        const states = await Promise.all(
          chunks.map((c) => store.appendUpload(s.id, streamOf(c, 997), undefined, c.length)),
        );
        const total = chunks.reduce((n, c) => n + c.length, 0);
        assert.equal((await store.uploadState(s.id)).offset, total);
        const order = states
          .map((st, i) => ({ end: st.offset, chunk: chunks[i]! }))
          .sort((a, b) => a.end - b.end);
        let offset = 0;
        for (const { end, chunk } of order) {
          offset += chunk.length;
          assert.equal(end, offset, "a chunk's end offset is the sum of every chunk before it");
        }
        const whole = Buffer.concat(order.map((o) => o.chunk));
        assert.deepEqual(await store.commitUpload(s.id, digestOf(whole)), {
          digest: digestOf(whole),
          size: total,
        });
        assert.ok((await store.readAll(digestOf(whole))).equals(whole), "chunks were not interleaved");
      });

      test("concurrent appends that all claim start 0: exactly one wins", async () => {
        const s = await store.startUpload("r");
        const chunks = Array.from({ length: 6 }, (_, i) => bytesOf(60 + i, 5000));
        const results = await Promise.allSettled(
          chunks.map((c) => store.appendUpload(s.id, streamOf(c), 0, c.length)),
        );
        const won = results.filter((r) => r.status === "fulfilled") as PromiseFulfilledResult<UploadState>[];
        assert.equal(won.length, 1);
        assert.equal(won[0]!.value.offset, 5000);
        for (const r of results) {
          if (r.status === "rejected") assert.ok(r.reason instanceof UploadRangeError, String(r.reason));
        }
        const winner = chunks[results.findIndex((r) => r.status === "fulfilled")]!;
        assert.deepEqual((await store.commitUpload(s.id, digestOf(winner))).size, 5000);
      });

      test("a commit queued behind appends sees all of them", async () => {
        const s = await store.startUpload("r");
        const a = bytesOf(70, 40_000);
        const b = bytesOf(71, 40_000);
        const pa = store.appendUpload(s.id, streamOf(a, 1000), undefined, undefined);
        const pb = store.appendUpload(s.id, streamOf(b, 1000), undefined, undefined);
        const whole = Buffer.concat([a, b]);
        const pc = store.commitUpload(s.id, digestOf(whole));
        await Promise.all([pa, pb]);
        assert.deepEqual(await pc, { digest: digestOf(whole), size: 80_000 });
      });

      test("a chunk source that fails: the session keeps at most its bytes and stays usable", async () => {
        await fresh();
        const head = bytesOf(80, 10_000);
        const partial = bytesOf(81, 20_000);
        const s = await store.startUpload("r");
        await store.appendUpload(s.id, streamOf(head), 0, head.length);
        const boom = new Error("chunk source failed");
        await assert.rejects(
          store.appendUpload(s.id, failingStream(partial, boom), head.length, 40_000),
          (err: unknown) => err === boom,
        );
        const { offset } = await store.uploadState(s.id);
        assert.ok(offset >= head.length && offset <= head.length + partial.length, `offset ${offset}`);
        const kept = Buffer.concat([head, partial]).subarray(0, offset);
        const tail = Buffer.from("tail");
        await store.appendUpload(s.id, streamOf(tail), offset, tail.length);
        const whole = Buffer.concat([kept, tail]);
        assert.equal((await store.commitUpload(s.id, digestOf(whole))).size, whole.length);
      });

      test("aborting an append: rejects with the reason; the session keeps what it had plus at most the chunk", async () => {
        await fresh();
        const head = bytesOf(82, 100_000);
        const s = await store.startUpload("r");
        await store.appendUpload(s.id, streamOf(head), 0, head.length);
        const ac = new AbortController();
        const reason = new Error("client went away");
        const chunk = bytesOf(83, 64 * 1024);
        let streamed = 0;
        const source = endlessStream(chunk, (total) => {
          streamed = total;
          if (total >= 512 * 1024) ac.abort(reason);
        });
        await assert.rejects(
          store.appendUpload(s.id, source, undefined, undefined, ac.signal),
          isAbort(reason),
        );
        const { offset } = await store.uploadState(s.id);
        assert.ok(offset >= head.length && offset <= head.length + streamed, `offset ${offset}`);
        // The session's bytes are exactly head + a prefix of the endless chunk stream;
        // committing that content must succeed (the running hash was not corrupted).
        const extra = offset - head.length;
        const repeated = Buffer.concat(Array.from({ length: Math.ceil(extra / chunk.length) }, () => chunk));
        const kept = Buffer.concat([head, repeated.subarray(0, extra)]);
        const tail = Buffer.from("end");
        await store.appendUpload(s.id, streamOf(tail), offset, 3);
        const whole = Buffer.concat([kept, tail]);
        assert.deepEqual(await store.commitUpload(s.id, digestOf(whole)), {
          digest: digestOf(whole),
          size: whole.length,
        });
        assert.deepEqual(await h.stray(), []);
      });

      test("once an aborted or failed append settles, the session's bytes stop changing (50 rounds)", async () => {
        await fresh();
        const chunk = bytesOf(84, 64 * 1024);
        for (let round = 0; round < 50; round++) {
          const s = await store.startUpload("r");
          const ac = new AbortController();
          const reason = new Error(`round ${round}`);
          const source = endlessStream(chunk, (total) => {
            if (total >= (1 + (round % 8)) * chunk.length) {
              if (round % 2 === 0) ac.abort(reason);
              else source.destroy(reason);
            }
          });
          await assert.rejects(store.appendUpload(s.id, source, 0, undefined, ac.signal), isAbort(reason));
          const settled = (await store.uploadState(s.id)).offset;
          await sleep(round % 5);
          await new Promise((resolve) => setImmediate(resolve));
          assert.equal((await store.uploadState(s.id)).offset, settled, `round ${round}: bytes landed late`);
          await store.cancelUpload(s.id);
        }
      });

      test("uploads are not visible as blobs before commit", async () => {
        await fresh();
        const data = bytesOf(90, 1000);
        const s = await store.startUpload("r");
        await store.appendUpload(s.id, streamOf(data), 0, data.length);
        assert.equal(await store.stat(digestOf(data)), undefined);
        await assert.rejects(store.readAll(digestOf(data)), BlobNotFoundError);
        assert.deepEqual(await h.committed(), []);
        await store.cancelUpload(s.id);
      });
    });
  });
}
