/**
 * The planner of endpoint links (replication/endpoint-plan.ts): a table of
 * both sides' tags in, the actions out.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parsePolicy } from "../../protocol/policy.js";
import {
  candidateTags,
  endpointPlanStats,
  planEndpointRepository,
  type SourceTag,
} from "../endpoint-plan.js";

const D1 = `sha256:${"1".repeat(64)}`;
const D2 = `sha256:${"2".repeat(64)}`;
const policy = (extra: Record<string, unknown> = {}) =>
  parsePolicy({ name: "p", source: "a", destination: "endpoint:x", ...extra });
const src = (tag: string, digest: string, signed = false): SourceTag => ({ tag, digest, signed });

describe("planEndpointRepository", () => {
  const cases: Array<[string, Record<string, unknown>, SourceTag[], Record<string, string>, string[]]> = [
    ["missing there: copied", {}, [src("v1", D1)], {}, ["copy v1"]],
    ["same digest: in step", {}, [src("v1", D1)], { v1: D1 }, ["in-step v1"]],
    ["elsewhere there: copied (override on)", {}, [src("v1", D1)], { v1: D2 }, ["copy v1 replaces"]],
    ["elsewhere there, override off: kept", { override: false }, [src("v1", D1)], { v1: D2 }, ["keep v1"]],
    ["override off, absent there: copied", { override: false }, [src("v1", D1)], {}, ["copy v1"]],
    ["tag filter", { tags: ["v*"] }, [src("v1", D1), src("dev", D2)], {}, ["copy v1"]],
    ["tag exclude", { tags: { exclude: ["*-rc*"] } }, [src("v1", D1), src("v2-rc1", D2)], {}, ["copy v1"]],
    ["signedOnly", { signedOnly: true }, [src("v1", D1, true), src("v2", D2)], {}, ["copy v1"]],
    ["the referrers tag schema is never a tag to copy", {}, [src(`sha256-${"1".repeat(64)}`, D2)], {}, []],
  ];
  for (const [what, extra, source, there, expected] of cases) {
    test(what, () => {
      const plan = planEndpointRepository(policy(extra), "r", source, new Map(Object.entries(there)));
      const shown = plan.actions.map(
        (a) => `${a.kind} ${a.tag}${a.kind === "copy" && a.replaces !== undefined ? " replaces" : ""}`,
      );
      assert.deepEqual(shown, expected);
    });
  }

  test("the same input plans the same (deterministic, order-free)", () => {
    const p = policy();
    const a = planEndpointRepository(p, "r", [src("b", D1), src("a", D2)], new Map());
    const b = planEndpointRepository(p, "r", [src("a", D2), src("b", D1)], new Map());
    assert.deepEqual(a, b);
    assert.deepEqual(endpointPlanStats([a, b]), { copy: 4 });
  });

  test("candidateTags keeps the policy's tags and drops the referrers schema's", () => {
    assert.deepEqual(
      candidateTags(policy({ tags: ["v*", "sha256-*"] }), ["v1", `sha256-${"a".repeat(64)}`, "x"]),
      ["v1"],
    );
  });
});
