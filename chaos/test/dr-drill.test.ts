/**
 * The disaster-recovery drill (chaos/dr-drill.ts) once, with a 250 ms
 * heartbeat: what must hold whatever the timings. The figures (read and
 * write RTO, async loss) go to benchmarks/README.md from
 * `node dist/chaos/dr-drill.js`, never asserted here.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { cleanupStack } from "../../testing/harness.js";
import { runDrill } from "../dr-drill.js";

describe("disaster-recovery drill", () => {
  const cleanup = cleanupStack({ after });

  test("region a dies under load: reads carry on, sync(1) loses nothing, a returns fenced and converges", async (t) => {
    const r = await runDrill(cleanup, { intervalMs: 250, seedImages: 3, warmMs: 1_500, observeMs: 2_000 });
    t.diagnostic(JSON.stringify(r));
    assert.ok(
      r.acked.sync > 0 && r.acked.async > 0,
      "pushes of both kinds were acknowledged before the kill",
    );
    assert.ok(r.readsAfterKill > 0);
    assert.ok(r.readsRecovered, "pulls of replicated images succeed through the front door after the kill");
    assert.equal(r.lost.sync, 0, "a sync(1) push acknowledged by a was held by no other region");
    // What async lost was still in a's log: it comes back with a.
    assert.equal(r.recoveredOnReturn, r.lost.sync + r.lost.async);
    assert.ok(r.fencedRefusals >= 1, "the returning old home refused home writes");
    assert.ok(
      r.writeRtoMs >= r.failoverAllowedAfterMs,
      "no push was acknowledged between the kill and the failover",
    );
  });
});
