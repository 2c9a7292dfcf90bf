/**
 * cli/lag.ts's matrix from a collection (pure): rows destinations, columns
 * sources, "p50/p99 (pending)", "-" on the diagonal, "?" where the row's
 * worker gave no figure, an unreachable region marked DOWN. The real mesh is
 * in observe-cli.test.ts.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { RegionStatus } from "../../mesh-client/mesh-status.js";
import { parseMesh } from "../../protocol/mesh.js";
import { formatLagMatrix, lagMatrix } from "../lag.js";

const mesh = parseMesh({
  insecure: true,
  regions: ["a", "b", "c"].map((name, i) => ({
    name,
    registry: `http://127.0.0.1:${5000 + 10 * i}`,
    nats: `nats://127.0.0.1:${5001 + 10 * i}`,
    grpc: `127.0.0.1:${5002 + 10 * i}`,
  })),
});

test("the matrix: figures, idle links, a silent worker and a region down", () => {
  const report: RegionStatus[] = [
    { region: "a", up: true, peers: {}, replication: { b: { pending: 0 }, c: { pending: 4 } } },
    {
      region: "b",
      up: true,
      peers: {},
      replication: {
        a: { lagP50Ms: 120, lagP99Ms: 1_450, pending: 0 },
        c: { pending: 2, lagP50Ms: 65_000, lagP99Ms: 65_000 },
      },
    },
    // c's peer and worker did not answer: nothing of its links.
    { region: "c", up: false, error: "deadline", peers: {}, replication: { a: {}, b: {} } },
  ];
  const matrix = lagMatrix(mesh, report);
  assert.deepEqual(matrix.unreachable, ["c"]);
  assert.equal(matrix.links.c!.a, null);
  assert.deepEqual(matrix.links.b!.a, { lagP50Ms: 120, lagP99Ms: 1_450, pending: 0 });
  const text = formatLagMatrix(matrix);
  const rows = text.split("\n").map((l) => l.trimEnd().split(/\s{2,}/));
  assert.deepEqual(rows.slice(0, 4), [
    ["dst \\ src", "a", "b", "c"],
    ["a", "-", "-/- (0)", "-/- (4)"],
    ["b", "120ms/1.4s (0)", "-", "1m05s/1m05s (2)"],
    ["c (DOWN)", "?", "?", "-"],
  ]);
  assert.match(text, /"\?": no answer from the row's worker/);
});
