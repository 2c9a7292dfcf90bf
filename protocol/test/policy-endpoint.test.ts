/**
 * External endpoints in replication policies (issue 17; protocol/policy.ts's
 * header): how a policy names one, what it may not say, and which links a
 * region's worker runs.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PolicyInvalidError } from "../errors.js";
import {
  coversLink,
  effectivePolicies,
  endpointLinkBandwidth,
  endpointLinks,
  endpointOf,
  endpointRunners,
  isExclusiveLink,
  type Policy,
  parsePolicies,
  parsePolicy,
  policyToYaml,
} from "../policy.js";

const p = (extra: Record<string, unknown>): Policy => parsePolicy({ name: "p", ...extra });

/** The problems of an invalid policy, one string each. */
function problems(input: Record<string, unknown>): string[] {
  try {
    parsePolicy({ name: "p", ...input });
  } catch (err) {
    assert.ok(err instanceof PolicyInvalidError);
    return (err.detail as { errors: string[] }).errors;
  }
  assert.fail("accepted");
}

describe("endpoints in policies", () => {
  test("endpoint:NAME parses on either side, kept beside regions and after *", () => {
    assert.deepEqual(p({ source: "a", destination: "endpoint:onprem" }).destinations, ["endpoint:onprem"]);
    const imp = p({ source: "endpoint:up.stream", destinations: ["b", "a"], trigger: "manual" });
    assert.deepEqual(imp.sources, ["endpoint:up.stream"]);
    assert.deepEqual(imp.destinations, ["a", "b"]);
    assert.deepEqual(p({ sources: ["*", "endpoint:x", "a"], destination: "b", trigger: "manual" }).sources, [
      "*",
      "endpoint:x",
    ]);
    assert.equal(endpointOf("endpoint:x"), "x");
    assert.equal(endpointOf("x"), undefined);
    assert.equal(endpointOf("endpoint:Bad"), undefined);
  });

  test("the normalized form and its YAML read back to the same policy", () => {
    for (const input of [
      { source: "a", destination: "endpoint:onprem", bandwidth: "1MiB/s" },
      { sources: ["*", "endpoint:x"], destination: "b", trigger: { schedule: "*/5 * * * *" } },
    ]) {
      const policy = p(input);
      assert.deepEqual(parsePolicy(policy), policy);
      assert.deepEqual(parsePolicies(policyToYaml(policy)), [policy]);
    }
  });

  const refused: Array<[string, Record<string, unknown>, RegExp]> = [
    [
      "an endpoint on both sides",
      { source: "endpoint:a", destination: "endpoint:b", trigger: "manual" },
      /destinations: an endpoint on both sides \(endpoint:a, endpoint:b\)/,
    ],
    [
      "an on-push import (the default trigger)",
      { source: "endpoint:onprem", destination: "b" },
      /trigger: on-push \(the default\) cannot import from endpoint:onprem: an external registry has no event stream/,
    ],
    [
      "an on-push import (stated)",
      { source: "endpoint:onprem", destination: "b", trigger: "on-push" },
      /trigger: on-push cannot import from endpoint:onprem/,
    ],
    [
      "a bad endpoint name",
      { source: "a", destination: "endpoint:Not_Valid" },
      /destination: invalid endpoint name "Not_Valid"/,
    ],
    ["an empty endpoint name", { source: "a", destination: "endpoint:" }, /invalid endpoint name ""/],
  ];
  for (const [what, input, message] of refused) {
    test(`refused: ${what}`, () => {
      const errors = problems(input);
      assert.ok(
        errors.some((e) => message.test(e)),
        `${errors.join("\n")} !~ ${message}`,
      );
      assert.ok(errors.every((e) => e.startsWith('policy "p": ')));
    });
  }

  test("an export on-push is fine, and so is a scheduled import", () => {
    assert.equal(p({ source: "a", destination: "endpoint:x" }).trigger.type, "on-push");
    assert.equal(p({ source: "endpoint:x", destination: "a", trigger: "manual" }).trigger.type, "manual");
  });

  test('"*" never includes an endpoint, and endpoint entries name no region link', () => {
    const exp = p({ source: "*", destination: "endpoint:x", exclusive: true });
    assert.equal(coversLink(exp, "a", "b"), false);
    assert.equal(isExclusiveLink([exp], "a", "b"), false);
    assert.equal(effectivePolicies([exp], "a", "b")[0]!.name, "default");
    const imp = p({ source: "endpoint:x", destination: "*", trigger: "manual", exclusive: true });
    assert.equal(coversLink(imp, "a", "b"), false);
    assert.equal(isExclusiveLink([imp], "b", "a"), false);
  });

  test("endpointLinks: a region runs its exports and its imports; disabled policies run nothing", () => {
    const exp = p({ name: "exp", sources: ["a", "b"], destination: "endpoint:cloud" });
    const all = p({ name: "all", source: "*", destination: "endpoint:cloud", bandwidth: 1000 });
    const imp = p({ name: "imp", source: "endpoint:onprem", destination: "b", trigger: "manual" });
    const off = p({ name: "off", source: "a", destination: "endpoint:cloud", enabled: false });
    const links = (r: string) =>
      endpointLinks([exp, all, imp, off], r).map((l) => `${l.policy.name}:${l.direction}:${l.endpoint}`);
    assert.deepEqual(links("a"), ["all:export:cloud", "exp:export:cloud"]);
    assert.deepEqual(links("b"), ["all:export:cloud", "exp:export:cloud", "imp:import:onprem"]);
    assert.deepEqual(links("c"), ["all:export:cloud"]);
    assert.deepEqual(endpointRunners(imp, ["a", "b", "c"]), ["b"]);
    assert.deepEqual(endpointRunners(exp, ["a", "b", "c"]), ["a", "b"]);
    assert.deepEqual(endpointRunners(off, ["a", "b", "c"]), []);
  });

  test("endpointLinkBandwidth: the smallest budget of the policies carrying that direction", () => {
    const slow = p({ name: "slow", source: "a", destination: "endpoint:x", bandwidth: 500 });
    const fast = p({ name: "fast", source: "*", destination: "endpoint:x", bandwidth: 9000 });
    const imp = p({ name: "imp", source: "endpoint:x", destination: "a", trigger: "manual", bandwidth: 7 });
    assert.equal(endpointLinkBandwidth([slow, fast, imp], "a", "x", "export"), 500);
    assert.equal(endpointLinkBandwidth([slow, fast, imp], "b", "x", "export"), 9000);
    assert.equal(endpointLinkBandwidth([slow, fast, imp], "a", "x", "import"), 7);
    assert.equal(endpointLinkBandwidth([slow, fast, imp], "a", "y", "export"), undefined);
  });
});
