/**
 * The front door's pure decisions, table by table: client regions, health,
 * nearest, read-your-writes tokens, homes, the route itself, Location rewriting.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ociErrorFor,
  PeerUnavailableError,
  UnsupportedError,
  UploadNotFoundError,
} from "../../protocol/errors.js";
import {
  clientRegionOf,
  clientRegionTable,
  homeList,
  homeOf,
  initialRegionState,
  mergeHomeRules,
  nearestUp,
  observeRegion,
  parseCidr,
  parseSeqTokens,
  type RegionObservation,
  type RegionState,
  type RouteDecision,
  regionRtt,
  repositoryOf,
  requestShape,
  route,
} from "../front-door-routing.js";
import { rewriteLocation, takeRegionParam } from "../front-door-urls.js";

const REGIONS = ["a", "b", "c"];

/** States where every region is up and RTTs are a–b 10, a–c 50, b–c 20 (as a's and b's peers see them). */
function states(overrides: Partial<Record<string, Partial<RegionState>>> = {}): Map<string, RegionState> {
  const base: Record<string, Partial<RegionState>> = {
    a: {
      up: true,
      applied: { a: 10, b: 5, c: 3 },
      peers: [
        { region: "b", up: true, rttMs: 10 },
        { region: "c", up: true, rttMs: 50 },
      ],
    },
    b: {
      up: true,
      applied: { a: 8, b: 5, c: 3 },
      peers: [
        { region: "a", up: true, rttMs: 10 },
        { region: "c", up: true, rttMs: 20 },
      ],
    },
    c: { up: true, applied: { a: 2, b: 5, c: 3 }, peers: [] },
  };
  return new Map(
    REGIONS.map((r) => [r, { ...initialRegionState(r), ...base[r], ...(overrides[r] ?? {}) } as RegionState]),
  );
}

describe("client region", () => {
  const table = clientRegionTable({
    "10.0.0.0/8": "a",
    "10.1.0.0/16": "b",
    "127.0.0.1/32": "c",
    "fd00::/8": "b",
  });
  const cases: Array<[string | undefined, string | undefined, string]> = [
    [undefined, "10.2.3.4", "a"],
    [undefined, "10.1.3.4", "b"],
    [undefined, "::ffff:10.1.3.4", "b"],
    [undefined, "127.0.0.1", "c"],
    [undefined, "fd12::1", "b"],
    [undefined, "192.168.1.1", "a"],
    [undefined, undefined, "a"],
    ["c", "10.1.3.4", "c"],
    [" B ", "10.2.3.4", "b"],
    ["nowhere", "10.1.3.4", "b"],
  ];
  for (const [header, address, want] of cases) {
    test(`header ${header ?? "-"}, address ${address ?? "-"} → ${want}`, () => {
      assert.equal(clientRegionOf({ header, address, table, defaultRegion: "a", regions: REGIONS }), want);
    });
  }
  test("CIDRs are checked", () => {
    assert.deepEqual(parseCidr("10.0.0.0/8"), { address: "10.0.0.0", family: "ipv4", prefix: 8 });
    assert.deepEqual(parseCidr("::/0"), { address: "::", family: "ipv6", prefix: 0 });
    for (const bad of ["10.0.0.0", "10.0.0.0/33", "fd00::/129", "host/8", "10.0.0/8"])
      assert.equal(parseCidr(bad), undefined, bad);
  });
});

