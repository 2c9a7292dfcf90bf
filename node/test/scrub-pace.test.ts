/**
 * The scrub in process (node/scrub.ts) on a real FsBlobStore and an empty
 * real view: the background pass starts on its schedule and is paced by
 * `bytesPerSecond` (a pass over S bytes cannot end before S / rate); a
 * corrupt blob no repository links is quarantined and recorded as an
 * `unreferenced` finding with a `blob-corrupt` alert, not repaired; a run
 * asked for while one goes on is that run; close() stops a run going on.
 * (Against real processes with repair: scrub.test.ts, scrub-s3.test.ts.)
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { Registry as MetricsRegistry } from "prom-client";
import { digestOf, encodedOf } from "../../protocol/digest.js";
import type { EventBody } from "../../protocol/events.js";
import { cleanupStack, silentLogger, tempDir } from "../../testing/harness.js";
import { FsBlobStore } from "../data/fs-blob-store.js";
import { MetadataView } from "../data/view.js";
import { Scrubber } from "../scrub.js";

const cleanup = cleanupStack({ after });

async function setup(bytesPerSecond: number) {
  const dir = tempDir(cleanup);
  const store = new FsBlobStore(join(dir, "store"), { fsync: false });
  await store.init();
  const view = new MetadataView(join(dir, "view"));
  await view.open();
  cleanup(() => view.close());
  const alerts: Array<{ body: EventBody; actor: string }> = [];
  const metrics = new MetricsRegistry();
  const scrubber = new Scrubber({
    region: "a",
    store,
    content: view.content,
    record: async (body, actor) => {
      alerts.push({ body, actor });
    },
    bytesPerSecond,
    metrics,
    logger: silentLogger,
  });
  cleanup(() => scrubber.close());
  return { dir, store, scrubber, alerts, metrics };
}

test("a background pass runs on schedule, at most bytesPerSecond, and quarantines an unreferenced corrupt blob", async () => {
  const { dir, store, scrubber, alerts, metrics } = await setup(4 << 20);
  const good = Buffer.alloc(1 << 20, 7);
  const other = Buffer.alloc(1 << 20, 9);
  await store.writeAll(good, digestOf(good));
  await store.writeAll(other, digestOf(other));
  const hex = encodedOf(digestOf(other));
  const file = join(dir, "store", "blobs", "sha256", hex.slice(0, 2), hex);
  const bad = Buffer.from(other);
  bad[5] = 0;
  writeFileSync(file, bad);

  const started = Date.now();
  scrubber.schedule(0, 3_600_000);
  // The schedule's timer starts the pass on the next turn; wait for it to show up, then to end.
  for (let i = 0; i < 100 && scrubber.list().length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  await scrubber.idle();
  const [run] = scrubber.list();
  assert.ok(run !== undefined);
  assert.ok(Date.now() - started >= 400, "2 MiB at 4 MiB/s cannot take less than half a second");
  assert.equal(run.trigger, "background");
  assert.equal(run.state, "finished");
  assert.equal(run.checked, 2);
  assert.equal(run.bytes, 2 << 20);
  assert.equal(run.corrupt, 1);
  assert.deepEqual(
    run.findings.map((f) => [f.digest, f.outcome]),
    [[digestOf(other), "unreferenced"]],
  );
  assert.equal(await store.stat(digestOf(other)), undefined, "quarantined");
  assert.equal(await store.stat(digestOf(good)), 1 << 20, "the good blob stays");
  assert.equal(alerts.length, 1);
  assert.equal(alerts[0]!.actor, "scrub");
  assert.equal((alerts[0]!.body as { kind: string }).kind, "blob-corrupt");
  const text = await metrics.metrics();
  assert.match(text, /meridian_scrub_repairs_total\{outcome="unreferenced"\} 1/);
  assert.match(text, /meridian_scrub_runs_total\{trigger="background",outcome="ok"\} 1/);
});

test("asking for a run while one goes on returns that run; close() stops it, recorded failed", async () => {
  const { store, scrubber } = await setup(1 << 20);
  const big = Buffer.alloc(4 << 20, 1);
  await store.writeAll(big, digestOf(big));
  const first = scrubber.run();
  const second = scrubber.run({ repair: false });
  assert.equal(second.runId, first.runId);
  assert.equal(first.state, "running");
  await scrubber.close();
  assert.equal(first.state, "failed");
  assert.match(first.error ?? "", /stopping/);
  assert.ok(first.bytes < big.byteLength, "stopped before the end");
});
