/**
 * protocol/proxy.ts: the pure parts of pull-through cache projects, as
 * tables: the upstream repository of a repository, tag staleness, the CLI's
 * durations, and every problem of a proxy's fields.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  MAX_FRESHNESS_SECONDS,
  type ProxyConfig,
  parseDuration,
  proxyProblems,
  tagIsStale,
  upstreamRepository,
} from "../proxy.js";

const hub: ProxyConfig = { project: "hub", endpoint: "dockerhub", freshnessSeconds: 300 };
const prefixed: ProxyConfig = { ...hub, upstreamPrefix: "library" };

describe("upstreamRepository", () => {
  const cases: Array<[string, ProxyConfig, string | undefined]> = [
    ["hub/library/nginx", hub, "library/nginx"],
    ["hub/nginx", hub, "nginx"],
    ["hub", hub, undefined],
    ["hub/nginx", prefixed, "library/nginx"],
    ["hub/a/b/c", prefixed, "library/a/b/c"],
    ["hub", prefixed, "library"],
  ];
  for (const [repo, proxy, want] of cases)
    test(`${repo} with prefix ${proxy.upstreamPrefix ?? "none"} → ${want}`, () => {
      assert.equal(upstreamRepository(repo, proxy), want);
    });
});

describe("tagIsStale", () => {
  test("stale from the freshness interval on, never before", () => {
    assert.equal(tagIsStale(1_000, 1_000 + 299_999, hub), false);
    assert.equal(tagIsStale(1_000, 1_000 + 300_000, hub), true);
    assert.equal(tagIsStale(1_000, 1_000, { ...hub, freshnessSeconds: 0 }), true, "0: every pull asks");
  });
});

describe("parseDuration", () => {
  const cases: Array<[string, number | undefined]> = [
    ["90", 90],
    ["90s", 90],
    ["5m", 300],
    ["2h", 7200],
    ["1d", 86_400],
    ["0", 0],
    ["", undefined],
    ["5 minutes", undefined],
    ["-5m", undefined],
    ["1.5h", undefined],
    ["5w", undefined],
    ["99999999s", undefined],
  ];
  for (const [text, want] of cases)
    test(JSON.stringify(text), () => {
      assert.equal(parseDuration(text), want);
    });
});

describe("proxyProblems", () => {
  test("a valid proxy has none", () => {
    assert.deepEqual(proxyProblems({ ...hub }), []);
    assert.deepEqual(proxyProblems({ ...prefixed, upstreamPrefix: "my-org/sub_team" }), []);
    assert.deepEqual(proxyProblems({ ...hub, freshnessSeconds: MAX_FRESHNESS_SECONDS }), []);
  });
  const bad: Array<[string, Record<string, unknown>]> = [
    ["project", { ...hub, project: "Hub" }],
    ["project", { ...hub, project: "a/b" }],
    ["project", { ...hub, project: undefined }],
    ["endpoint", { ...hub, endpoint: "" }],
    ["endpoint", { ...hub, endpoint: 7 }],
    ["upstreamPrefix", { ...hub, upstreamPrefix: "" }],
    ["upstreamPrefix", { ...hub, upstreamPrefix: "/library" }],
    ["upstreamPrefix", { ...hub, upstreamPrefix: "library/" }],
    ["upstreamPrefix", { ...hub, upstreamPrefix: "a//b" }],
    ["upstreamPrefix", { ...hub, upstreamPrefix: "Library" }],
    ["upstreamPrefix", { ...hub, upstreamPrefix: null }],
    ["upstreamPrefix", { ...hub, upstreamPrefix: "a".repeat(201) }],
    ["freshnessSeconds", { ...hub, freshnessSeconds: -1 }],
    ["freshnessSeconds", { ...hub, freshnessSeconds: 1.5 }],
    ["freshnessSeconds", { ...hub, freshnessSeconds: "300" }],
    ["freshnessSeconds", { ...hub, freshnessSeconds: MAX_FRESHNESS_SECONDS + 1 }],
  ];
  for (const [field, proxy] of bad)
    test(`${field}: ${JSON.stringify(proxy[field])}`, () => {
      const problems = proxyProblems(proxy);
      assert.equal(problems.length, 1, problems.join("; "));
      assert.ok(problems[0]?.startsWith(`${field}: `), problems[0]);
    });
});