describe("health", () => {
  const rules = { missesToDown: 2, alpha: 0.5 };
  const ok = (at: number, rttMs = 10): RegionObservation => ({
    kind: "probe-ok",
    at,
    rttMs,
    status: { applied: { a: 1 }, peers: [], epoch: 0, fence: "" },
  });
  test("one success makes a region up; two consecutive misses take it down", () => {
    let s = initialRegionState("a");
    assert.equal(s.up, false);
    s = observeRegion(s, ok(1), rules);
    assert.equal(s.up, true);
    assert.equal(s.rttMs, 10);
    s = observeRegion(s, { kind: "probe-failed", at: 2, error: "x" }, rules);
    assert.equal(s.up, true, "one miss is not enough");
    s = observeRegion(s, ok(3, 20), rules);
    assert.equal(s.misses, 0);
    assert.equal(s.rttMs, 15, "RTT is an EWMA");
    s = observeRegion(s, { kind: "probe-failed", at: 4, error: "x" }, rules);
    s = observeRegion(s, { kind: "probe-failed", at: 5, error: "y" }, rules);
    assert.equal(s.up, false);
    assert.equal(s.lastError, "y");
    assert.deepEqual(s.applied, { a: 1 }, "the last Status is kept while down");
  });
  test("an unreachable region is down at once; a Status poll only brings news of what it applied", () => {
    let s = observeRegion(initialRegionState("a"), ok(1), rules);
    s = observeRegion(s, { kind: "unreachable", at: 2, error: "ECONNREFUSED" }, rules);
    assert.equal(s.up, false);
    s = observeRegion(
      s,
      { kind: "status", status: { applied: { a: 9 }, peers: [], epoch: 2, fence: "" } },
      rules,
    );
    assert.equal(s.up, false);
    assert.deepEqual(s.applied, { a: 9 });
    assert.equal(s.epoch, 2);
  });
});

describe("nearest", () => {
  test("RTT between two regions comes from either side's peer view", () => {
    const s = states();
    assert.equal(regionRtt("a", "c", s), 50);
    assert.equal(regionRtt("c", "b", s), 20, "c has no view: b's view of c");
    assert.equal(regionRtt("c", "c", s), 0);
  });
  test("the client's region first, then by RTT from it; down regions never", () => {
    assert.deepEqual(nearestUp("a", REGIONS, states()), ["a", "b", "c"]);
    assert.deepEqual(nearestUp("c", REGIONS, states()), ["c", "b", "a"]);
    assert.deepEqual(nearestUp("c", REGIONS, states({ c: { up: false } })), ["b", "a"]);
    assert.deepEqual(nearestUp("a", REGIONS, states({ a: { up: false }, b: { up: false } })), ["c"]);
  });
});

describe("read-your-writes tokens", () => {
  test("parsed per origin, the greatest seq of an origin counting", () => {
    assert.deepEqual(parseSeqTokens("a:5", REGIONS), [{ origin: "a", seq: 5 }]);
    assert.deepEqual(parseSeqTokens(" a:5 , b:2,a:7", REGIONS), [
      { origin: "a", seq: 7 },
      { origin: "b", seq: 2 },
    ]);
    assert.deepEqual(parseSeqTokens("  ", REGIONS), []);
  });
  for (const bad of ["a", "a:", ":5", "a:x", "a:-1", "A:1", "a:1,", "z:1", "a:1;b:2", "a:1234567890123456"]) {
    test(`"${bad}" is refused`, () => {
      assert.throws(() => parseSeqTokens(bad, REGIONS), UnsupportedError);
    });
  }
});

describe("homes", () => {
  const rules = mergeHomeRules([
    {
      rules: [
        { scope: "team/", homes: { "0": "a" } },
        { scope: "team/app", homes: {} },
      ],
    },
    {
      rules: [
        { scope: "team/", homes: { "0": "a", "3": "c" } },
        { scope: "", homes: { "1": "b" } },
      ],
    },
    { rules: [{ scope: 5 }, { scope: "x", homes: { nope: "a" } }] },
  ]);
  const cases: Array<[string, string | undefined]> = [
    ["team/web", "c"],
    ["team/app", undefined],
    ["other", "b"],
    ["x", undefined],
  ];
  for (const [repo, want] of cases) {
    test(`${repo} → ${want ?? "no home"}`, () => assert.equal(homeOf(repo, rules)?.home, want));
  }
  test("the list of homes in use", () => {
    assert.deepEqual(homeList(rules), [
      { scope: "", home: "b", epoch: 1 },
      { scope: "team/", home: "c", epoch: 3 },
    ]);
  });
});

