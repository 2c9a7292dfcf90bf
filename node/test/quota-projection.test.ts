/**
 * The quota projection (node/data/projections/quotas.ts) on a real `level`
 * database: the usage the fixed scenario leaves (deduplicated per project,
 * a repository deletion, a manifest deletion, a size never learned); the
 * live usage does not depend on the order events of several origins arrive
 * in; the last quota write wins whatever the arrival order; and the
 * collection hook a GC event will call (`collected`) drops reclaimable
 * bytes, never live ones, and a digest pushed again after it counts afresh.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Level } from "level";
import { digestOf } from "../../protocol/digest.js";
import { type EventBody, makeEvent, type RegistryEvent } from "../../protocol/events.js";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import { ContentProjection } from "../data/projections/content.js";
import { QuotaProjection } from "../data/projections/quotas.js";
import { type ApplyHandler, Batch } from "../data/projections/store.js";
import { MetadataView, writeOf } from "../data/view.js";
import { scenario } from "./view-scenario.js";

const cleanup = cleanupStack({ after });
const A = digestOf("quota-layer-a");
const B = digestOf("quota-layer-b");
const M = digestOf("quota-manifest");

function ev(origin: string, wall: number, body: EventBody): RegistryEvent {
  return makeEvent(body, {
    id: `q-${origin}-${wall}`,
    origin,
    hlc: { wall, logical: 0 },
    actor: "admin",
    at: new Date(wall * 1000).toISOString(),
  });
}

async function openView(): Promise<MetadataView> {
  const view = new MetadataView(join(tempDir(cleanup), "view"));
  await view.open();
  cleanup(() => view.close());
  return view;
}

async function applied(events: RegistryEvent[]): Promise<MetadataView> {
  const view = await openView();
  await view.apply(events.map((event, i) => ({ seq: i + 1, event })));
  return view;
}

/** The quota and content projections on their own database, for the collection hook. */
async function projections() {
  const db = new Level<string, string>(join(tempDir(cleanup), "db"));
  await db.open();
  cleanup(() => db.close());
  const quotas = new QuotaProjection(db);
  const content = new ContentProjection(db, "lww", quotas);
  const apply = async (events: RegistryEvent[], also?: (batch: Batch) => Promise<void>) => {
    const batch = new Batch(db);
    for (const e of events) {
      const handler = (content.handlers[e.type] ?? quotas.handlers[e.type]) as ApplyHandler | undefined;
      await handler?.(batch, e, writeOf(e), 1);
    }
    await also?.(batch);
    await batch.write();
  };
  return { quotas, apply };
}

describe("quota projection", () => {
  test("the scenario's usage: distinct bytes per project, deletions reclaimable, the quota set", async () => {
    const view = await applied(scenario());
    assert.deepEqual(await view.quotas.all(), [
      { project: "other", limitBytes: null, usedBytes: 0, blobs: 0, reclaimableBytes: 10 },
      // L1 (10) + M1 (100) + M2 (120) + REF (50); M3 (130) deleted; L2's size never learned counts 0.
      { project: "team", limitBytes: 1_000_000, usedBytes: 280, blobs: 4, reclaimableBytes: 130 },
    ]);
    assert.equal(view.quotas.limitOf("team"), 1_000_000);
    assert.equal(view.quotas.limitOf("other"), undefined);
  });

  test("live usage is the same whatever order two origins' events arrive in", async () => {
    const events = [
      ev("a", 1, { type: "blob.pushed", repo: "p/one", digest: A, size: 1000 }),
      ev("b", 2, { type: "blob.pushed", repo: "p/two", digest: A, size: 1000 }),
      ev("a", 3, { type: "blob.pushed", repo: "p/one", digest: B, size: 300 }),
      ev("b", 4, { type: "blob.deleted", repo: "p/one", digest: B }),
      ev("a", 5, {
        type: "manifest.pushed",
        repo: "p/two",
        digest: M,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        size: 77,
        blobs: [A],
        manifests: [],
      }),
      ev("b", 6, { type: "repository.deleted", repo: "p/one" }),
      ev("a", 7, { type: "quota.set", project: "p", limitBytes: 5000 }),
      ev("b", 8, { type: "quota.set", project: "p", limitBytes: 9000 }),
    ];
    const forward = await applied(events);
    // Region b's order: its own events first, then a's.
    const byOrigin = [...events.filter((e) => e.origin === "b"), ...events.filter((e) => e.origin === "a")];
    const other = await applied(byOrigin);
    for (const view of [forward, other]) {
      const [p] = await view.quotas.all();
      assert.equal(p?.usedBytes, 1077, "A once (two repositories), the manifest; B deleted");
      assert.equal(p?.blobs, 2);
      assert.equal(p?.limitBytes, 9000, "the later quota write wins");
      assert.equal(await view.quotas.holds("p", A), true);
      assert.equal(await view.quotas.holds("p", B), false);
    }
  });

  test("a collection drops reclaimable bytes, never live ones; pushed again, a digest counts afresh", async () => {
    const { quotas, apply } = await projections();
    await apply([
      ev("a", 1, { type: "blob.pushed", repo: "p/one", digest: A, size: 1000 }),
      ev("a", 2, { type: "blob.pushed", repo: "q/one", digest: A, size: 1000 }),
      ev("a", 3, { type: "blob.pushed", repo: "p/one", digest: B, size: 300 }),
      ev("a", 4, { type: "blob.deleted", repo: "p/one", digest: A }),
    ]);
    assert.deepEqual(await quotas.usage("p"), { usedBytes: 300, blobs: 1, reclaimableBytes: 1000 });
    assert.deepEqual(await quotas.usage("q"), { usedBytes: 1000, blobs: 1, reclaimableBytes: 0 });
    // What a `blob.collected {digest}` handler will do, in its batch.
    await apply([], (batch) => quotas.collected(batch, A));
    await apply([], (batch) => quotas.collected(batch, B));
    assert.deepEqual(await quotas.usage("p"), { usedBytes: 300, blobs: 1, reclaimableBytes: 0 });
    assert.deepEqual(await quotas.usage("q"), { usedBytes: 1000, blobs: 1, reclaimableBytes: 0 });
    await apply([ev("a", 5, { type: "blob.pushed", repo: "p/two", digest: A, size: 1000 })]);
    assert.deepEqual(await quotas.usage("p"), { usedBytes: 1300, blobs: 2, reclaimableBytes: 0 });
  });
});
