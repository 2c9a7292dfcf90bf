/**
 * The stream's delete breaker (replication/delete-breaker.ts) as decisions:
 * a deletion, the tags shown and the window's history in, the decision out.
 * Pure: no processes here (control-plane/test/delete-breaker*.test.ts runs
 * the breaker in a mesh).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ContentEvent } from "../../protocol/events.js";
import type { Write } from "../../protocol/registers.js";
import {
  type BreakerAlert,
  judgeDeletion,
  type LiveTag,
  resetLetsThrough,
  tagsRemovedBy,
  type WindowEntry,
} from "../delete-breaker.js";
import { DEFAULT_BREAKER } from "../plan.js";

const REPO = "team/app";
const D1 = `sha256:${"1".repeat(64)}`;
const D2 = `sha256:${"2".repeat(64)}`;
const base = { id: "e", v: 1, origin: "b", hlc: { wall: 1, logical: 0 }, actor: "t", at: "" };
const tagDeleted = (tag: string) =>
  ({ ...base, type: "tag.deleted", repo: REPO, tag }) as unknown as ContentEvent;
const manifestDeleted = (digest: string) =>
  ({ ...base, type: "manifest.deleted", repo: REPO, digest }) as unknown as ContentEvent;
const repoDeleted = () => ({ ...base, type: "repository.deleted", repo: REPO }) as unknown as ContentEvent;
const tags = (n: number, digest = D1): LiveTag[] =>
  Array.from({ length: n }, (_, i) => ({ tag: `t${i}`, digest }));
const WINDOW = 600_000;
const NOW = 10_000_000;

function judge(event: ContentEvent, live: LiveTag[], history: WindowEntry[] = []) {
  return judgeDeletion({ event, live, history, nowMs: NOW, windowMs: WINDOW, limits: DEFAULT_BREAKER });
}

describe("delete breaker decisions", () => {
  test("what a deletion removes of the tags shown", () => {
    const live = [...tags(3, D1), { tag: "x", digest: D2 }];
    assert.equal(tagsRemovedBy(tagDeleted("t1"), live), 1);
    assert.equal(tagsRemovedBy(tagDeleted("gone"), live), 0);
    assert.equal(tagsRemovedBy(manifestDeleted(D1), live), 3);
    assert.equal(tagsRemovedBy(repoDeleted(), live), 4);
  });

  test("a deletion removing no tag shown counts for nothing", () => {
    assert.deepEqual(judge(tagDeleted("gone"), tags(10)), { kind: "none" });
  });

  test("deletions within the limits pass and add up in the window", () => {
    const first = judge(tagDeleted("t0"), tags(10));
    assert.deepEqual(first, { kind: "pass", history: [{ atMs: NOW, removed: 1 }] });
    // 4 removed before, 6 still shown: the 5th of 10 is exactly half, not over.
    const history = [{ atMs: NOW - 1000, removed: 4 }];
    const fifth = judge(tagDeleted("t0"), tags(6), history);
    assert.equal(fifth.kind, "pass");
    assert.deepEqual(fifth.kind === "pass" && fifth.history, [...history, { atMs: NOW, removed: 1 }]);
  });

  test("the deletion taking the window over the share trips, with what the alert reports", () => {
    const history = [{ atMs: NOW - 1000, removed: 5 }];
    const d = judge(tagDeleted("t0"), tags(5), history);
    assert.deepEqual(d, { kind: "trip", removed: 6, visible: 10, history: [{ atMs: NOW, removed: 1 }] });
    assert.equal(judge(repoDeleted(), tags(4)).kind, "trip");
  });

  test("deletions older than the window are forgotten", () => {
    const history = [{ atMs: NOW - WINDOW, removed: 5 }];
    const d = judge(tagDeleted("t0"), tags(5), history);
    assert.deepEqual(d, { kind: "pass", history: [{ atMs: NOW, removed: 1 }] });
  });

  test("repositories with fewer tags than minTags are never held back", () => {
    assert.equal(judge(repoDeleted(), tags(3)).kind, "pass");
  });
});

describe("breaker resets", () => {
  const write = (at: string): Write => ({
    id: `r-${at}`,
    origin: "a",
    hlc: { wall: 1, logical: 0 },
    at,
    actor: "t",
  });
  const alert = (at: string, repo = REPO, destination = "a"): BreakerAlert => ({
    kind: "delete-breaker",
    policy: "p",
    repo,
    detail: { destination },
    at,
  });
  const where = { policy: "p", repo: REPO, region: "a" };

  test("a reset after the repository's last alert here lets it through", () => {
    assert.equal(
      resetLetsThrough(write("2026-01-02T00:00:00Z"), [alert("2026-01-01T00:00:00Z")], where),
      true,
    );
  });

  test("no reset, no alert, an older reset, or alerts elsewhere do not", () => {
    assert.equal(resetLetsThrough(undefined, [alert("2026-01-01T00:00:00Z")], where), false);
    assert.equal(resetLetsThrough(write("2026-01-02T00:00:00Z"), [], where), false);
    const alerts = [alert("2026-01-01T00:00:00Z"), alert("2026-01-03T00:00:00Z")];
    assert.equal(resetLetsThrough(write("2026-01-02T00:00:00Z"), alerts, where), false);
    const elsewhere = [alert("2026-01-01T00:00:00Z", "other/repo"), alert("2026-01-01T00:00:00Z", REPO, "b")];
    assert.equal(resetLetsThrough(write("2026-01-02T00:00:00Z"), elsewhere, where), false);
  });
});