describe("requests", () => {
  test("repositories come from OCI paths (upload paths first)", () => {
    assert.equal(repositoryOf("/v2/team/app/manifests/v1"), "team/app");
    assert.equal(repositoryOf("/v2/team/app/blobs/uploads/"), "team/app");
    assert.equal(repositoryOf("/v2/team/app/blobs/uploads/abc"), "team/app");
    assert.equal(repositoryOf("/v2/a/blobs/b/blobs/sha256:00"), "a/blobs/b");
    assert.equal(repositoryOf("/v2/team/app/tags/list"), "team/app");
    assert.equal(repositoryOf("/v2/team/app/referrers/sha256:00"), "team/app");
    assert.equal(repositoryOf("/v2/"), undefined);
    assert.equal(repositoryOf("/v2/BAD/manifests/v1"), undefined);
  });
  test("reads, writes and the rest", () => {
    assert.deepEqual(requestShape("GET", "/v2/"), { kind: "read", repo: undefined });
    assert.deepEqual(requestShape("HEAD", "/v2/r/blobs/sha256:00"), { kind: "read", repo: "r" });
    assert.deepEqual(requestShape("PUT", "/v2/r/manifests/v1"), { kind: "write", repo: "r" });
    assert.deepEqual(requestShape("PUT", "/admin/v1/rules"), { kind: "other", repo: undefined });
  });
  test("_region is taken out of a query, other parameters kept byte for byte", () => {
    assert.deepEqual(takeRegionParam("_region=b&digest=sha256%3Aab"), {
      region: "b",
      query: "digest=sha256%3Aab",
    });
    assert.deepEqual(takeRegionParam("digest=sha256:ab"), { region: undefined, query: "digest=sha256:ab" });
    assert.deepEqual(takeRegionParam(""), { region: undefined, query: "" });
  });
  test("a _region that is not a region name's shape is a 400 UNSUPPORTED, never another error", () => {
    for (const bad of ["%E0%A4%A", "%zz", "..%2Fx", "B", "b%00", "a".repeat(40), "", "-a"]) {
      assert.throws(
        () => takeRegionParam(`_region=${bad}`),
        (err) => err instanceof UnsupportedError && ociErrorFor(err)?.status === 400,
        bad,
      );
    }
  });
});

