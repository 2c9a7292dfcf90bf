/**
 * The fs store's blob bodies (node/data/file-body.ts), issue 14 item 3: a
 * pull copies through a few reused buffers instead of a fresh 1 MiB Buffer
 * per chunk (whose external memory made V8 run a full GC every ~64 MiB of a
 * pull); ranges and every size come out exact; a destination that goes away
 * mid-copy stops the copy and closes the file; and through a node, a client
 * that leaves mid-body leaves no open file behind while others still pull.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readlinkSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { Agent, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Digest, digestOf } from "../../protocol/digest.js";
import { cleanupStack, startTestNats, startTestNode } from "../../testing/harness.js";
import { OciClient } from "../../testing/oci-client.js";
import { FILE_CHUNK, FileBody } from "../data/file-body.js";
import { FsBlobStore } from "../data/fs-blob-store.js";
import { streamOf } from "./blob-store-suite.js";

/** A destination like a socket: takes a copy of each chunk, calls back on a later turn. */
class Sink extends Writable {
  readonly parts: Buffer[] = [];
  readonly arrayBuffers = new Set<ArrayBufferLike>();
  constructor(readonly failAfter = Number.POSITIVE_INFINITY) {
    super({ highWaterMark: 16 * 1024 });
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.arrayBuffers.add(chunk.buffer);
    this.parts.push(Buffer.from(chunk));
    if (this.parts.length >= this.failAfter) {
      // The peer is gone: the write never completes, the destination closes.
      this.destroy();
      return;
    }
    setImmediate(cb);
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Open descriptors of this process that point at `path`. */
function openOn(path: string): number {
  let n = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) n++;
    } catch {
      // closed while listing
    }
  }
  return n;
}

async function eventually(check: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (check()) return true;
    await sleep(20);
  }
  return check();
}

describe("the fs store's blob bodies", () => {
  let root: string;
  let store: FsBlobStore;
  const blobs = new Map<number, { digest: Digest; bytes: Buffer }>();
  const sizes = [0, 1, FILE_CHUNK - 1, FILE_CHUNK, FILE_CHUNK + 1, 5 * FILE_CHUNK + 12345];
  const pathOf = (digest: Digest) => join(root, "blobs", "sha256", digest.slice(7, 9), digest.slice(7));

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "meridian-file-body-"));
    store = new FsBlobStore(root, { fsync: false });
    await store.init();
    for (const size of sizes) {
      const bytes = randomBytes(size);
      const digest = digestOf(bytes);
      await store.write(streamOf(bytes), digest);
      blobs.set(size, { digest, bytes });
    }
  });
  after(() => rm(root, { recursive: true, force: true }));

  test("a copy of any size or range is exact and goes through at most two reused buffers", async () => {
    const seen = new Set<ArrayBufferLike>();
    const big = blobs.get(5 * FILE_CHUNK + 12345)!;
    const cases: Array<[number, { start: number; end: number } | undefined]> = [
      ...sizes.map((s) => [s, undefined] as [number, undefined]),
      [big.bytes.length, { start: 0, end: 0 }],
      [big.bytes.length, { start: FILE_CHUNK - 3, end: 3 * FILE_CHUNK + 7 }],
      [big.bytes.length, { start: 17, end: big.bytes.length - 1 }],
      // The same big blob twice: the second copy takes the first one's buffers.
      [big.bytes.length, undefined],
    ];
    for (const [size, range] of cases) {
      const { digest, bytes } = blobs.get(size)!;
      const body = await store.read(digest, range);
      assert.ok(body instanceof FileBody, "the fs store's read is a FileBody");
      const sink = new Sink();
      let firstCalls = 0;
      await body.writeTo(sink, () => firstCalls++);
      const expected = range === undefined ? bytes : bytes.subarray(range.start, range.end + 1);
      assert.ok(sink.bytes().equals(expected), `bytes of ${size} ${JSON.stringify(range)}`);
      assert.ok(sink.writableFinished, "the destination is ended");
      assert.equal(firstCalls, 1);
      for (const ab of sink.arrayBuffers) seen.add(ab);
      assert.equal(openOn(pathOf(digest)), 0, "the file is closed after the copy");
    }
    // Over ~20 MiB in 1 MiB chunks: a fresh buffer per chunk would be ~20 distinct ones.
    assert.ok(seen.size <= 2, `${seen.size} distinct buffers carried every copy`);
  });

  test("a destination that goes away mid-copy rejects the copy and the file is closed", async () => {
    const { digest } = blobs.get(5 * FILE_CHUNK + 12345)!;
    const body = (await store.read(digest)) as FileBody;
    const sink = new Sink(2);
    await assert.rejects(body.writeTo(sink));
    assert.ok(await eventually(() => openOn(pathOf(digest)) === 0, 5_000), "the file is closed");
  });

  test("an aborted signal stops the copy and closes the file", async () => {
    const { digest } = blobs.get(5 * FILE_CHUNK + 12345)!;
    const ac = new AbortController();
    const body = (await store.read(digest, undefined, ac.signal)) as FileBody;
    ac.abort(new Error("client went away"));
    await assert.rejects(body.writeTo(new Sink()));
    assert.ok(await eventually(() => openOn(pathOf(digest)) === 0, 5_000), "the file is closed");
  });

  test("a signal aborted before the read is opened: the body is born destroyed, the file closed, nothing thrown", async () => {
    // Issue 14: a peer read a blob for a caller that had already gone; the abort ran the stream's
    // _destroy inside Readable's constructor, before FileBody's own fields existed, and the
    // TypeError killed the process.
    const { digest } = blobs.get(5 * FILE_CHUNK + 12345)!;
    const ac = new AbortController();
    ac.abort(new Error("client went away"));
    const body = (await store.read(digest, undefined, ac.signal)) as FileBody;
    assert.ok(body.destroyed, "destroyed at once");
    await assert.rejects(body.writeTo(new Sink()));
    assert.ok(await eventually(() => openOn(pathOf(digest)) === 0, 5_000), "the file is closed");
  });

  test("streamed as a Readable it gives the same bytes", async () => {
    const { digest, bytes } = blobs.get(5 * FILE_CHUNK + 12345)!;
    const parts: Buffer[] = [];
    for await (const part of await store.read(digest, { start: 5, end: bytes.length - 2 })) parts.push(part);
    assert.ok(Buffer.concat(parts).equals(bytes.subarray(5, bytes.length - 1)));
  });
});

