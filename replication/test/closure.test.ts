/**
 * The closure walk of replication/copy.ts (issue 10, finding 4): indexes that
 * share children are walked once per digest, and closures over the limits
 * are refused at once. The source is a real blob store behind the copy
 * interface of a peer (region "a"), counting what is fetched from it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { after, test } from "node:test";
import { pino } from "pino";
import { FsBlobStore } from "../../node/data/fs-blob-store.js";
import type { Digest } from "../../protocol/digest.js";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import { ClosureLimitError, Copier, type CopySource, DEFAULT_CLOSURE_LIMITS } from "../copy.js";
import { diamond } from "./diamond.js";

const cleanup = cleanupStack({ after });

/** A store holding `parts`, served like a peer; `fetched` counts each digest's transfers. */
async function source(parts: Array<{ digest: string; bytes: Buffer }>) {
  const store = new FsBlobStore(tempDir(cleanup), { fsync: false });
  await store.init();
  for (const p of parts) await store.writeAll(p.bytes, p.digest as Digest);
  const fetched = new Map<string, number>();
  const peer: CopySource = {
    region: "a",
    blobSizes: (digests) => Promise.all(digests.map((d) => store.stat(d))),
    fetchBlob: (digest, offset, signal) => {
      fetched.set(digest, (fetched.get(digest) ?? 0) + 1);
      const out = new PassThrough();
      store
        .stat(digest)
        .then((size) => store.read(digest, { start: offset, end: (size ?? 1) - 1 }, signal))
        .then(
          (r: Readable) => r.pipe(out),
          (err) => out.destroy(err),
        );
      return out;
    },
  } as CopySource;
  return { peer, fetched };
}

async function copier(limits?: { maxItems?: number; maxDepth?: number }) {
  const dir = tempDir(cleanup);
  const store = new FsBlobStore(join(dir, "store"), { fsync: false });
  await store.init();
  const copy = new Copier({
    store,
    stateDir: join(dir, "state"),
    logger: pino({ level: "silent" }),
    ...(limits === undefined ? {} : { limits }),
  });
  return { copy, store };
}

test("a 20-deep diamond of shared children is walked once per manifest and finishes", async () => {
  const chain = diamond(20);
  assert.equal(chain.manifests.length, 2 * 20 + 3);
  const { peer, fetched } = await source([...chain.blobs, ...chain.manifests]);
  const { copy, store } = await copier({ maxDepth: 32 });
  const started = Date.now();
  // 2^21 paths: a walk by paths would not finish in days; bounded generously.
  await copy.ensureManifest(chain.top.digest as Digest, [peer], AbortSignal.timeout(60_000));
  assert.ok(Date.now() - started < 60_000);
  for (const p of [...chain.blobs, ...chain.manifests]) {
    assert.equal(fetched.get(p.digest), 1, `${p.digest} fetched once`);
    assert.equal(await store.stat(p.digest as Digest), p.bytes.length);
  }
  assert.equal(fetched.size, chain.blobs.length + chain.manifests.length);
  // Walking it again (everything present) fetches nothing and finishes as quickly.
  await copy.ensureManifest(chain.top.digest as Digest, [peer], AbortSignal.timeout(60_000));
  assert.equal(
    [...fetched.values()].reduce((a, b) => a + b, 0),
    fetched.size,
  );
});

test("a closure nested deeper than the limit is refused before anything below the limit is fetched", async () => {
  const chain = diamond(20, "deep");
  const { peer, fetched } = await source([...chain.blobs, ...chain.manifests]);
  const { copy } = await copier();
  assert.equal(copy.limits.maxDepth, DEFAULT_CLOSURE_LIMITS.maxDepth);
  await assert.rejects(
    copy.ensureManifest(chain.top.digest as Digest, [peer], AbortSignal.timeout(60_000)),
    (err: unknown) => err instanceof ClosureLimitError && /nests indexes more than 16 deep/.test(err.message),
  );
  // Only the levels within the limit were fetched (the images at the bottom never).
  assert.equal(fetched.get(chain.manifests[0]!.digest), undefined);
  assert.ok(fetched.size <= 2 * 16 + 1);
});

test("a closure with more manifests and blobs than the limit is refused", async () => {
  const chain = diamond(10, "wide");
  const total = chain.blobs.length + chain.manifests.length;
  const { peer } = await source([...chain.blobs, ...chain.manifests]);
  const over = await copier({ maxItems: total - 1 });
  await assert.rejects(
    over.copy.ensureManifest(chain.top.digest as Digest, [peer], AbortSignal.timeout(60_000)),
    (err: unknown) =>
      err instanceof ClosureLimitError && err.message.includes(`more than ${total - 1} manifests and blobs`),
  );
  // Exactly at the limit it is copied: each digest counts once, however many paths reach it.
  const at = await copier({ maxItems: total });
  await at.copy.ensureManifest(chain.top.digest as Digest, [peer], AbortSignal.timeout(60_000));
  assert.equal(await at.store.stat(chain.manifests[0]!.digest as Digest), chain.manifests[0]!.bytes.length);
});

test("a shared copy goes on for the callers still waiting when one of them gives up", async () => {
  const chain = diamond(1, "shared");
  const { peer } = await source([...chain.blobs, ...chain.manifests]);
  const { copy, store } = await copier();
  const layer = chain.blobs[1]!.digest as Digest;
  const quitter = new AbortController();
  const first = copy.ensureBlob(layer, [peer], quitter.signal);
  const second = copy.ensureBlob(layer, [peer], AbortSignal.timeout(30_000));
  quitter.abort(new Error("gave up"));
  await assert.rejects(first, /gave up/);
  await second;
  assert.equal(await store.stat(layer), chain.blobs[1]!.bytes.length);
});