describe("route", () => {
  const homes = mergeHomeRules([{ rules: [{ scope: "homed/", homes: { "0": "c" } }] }]);
  const view = (s = states()) => ({ regions: REGIONS, states: s, homes });
  const ask = (input: Partial<Parameters<typeof route>[0]>, s = states()): RouteDecision =>
    route(
      {
        method: "GET",
        path: "/v2/r/manifests/v1",
        clientRegion: "a",
        tokens: [],
        uploadRegion: undefined,
        ...input,
      },
      view(s),
    );
  const regions = (d: RouteDecision) =>
    d.kind === "proxy" ? d.candidates.map((c) => `${c.region}/${c.reason}`) : d;

  test("reads: local, then nearest", () => {
    assert.deepEqual(regions(ask({})), ["a/local", "b/nearest", "c/nearest"]);
    assert.deepEqual(regions(ask({ clientRegion: "c" }, states({ c: { up: false } }))), [
      "b/nearest",
      "a/nearest",
    ]);
  });
  test("read-your-writes: only regions that applied every token, or the origin", () => {
    const tokens = [{ origin: "a", seq: 8 }];
    assert.deepEqual(regions(ask({ clientRegion: "c", tokens })), [
      "b/read-your-writes",
      "a/read-your-writes",
    ]);
    assert.deepEqual(regions(ask({ clientRegion: "c", tokens: [{ origin: "a", seq: 9 }] })), [
      "a/read-your-writes",
    ]);
    assert.deepEqual(
      regions(
        ask({
          clientRegion: "c",
          tokens: [
            { origin: "a", seq: 2 },
            { origin: "c", seq: 3 },
          ],
        }),
      ),
      ["c/read-your-writes", "b/read-your-writes", "a/read-your-writes"],
    );
    const d = ask({ clientRegion: "c", tokens: [{ origin: "a", seq: 9 }] }, states({ a: { up: false } }));
    assert.equal(d.kind, "refuse");
    assert.ok(d.kind === "refuse" && d.wait && d.error instanceof PeerUnavailableError);
    assert.equal(d.kind === "refuse" && d.reason, "read-your-writes");
  });
  test("writes: the home region, or 503 naming it and the way out", () => {
    assert.deepEqual(regions(ask({ method: "PUT", path: "/v2/homed/app/manifests/v1" })), ["c/home"]);
    const d = ask({ method: "PUT", path: "/v2/homed/app/manifests/v1" }, states({ c: { up: false } }));
    assert.ok(d.kind === "refuse" && !d.wait && d.error instanceof PeerUnavailableError);
    assert.match((d as { error: Error }).error.message, /home region c .*meridian failover --from c --to a/);
    assert.deepEqual(regions(ask({ method: "PUT", path: "/v2/free/app/manifests/v1", clientRegion: "b" })), [
      "b/local",
      "a/nearest",
      "c/nearest",
    ]);
  });
  test("upload sessions stay in their region, and die with it", () => {
    const path = "/v2/homed/app/blobs/uploads/x";
    assert.deepEqual(regions(ask({ method: "PATCH", path, uploadRegion: "b" })), ["b/upload-session"]);
    const d = ask({ method: "PATCH", path, uploadRegion: "b" }, states({ b: { up: false } }));
    assert.ok(d.kind === "refuse" && d.error instanceof UploadNotFoundError);
    const unknown = ask({ method: "PATCH", path, uploadRegion: "zz" });
    assert.ok(unknown.kind === "refuse" && unknown.error instanceof UploadNotFoundError);
  });
  test("nothing up: 503", () => {
    const d = ask({}, states({ a: { up: false }, b: { up: false }, c: { up: false } }));
    assert.ok(d.kind === "refuse" && d.error instanceof PeerUnavailableError && !d.wait);
  });
  test("deterministic: the same input gives the same answer", () => {
    for (let i = 0; i < 5; i++) assert.deepEqual(ask({ clientRegion: "b" }), ask({ clientRegion: "b" }));
  });
});

describe("Location", () => {
  const registries = new Map([
    ["http://127.0.0.1:5000", "a"],
    ["http://127.0.0.1:5010", "b"],
  ]);
  const cases: Array<[string, number, string, string]> = [
    ["/v2/r/blobs/uploads/u1", 202, "a", "/v2/r/blobs/uploads/u1?_region=a"],
    ["/v2/r/blobs/uploads/u1?_state=x", 202, "a", "/v2/r/blobs/uploads/u1?_state=x&_region=a"],
    ["/v2/r/blobs/uploads/u1?_region=c", 202, "a", "/v2/r/blobs/uploads/u1?_region=a"],
    ["http://127.0.0.1:5010/v2/r/blobs/uploads/u1", 202, "a", "/v2/r/blobs/uploads/u1?_region=b"],
    ["http://127.0.0.1:5000/v2/r/blobs/sha256:00", 201, "a", "/v2/r/blobs/sha256:00"],
    ["/v2/r/blobs/sha256:00", 201, "a", "/v2/r/blobs/sha256:00"],
    ["http://127.0.0.1:5010/v2/r/blobs/sha256:00", 307, "a", "http://127.0.0.1:5010/v2/r/blobs/sha256:00"],
    ["https://cdn.example/blob", 201, "a", "https://cdn.example/blob"],
  ];
  for (const [location, status, servedBy, want] of cases) {
    test(`${status} ${location} from ${servedBy} → ${want}`, () => {
      assert.equal(rewriteLocation(location, status, servedBy, registries), want);
    });
  }
});
