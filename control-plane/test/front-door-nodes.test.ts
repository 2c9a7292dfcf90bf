/**
 * The front door's pure decisions over a region's nodes: node health,
 * applied per node (read-your-writes never reaches a lagging node), the
 * order to try nodes in, and the attempts a decision becomes.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  appliedOfHealthz,
  attemptsFor,
  freshestNodes,
  initialNodeState,
  type NodeState,
  nodeHasApplied,
  nodeOrder,
  observeNode,
  servingNodes,
  WriteFloors,
} from "../front-door-nodes.js";
import { initialRegionState, type RegionState, route } from "../front-door-routing.js";

const RULES = { missesToDown: 2, alpha: 0.2 };

function node(name: string, over: Partial<NodeState> = {}, region = "a"): NodeState {
  return { ...initialNodeState(region, name), up: true, ...over };
}

describe("node health", () => {
  test("one good probe brings a node up; two misses or one unreachable take it down", () => {
    let s = initialNodeState("a", "http://n1");
    s = observeNode(s, { kind: "probe-ok", at: 1, rttMs: 4, applied: { a: 7 } }, RULES);
    assert.equal(s.up, true);
    assert.deepEqual(s.applied, { a: 7 });
    s = observeNode(s, { kind: "probe-failed", at: 2, error: "x" }, RULES);
    assert.equal(s.up, true, "one miss is not enough");
    s = observeNode(s, { kind: "probe-failed", at: 3, error: "x" }, RULES);
    assert.equal(s.up, false);
    s = observeNode(s, { kind: "probe-ok", at: 4, rttMs: 4, applied: undefined }, RULES);
    assert.equal(s.up, true);
    assert.deepEqual(s.applied, { a: 7 }, "a probe that says nothing of applied keeps what was known");
    s = observeNode(s, { kind: "unreachable", at: 5, error: "ECONNREFUSED" }, RULES);
    assert.equal(s.up, false);
  });

  test("a write's Meridian-Seq raises what the node applied, never lowers it; its own report may", () => {
    let s = node("n1", { applied: { a: 5 } });
    s = observeNode(s, { kind: "wrote", origin: "a", seq: 9 }, RULES);
    assert.deepEqual(s.applied, { a: 9 });
    s = observeNode(s, { kind: "wrote", origin: "a", seq: 3 }, RULES);
    assert.deepEqual(s.applied, { a: 9 });
    s = observeNode(s, { kind: "applied", applied: { a: 2 } }, RULES);
    assert.deepEqual(s.applied, { a: 2 }, "a node whose view was rebuilt starts over");
  });

  test("/healthz bodies: applied per origin, appliedSeq for the node's own region", () => {
    assert.deepEqual(appliedOfHealthz("a", { appliedSeq: 12 }), { a: 12 });
    assert.deepEqual(appliedOfHealthz("a", { applied: { b: 3, a: 1 }, appliedSeq: 12 }), { a: 12, b: 3 });
    assert.equal(appliedOfHealthz("a", { region: "a" }), undefined);
    assert.equal(appliedOfHealthz("a", null), undefined);
    assert.deepEqual(appliedOfHealthz("a", { applied: { b: "x" }, appliedSeq: 1 }), { a: 1 });
  });
});

describe("read-your-writes per node", () => {
  const tokens = [{ origin: "a", seq: 10 }];

  test("only nodes that applied every token serve; a lagging node never does", () => {
    const fresh = node("n1", { applied: { a: 10 } });
    const lagging = node("n2", { applied: { a: 9 } });
    const unknown = node("n3");
    assert.equal(nodeHasApplied(tokens, fresh), true);
    assert.equal(nodeHasApplied(tokens, lagging), false);
    assert.equal(nodeHasApplied(tokens, unknown), false);
    // Even when the region as a whole (its peer, or being the origin) has applied it.
    assert.deepEqual(
      servingNodes([fresh, lagging, unknown], tokens, true).map((n) => n.node),
      ["n1"],
    );
    assert.deepEqual(servingNodes([lagging, unknown], tokens, true), []);
  });

  test("a one-node region keeps the region-level rule", () => {
    const only = node("n1");
    assert.deepEqual(
      servingNodes([only], tokens, true).map((n) => n.node),
      ["n1"],
    );
    assert.deepEqual(servingNodes([only], tokens, false), []);
    assert.deepEqual(
      servingNodes([node("n1", { applied: { a: 11 } })], tokens, false).map((n) => n.node),
      ["n1"],
      "its own report suffices too",
    );
  });

  test("down nodes never serve; without tokens every up node does", () => {
    const nodes = [node("n1", { up: false, applied: { a: 99 } }), node("n2"), node("n3")];
    assert.deepEqual(servingNodes(nodes, tokens, true), []);
    assert.deepEqual(
      servingNodes(nodes, [], false).map((n) => n.node),
      ["n2", "n3"],
    );
  });
});

describe("node order", () => {
  test("round-robin from the cursor when nothing is outstanding", () => {
    assert.deepEqual(nodeOrder([0, 0, 0], 0), [0, 1, 2]);
    assert.deepEqual(nodeOrder([0, 0, 0], 1), [1, 2, 0]);
    assert.deepEqual(nodeOrder([0, 0, 0], 5), [2, 0, 1]);
    assert.deepEqual(nodeOrder([0], 7), [0]);
    assert.deepEqual(nodeOrder([], 3), []);
  });

  test("fewest outstanding first, ties in round-robin order", () => {
    assert.deepEqual(nodeOrder([3, 1, 2], 0), [1, 2, 0]);
    assert.deepEqual(nodeOrder([1, 0, 0], 0), [1, 2, 0]);
    assert.deepEqual(nodeOrder([1, 0, 0], 2), [2, 1, 0]);
  });

  test("successive cursors spread over every node, each index once per order", () => {
    const firsts = new Map<number, number>();
    for (let c = 0; c < 300; c++) {
      const order = nodeOrder([0, 0, 0], c);
      assert.deepEqual([...order].sort(), [0, 1, 2]);
      firsts.set(order[0]!, (firsts.get(order[0]!) ?? 0) + 1);
    }
    assert.deepEqual([...firsts.values()], [100, 100, 100]);
  });
});

describe("attempts", () => {
  const nodes = new Map<string, NodeState[]>([
    ["a", [node("a1", { applied: { a: 10 } }), node("a2", { applied: { a: 4 } })]],
    ["b", [node("b1", { applied: { a: 10 } }, "b")]],
  ]);
  const view = (over: Partial<Parameters<typeof attemptsFor>[1]> = {}) => ({
    nodes,
    outstanding: () => [0, 0],
    cursor: () => 1,
    tokens: [],
    regionHasApplied: () => true,
    ...over,
  });

  test("a region's other nodes come before the next region", () => {
    const got = attemptsFor(
      [
        { region: "a", reason: "local" },
        { region: "b", reason: "nearest" },
      ],
      view(),
    );
    assert.deepEqual(
      got.map((x) => `${x.region}/${x.node}/${x.reason}`),
      ["a/a2/local", "a/a1/local", "b/b1/nearest"],
    );
  });

  test("a read-your-writes read skips the lagging node of its region", () => {
    const got = attemptsFor(
      [
        { region: "a", reason: "read-your-writes" },
        { region: "b", reason: "read-your-writes" },
      ],
      view({ tokens: [{ origin: "a", seq: 10 }] }),
    );
    assert.deepEqual(
      got.map((x) => x.node),
      ["a1", "b1"],
    );
  });

  test("writes prefer nodes that applied the region's last answered write; else any up node", () => {
    const got = (floor: number) =>
      attemptsFor([{ region: "a", reason: "home" }], view({ floor: () => floor })).map((x) => x.node);
    assert.deepEqual(got(10), ["a1", "a2"], "the fresh node first, the other as a retry");
    assert.deepEqual(got(4), ["a2", "a1"]);
    assert.deepEqual(got(11), ["a2", "a1"], "none known to have it: sent as without the rule");
    assert.deepEqual(
      freshestNodes([node("x"), node("y", { applied: { a: 3 } })], "a", 3).map((n) => n.node),
      ["y"],
    );
  });

  test("down nodes are not attempted", () => {
    const down = new Map(nodes);
    down.set("a", [node("a1", { up: false }), node("a2")]);
    assert.deepEqual(
      attemptsFor([{ region: "a", reason: "home" }], view({ nodes: down })).map((x) => x.node),
      ["a2"],
    );
  });
});

describe("route with nodes", () => {
  const states = new Map<string, RegionState>([
    ["a", { ...initialRegionState("a"), up: true, applied: { a: 10 } }],
    ["b", { ...initialRegionState("b"), up: true, applied: { a: 10 } }],
  ]);
  const input = {
    method: "GET",
    path: "/v2/r/manifests/v1",
    clientRegion: "a",
    tokens: [{ origin: "a", seq: 10 }],
    uploadRegion: undefined,
  };
  const decide = (nodes: Map<string, NodeState[]>) =>
    route(input, { regions: ["a", "b"], states, homes: new Map(), nodes });

  test("the origin region of several nodes serves a token only from a node that applied it", () => {
    const lagging = new Map([
      ["a", [node("a1", { applied: { a: 9 } }), node("a2", { applied: { a: 9 } })]],
      ["b", [node("b1", {}, "b")]],
    ]);
    // a's nodes both lag: b (one node, its peer applied a:10) serves it.
    assert.deepEqual(decide(lagging), {
      kind: "proxy",
      candidates: [{ region: "b", reason: "read-your-writes" }],
    });
    const caughtUp = new Map([
      ["a", [node("a1", { applied: { a: 9 } }), node("a2", { applied: { a: 10 } })]],
      ["b", [node("b1", {}, "b")]],
    ]);
    assert.deepEqual(decide(caughtUp), {
      kind: "proxy",
      candidates: [
        { region: "a", reason: "read-your-writes" },
        { region: "b", reason: "read-your-writes" },
      ],
    });
  });

  test("one-node regions route as without nodes", () => {
    const single = new Map([
      ["a", [node("a1")]],
      ["b", [node("b1", {}, "b")]],
    ]);
    assert.deepEqual(decide(single), route(input, { regions: ["a", "b"], states, homes: new Map() }));
  });
});

describe("write floors", () => {
  test("a repository's reads wait for its last write; writes for every write; pruned once applied everywhere", () => {
    const f = new WriteFloors();
    assert.equal(f.forRead("a", "r"), 0);
    f.wrote("a", "r", 5);
    f.wrote("a", "s", 7);
    f.wrote("a", "r", 3); // an answer overtaken by a later one
    f.wrote("b", undefined, 2);
    assert.equal(f.forRead("a", "r"), 5);
    assert.equal(f.forRead("a", "s"), 7);
    assert.equal(f.forRead("a", undefined), 0);
    assert.equal(f.forRead("b", "r"), 0, "floors are per region");
    assert.equal(f.forWrite("a"), 7);
    assert.equal(f.forWrite("b"), 2);
    f.prune("a", 6);
    assert.equal(f.forRead("a", "r"), 0, "every node applied it");
    assert.equal(f.forRead("a", "s"), 7);
    assert.equal(f.forWrite("a"), 7, "the region's floor stays (a view never goes back but on rebuild)");
    assert.equal(f.pending("a"), 1);
  });

  test("bounded: the oldest repositories go first", () => {
    const f = new WriteFloors();
    for (let i = 0; i < 10_005; i++) f.wrote("a", `r${i}`, i + 1);
    assert.equal(f.pending("a"), 10_000);
    assert.equal(f.forRead("a", "r0"), 0);
    assert.equal(f.forRead("a", "r10004"), 10_005);
  });

  test("a read of a repository written here skips nodes not known to have the write", () => {
    const nodes = new Map([["a", [node("a1", { applied: { a: 4 } }), node("a2", { applied: { a: 9 } })]]]);
    const f = new WriteFloors();
    f.wrote("a", "r", 9);
    const attempts = (repo: string) =>
      attemptsFor([{ region: "a", reason: "local" }], {
        nodes,
        outstanding: () => [0, 0],
        cursor: () => 0,
        tokens: [],
        regionHasApplied: () => true,
        floor: (r) => f.forRead(r, repo),
      }).map((x) => x.node);
    assert.deepEqual(attempts("r"), ["a2", "a1"]);
    assert.deepEqual(attempts("other"), ["a1", "a2"]);
  });
});