describe("through a node", () => {
  const cleanup = cleanupStack({ after });
  let base: string;
  let dataDir: string;
  let c: OciClient;
  before(async () => {
    const nats = await startTestNats(cleanup);
    dataDir = await mkdtemp(join(tmpdir(), "meridian-file-body-node-"));
    cleanup(() => rm(dataDir, { recursive: true, force: true }));
    const node = await startTestNode(cleanup, { nats: nats.url, dataDir });
    base = node.url;
    c = new OciClient(node.url);
  });

  test("a client that leaves mid-body leaves no open file; the next pull gets every byte", async () => {
    const bytes = randomBytes(24 * FILE_CHUNK);
    const { digest } = await c.pushBlob("body/leave", bytes);
    // The node's fs store lives in <dataDir>/store (storage.root's default).
    const blobPath = join(dataDir, "store", "blobs", "sha256", digest.slice(7, 9), digest.slice(7));
    assert.ok(existsSync(blobPath), `the blob's file is at ${blobPath}`);
    await new Promise<void>((resolve, reject) => {
      const req = request(`${base}/v2/body/leave/blobs/${digest}`, (res) => {
        assert.equal(res.statusCode, 200);
        assert.equal(res.headers["content-length"], String(bytes.length));
        assert.equal(res.headers["transfer-encoding"], undefined, "framed by Content-Length");
        res.once("data", () => {
          assert.equal(openOn(blobPath), 1, "the body reads the blob's file while it is sent");
          req.destroy();
          resolve();
        });
      });
      req.on("error", (err) => (err.message.includes("socket hang up") ? undefined : reject(err)));
      req.end();
    });
    assert.ok(await eventually(() => openOn(blobPath) === 0, 10_000), "the blob file was left open");
    const again = await fetch(`${base}/v2/body/leave/blobs/${digest}`);
    assert.equal(again.status, 200);
    assert.ok(Buffer.from(await again.arrayBuffer()).equals(bytes));
    const ranged = await fetch(`${base}/v2/body/leave/blobs/${digest}`, {
      headers: { range: `bytes=${FILE_CHUNK - 1}-${2 * FILE_CHUNK}` },
    });
    assert.equal(ranged.status, 206);
    assert.equal(
      ranged.headers.get("content-range"),
      `bytes ${FILE_CHUNK - 1}-${2 * FILE_CHUNK}/${bytes.length}`,
    );
    assert.ok(
      Buffer.from(await ranged.arrayBuffer()).equals(bytes.subarray(FILE_CHUNK - 1, 2 * FILE_CHUNK + 1)),
    );
  });

  test("one keep-alive connection carries GET after GET of a blob", async () => {
    const bytes = randomBytes(FILE_CHUNK + 7);
    const { digest } = await c.pushBlob("body/keepalive", bytes);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const sockets = new Set<unknown>();
      for (let i = 0; i < 3; i++) {
        const got = await new Promise<Buffer>((resolve, reject) => {
          request(`${base}/v2/body/keepalive/blobs/${digest}`, { agent }, (res) => {
            sockets.add(res.socket);
            const parts: Buffer[] = [];
            res.on("data", (part: Buffer) => parts.push(part));
            res.on("end", () => resolve(Buffer.concat(parts)));
            res.on("error", reject);
          })
            .on("error", reject)
            .end();
        });
        assert.ok(got.equals(bytes), `GET ${i}`);
      }
      assert.equal(sockets.size, 1, "every GET on the same connection");
    } finally {
      agent.destroy();
    }
  });
});
