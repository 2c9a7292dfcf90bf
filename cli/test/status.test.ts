import assert from "node:assert/strict";
import { test } from "node:test";
import { parseProm, quantile } from "../../mesh-client/mesh-status.js";

test("quantile interpolates inside cumulative buckets like histogram_quantile", () => {
  const buckets = [
    { le: 0.1, count: 50 },
    { le: 0.5, count: 90 },
    { le: 1, count: 100 },
    { le: Number.POSITIVE_INFINITY, count: 100 },
  ];
  const table: Array<[number, number]> = [
    [0.5, 0.1],
    [0.25, 0.05],
    [0.7, 0.3],
    [0.95, 0.75],
    [1, 1],
  ];
  for (const [q, want] of table) assert.ok(Math.abs(quantile(buckets, q)! - want) < 1e-9, `q=${q}`);
  assert.equal(quantile([{ le: 1, count: 0 }], 0.5), undefined);
  assert.equal(
    quantile(
      [
        { le: 0.1, count: 1 },
        { le: Number.POSITIVE_INFINITY, count: 10 },
      ],
      0.99,
    ),
    0.1,
  );
});

test("parseProm reads names, labels and values and skips comments", () => {
  const text = [
    "# HELP x y",
    "# TYPE x counter",
    'meridian_replication_bytes_total{src="a",dst="b",region="b"} 1234',
    'meridian_replication_lag_seconds_bucket{le="+Inf",src="a",dst="b"} 7',
    "meridian_up 1",
    "",
  ].join("\n");
  assert.deepEqual(parseProm(text), [
    { name: "meridian_replication_bytes_total", labels: { src: "a", dst: "b", region: "b" }, value: 1234 },
    { name: "meridian_replication_lag_seconds_bucket", labels: { le: "+Inf", src: "a", dst: "b" }, value: 7 },
    { name: "meridian_up", labels: {}, value: 1 },
  ]);
});
