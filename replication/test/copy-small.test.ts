/**
 * Issue 14 (item 4, small-image lag): what a small image's copy costs.
 *   - A blob whose size the event told (at most WHOLE_COPY_MAX_BYTES) is
 *     fetched at once, without a HasBlobs round trip first; a peer that lacks
 *     it fails the fetch with BlobNotFoundError and the next peer is asked.
 *   - Small blobs are written whole (no upload session, no resume marker);
 *     larger ones still go through a resumable session.
 *   - A manifest's blobs are copied side by side, not one after the other.
 * The peers are real blob stores behind the copy interface, counting what
 * they are asked.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, test } from "node:test";
import { pino } from "pino";
import { FsBlobStore } from "../../node/data/fs-blob-store.js";
import { type Digest, digestOf } from "../../protocol/digest.js";
import { BlobNotFoundError } from "../../protocol/errors.js";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST } from "../../testing/oci-client.js";
import { Copier, type CopySource, WHOLE_COPY_MAX_BYTES } from "../copy.js";

const cleanup = cleanupStack({ after });

/** A peer serving `parts` from a real store; it counts HasBlobs calls and fetches, and may hold fetches. */
async function peer(region: string, parts: Buffer[], hold?: (digest: Digest) => Promise<void> | undefined) {
  const store = new FsBlobStore(tempDir(cleanup), { fsync: false });
  await store.init();
  for (const bytes of parts) await store.writeAll(bytes, digestOf(bytes) as Digest);
  const asked = { sizes: 0, fetches: 0, concurrent: 0, maxConcurrent: 0 };
  const source: CopySource = {
    region,
    blobSizes: async (digests) => {
      asked.sizes++;
      return Promise.all(digests.map((d) => store.stat(d)));
    },
    fetchBlob: (digest, offset, signal) => {
      asked.fetches++;
      asked.concurrent++;
      asked.maxConcurrent = Math.max(asked.maxConcurrent, asked.concurrent);
      const out = new PassThrough();
      // As PeerClient's stream: a failure stays on it for the consumer, not an uncaught 'error'.
      out.on("error", () => undefined);
      out.on("close", () => asked.concurrent--);
      (async () => {
        const size = await store.stat(digest);
        if (size === undefined) throw new BlobNotFoundError("blob unknown");
        await hold?.(digest);
        const body = await store.read(digest, { start: offset, end: size - 1 }, signal);
        body.pipe(out);
      })().catch((err) => out.destroy(err));
      return out;
    },
  };
  return { source, asked };
}

async function copier() {
  const dir = tempDir(cleanup);
  const store = new FsBlobStore(join(dir, "store"), { fsync: false });
  await store.init();
  const stateDir = join(dir, "state");
  return { copy: new Copier({ store, stateDir, logger: pino({ level: "silent" }) }), store, stateDir };
}

test("a small blob of known size is fetched without asking first, from the next peer when one lacks it", async () => {
  const blob = randomBytes(100_000);
  const digest = digestOf(blob) as Digest;
  const a = await peer("a", [blob]);
  const c = await peer("c", []);
  const { copy, store, stateDir } = await copier();
  await copy.ensureBlob(digest, [c.source, a.source], AbortSignal.timeout(10_000), blob.length);
  assert.equal(await store.stat(digest), blob.length);
  assert.deepEqual(await store.readAll(digest), blob);
  assert.equal(a.asked.sizes + c.asked.sizes, 0, "no HasBlobs round trip");
  assert.equal(c.asked.fetches, 1);
  assert.equal(a.asked.fetches, 1);
  // Written whole: no resume marker was ever made.
  assert.ok(!existsSync(join(stateDir, "partials")) || readdirSync(join(stateDir, "partials")).length === 0);
});

test("a blob over the whole-copy size goes through a resumable session, verified", async () => {
  const blob = randomBytes(WHOLE_COPY_MAX_BYTES + 1);
  const digest = digestOf(blob) as Digest;
  const a = await peer("a", [blob]);
  const { copy, store, stateDir } = await copier();
  await copy.ensureBlob(digest, [a.source], AbortSignal.timeout(30_000), blob.length);
  assert.deepEqual(await store.readAll(digest), blob);
  assert.equal(a.asked.sizes, 1, "asked first (the resumable path)");
  assert.ok(existsSync(join(stateDir, "partials")), "a resume marker was kept while copying");
});

test("a manifest's blobs are copied side by side", async () => {
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux" }));
  const layers = [randomBytes(1000), randomBytes(2000), randomBytes(3000)];
  const descriptor = (mediaType: string, bytes: Buffer) => ({
    mediaType,
    digest: digestOf(bytes),
    size: bytes.length,
  });
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: descriptor(OCI_CONFIG, config),
      layers: layers.map((l) => descriptor(OCI_LAYER, l)),
    }),
  );
  // Blob fetches (not the manifest's) are held until all four blobs are asked for, or 2 s pass:
  // one at a time, they never are.
  let release!: () => void;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const timer = setTimeout(release, 2_000);
  const manifestDigest = digestOf(manifest) as Digest;
  const a = await peer("a", [config, ...layers, manifest], (d) => (d === manifestDigest ? undefined : held));
  const watch = setInterval(() => {
    if (a.asked.concurrent >= 4) release();
  }, 5);
  const { copy, store } = await copier();
  try {
    await copy.ensureManifest(manifestDigest, [a.source], AbortSignal.timeout(20_000), {
      size: manifest.length,
    });
  } finally {
    clearTimeout(timer);
    clearInterval(watch);
  }
  for (const bytes of [config, ...layers])
    assert.deepEqual(await store.readAll(digestOf(bytes) as Digest), bytes);
  assert.ok(
    a.asked.maxConcurrent >= 4,
    `blobs fetched side by side (at most ${a.asked.maxConcurrent} at once)`,
  );
});
