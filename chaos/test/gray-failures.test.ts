/**
 * The gray-failure suite's short form (chaos/gray-failures.ts): five cells on
 * one mesh, covering every fault kind and the whole region — a's node
 * frozen (SIGSTOP), a's peer blackholed, all of region a frozen, a's worker
 * killed (-9) and restarted, a's nats-server's links delayed. For each: the
 * pulls through the front door, the pushes to the healthy regions and
 * `meridian status` all ended within their stated bounds, and afterwards
 * every region held every acknowledged push. The figures of all 24 cells
 * come from `node dist/chaos/gray-failures.js` (chaos/README.md).
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { cleanupStack } from "../../testing/harness.js";
import { type Cell, runGrayFailures } from "../gray-failures.js";

const CELLS: Cell[] = [
  { target: "node", fault: "stop" },
  { target: "peer", fault: "blackhole" },
  { target: "region", fault: "stop" },
  { target: "worker", fault: "kill" },
  { target: "nats", fault: "delay" },
];

describe("gray failures", () => {
  const cleanup = cleanupStack({ after });

  test("frozen, blackholed, slow and killed processes of a region: bounded ops, convergence, nothing lost", async (t) => {
    const results = await runGrayFailures(cleanup, { cells: CELLS });
    assert.equal(results.length, CELLS.length);
    for (const r of results) {
      const cell = `${r.target} ${r.fault}`;
      t.diagnostic(`${cell}: ${JSON.stringify(r)}`);
      // The loops ran: otherwise "bounded" would hold of nothing.
      assert.ok(r.pulls.ok + r.pulls.failed + r.pulls.hung > 0, `${cell}: no pull ran`);
      assert.ok(r.pushes.ok > 0, `${cell}: no push to a healthy region was acknowledged`);
      assert.ok(r.admin.ok + r.admin.failed + r.admin.hung > 0, `${cell}: meridian status never ran`);
      assert.ok(
        r.pulls.bounded,
        `${cell}: a pull through the front door outran its bound (${r.pulls.maxMs} ms)`,
      );
      assert.equal(r.pulls.failed + r.pulls.hung, 0, `${cell}: a pull of a replicated image failed`);
      assert.ok(
        r.pushes.bounded,
        `${cell}: a push to a healthy region outran its bound (${r.pushes.maxMs} ms)`,
      );
      assert.equal(r.pushes.failed, 0, `${cell}: a push to a healthy region failed: ${r.pushes.errors}`);
      assert.ok(r.admin.bounded, `${cell}: meridian status outran its bound (${r.admin.maxMs} ms)`);
      assert.ok(r.converged, `${cell}: ${r.missing} (push, region) pairs missing after the heal`);
      assert.equal(r.lost, 0, `${cell}: acknowledged pushes held by no region`);
      assert.ok(r.readsBackMs >= 0, `${cell}: pulls through the front door never succeeded again`);
      assert.ok(r.held, `${cell}: ${r.broke}`);
    }
  });
});
