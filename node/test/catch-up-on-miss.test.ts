/**
 * Several nodes of one region (issue 13, stateless nodes): each has its own
 * view, fed from the region's log. A write acknowledged by one node may not
 * have reached another's view yet when the client's next request lands
 * there: a manifest PUT naming a blob just pushed through the other node,
 * or a pull right after a push. The node then looks again once its view has
 * caught up with the log (node/data/log-follow.ts CatchUpOnMiss) instead of
 * answering MANIFEST_BLOB_UNKNOWN or MANIFEST_UNKNOWN.
 *
 * Two Registries on one real JetStream log and one store directory; the
 * second one's log transport is slowed (each tailed entry delivered 400 ms
 * late), so its view always lags the first's acknowledged writes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { digestOf } from "../../protocol/digest.js";
import { ManifestNotFoundError, ManifestReferenceError } from "../../protocol/errors.js";
import { cleanupStack, silentLogger, startTestNats, tempDir } from "../../testing/harness.js";
import type { EventLog, LoggedEvent } from "../data/event-log.js";
import { JetStreamLog } from "../data/jetstream-log.js";
import { CatchUpOnMiss } from "../data/log-follow.js";
import { openBlobStore } from "../data/open-blob-store.js";
import { Registry } from "../data/registry.js";
import { MetadataView } from "../data/view.js";

const cleanup = cleanupStack({ after });
const TAIL_DELAY_MS = 400;

/** The log as a slow link delivers it: every tailed entry arrives TAIL_DELAY_MS late. */
function slowTail(log: JetStreamLog): EventLog {
  return new Proxy(log, {
    get(target, prop) {
      if (prop === "tail") {
        return async function* (fromSeq: number, signal: AbortSignal): AsyncIterable<LoggedEvent> {
          for await (const entry of target.tail(fromSeq, signal)) {
            await sleep(TAIL_DELAY_MS);
            yield entry;
          }
        };
      }
      const value = Reflect.get(target, prop);
      return typeof value === "function" ? value.bind(target) : value;
    },
  }) as EventLog;
}

async function region(): Promise<{ first: Registry; second: Registry; log: JetStreamLog }> {
  const nats = await startTestNats(cleanup);
  const dir = tempDir(cleanup);
  const store = await openBlobStore({ type: "fs", root: join(dir, "blobs"), fsync: false });
  const open = async (name: string, slow: boolean) => {
    const view = new MetadataView(join(dir, `${name}-view`));
    await view.open();
    const log = JetStreamLog.open({
      servers: [nats.url],
      region: "a",
      name: `test-${name}`,
      logger: silentLogger,
    });
    await log.ready();
    const registry = new Registry({
      region: "a",
      store,
      log: slow ? slowTail(log) : log,
      view,
      logger: silentLogger,
      maxManifestBytes: 4 << 20,
    });
    registry.start();
    cleanup(async () => {
      await log.close();
      await registry.stop();
      await view.close();
    });
    return { registry, log };
  };
  const first = await open("first", false);
  const second = await open("second", true);
  return { first: first.registry, second: second.registry, log: first.log };
}

function image(tag: string) {
  const layer = Buffer.from(`layer of ${tag} ${Math.random()}`);
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", tag }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {
        mediaType: "application/vnd.oci.image.config.v1+json",
        digest: digestOf(config),
        size: config.length,
      },
      layers: [
        { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: digestOf(layer), size: layer.length },
      ],
    }),
  );
  return { layer, config, manifest };
}

async function pushBlobs(registry: Registry, repo: string, ...blobs: Buffer[]): Promise<void> {
  for (const blob of blobs)
    await registry.pushBlob(repo, Readable.from([blob]), digestOf(blob), blob.length, "test");
}

describe("a node looks again after catching up with its region's log", () => {
  test("a manifest PUT naming blobs pushed through another node a moment ago is accepted", async () => {
    const { first, second } = await region();
    const img = image("v1");
    await pushBlobs(first, "app", img.layer, img.config);
    // The second node's view has not seen the blobs yet (its tail runs 400 ms behind)...
    assert.equal(await second.view.content.blobLink("app", digestOf(img.layer)), undefined);
    // ...and still takes the manifest: it caught up before deciding.
    const { digest } = await second.putManifest(
      "app",
      { tag: "v1" },
      img.manifest,
      "application/vnd.oci.image.manifest.v1+json",
      "test",
    );
    assert.equal(digest, digestOf(img.manifest));
  });

  test("a pull right after a push through another node finds the tag and the blobs", async () => {
    const { first, second } = await region();
    const img = image("v2");
    await pushBlobs(first, "app", img.layer, img.config);
    await first.putManifest(
      "app",
      { tag: "v2" },
      img.manifest,
      "application/vnd.oci.image.manifest.v1+json",
      "test",
    );
    const resolved = await second.resolveManifest("app", { tag: "v2" });
    assert.equal(resolved.digest, digestOf(img.manifest));
    const opened = await second.openBlob("app", digestOf(img.layer), () => undefined);
    const chunks: Buffer[] = [];
    for await (const chunk of opened.stream) chunks.push(chunk as Buffer);
    assert.deepEqual(Buffer.concat(chunks), img.layer);
  });

  test("what no node holds is still refused, within the catch-up bound", async () => {
    const { second } = await region();
    const img = image("v3");
    const started = Date.now();
    await assert.rejects(
      second.putManifest(
        "app",
        { tag: "v3" },
        img.manifest,
        "application/vnd.oci.image.manifest.v1+json",
        "test",
      ),
      ManifestReferenceError,
    );
    await assert.rejects(second.resolveManifest("app", { tag: "nothing" }), ManifestNotFoundError);
    // Two misses, each bounded by the catch-up's 2 s (and quicker here: the log answers at once).
    assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
  });
});

describe("CatchUpOnMiss", () => {
  test("a flood of misses costs the log one request at a time, each asked after its miss", async () => {
    let asked = 0;
    let inFlight = 0;
    let maxInFlight = 0;
    let seq = 10;
    const applied: number[] = [];
    const log = {
      writable: true,
      async lastSeq() {
        asked++;
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        const answer = seq;
        await sleep(50);
        inFlight--;
        return answer;
      },
    };
    const view = {
      async waitFor(s: number) {
        applied.push(s);
      },
    };
    const catchUp = new CatchUpOnMiss(log, view);
    const first = catchUp.request();
    seq = 11; // a write after the first request was asked: later misses must see it
    await Promise.all([first, ...Array.from({ length: 50 }, () => catchUp.request())]);
    assert.equal(asked, 2, "the first request, then one shared by every miss that came while it was out");
    assert.equal(maxInFlight, 1);
    assert.deepEqual(applied, [10, 11]);
  });

  test("a log that does not answer costs at most the bound; a log known down costs nothing", async () => {
    const hung = { writable: true, lastSeq: () => new Promise<number>(() => {}) };
    const view = { waitFor: async () => {} };
    const started = Date.now();
    await new CatchUpOnMiss(hung, view, 300).request();
    const took = Date.now() - started;
    assert.ok(took >= 250 && took < 2_000, `took ${took} ms`);
    let asked = false;
    const down = {
      writable: false,
      lastSeq: async () => {
        asked = true;
        return 1;
      },
    };
    await new CatchUpOnMiss(down, view).request();
    assert.equal(asked, false);
  });
});
