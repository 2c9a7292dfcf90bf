/**
 * The anti-entropy planner (replication/plan.ts) as a table: a policy and two
 * regions' registers in, the actions out. Pure: no processes here.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Digest, digestOf } from "../../protocol/digest.js";
import { parsePolicy } from "../../protocol/policy.js";
import type { ManifestRecord, RepoState, Write } from "../../protocol/registers.js";
import { type Action, breakerTrips, DEFAULT_BREAKER, planRepository } from "../plan.js";

const REPO = "team/app";
const CONFIG = digestOf("config");
const LAYER = digestOf("layer");
const M1 = digestOf("m1");
const M2 = digestOf("m2");
const AMD = digestOf("amd");
const ARM = digestOf("arm");
const INDEX = digestOf("index");
const SIG = digestOf("sig");
const SBOM = digestOf("sbom");

const w = (wall: number, origin = "a", id = `${origin}-${wall}`): Write => ({
  id,
  origin,
  hlc: { wall, logical: 0 },
  at: new Date(wall).toISOString(),
  actor: "t",
});
const image: ManifestRecord = {
  mediaType: "application/vnd.oci.image.manifest.v1+json",
  size: 100,
  blobs: [CONFIG, LAYER],
  manifests: [],
};
const referrer = (subject: Digest, artifactType: string): ManifestRecord => ({
  ...image,
  subject,
  artifactType,
});
const index: ManifestRecord = {
  mediaType: "application/vnd.oci.image.index.v1+json",
  size: 200,
  blobs: [],
  manifests: [AMD, ARM],
  platforms: { [AMD]: "linux/amd64", [ARM]: "linux/arm64/v8" },
};

function state(parts: {
  manifests?: Array<[Digest, ManifestRecord | null, boolean, Write]>;
  tags?: Array<[string, Digest | null, Write]>;
  blobs?: Array<[Digest, number, boolean, Write]>;
  deleted?: Write;
}): RepoState {
  return {
    repo: REPO,
    manifests: (parts.manifests ?? []).map(([digest, record, live, wr]) => ({
      digest,
      register: { record, live, w: wr },
    })),
    tags: (parts.tags ?? []).map(([tag, digest, wr]) => ({
      tag,
      record: { digest, hlc: wr.hlc, origin: wr.origin, eventId: wr.id, seq: 1, at: wr.at, actor: wr.actor },
    })),
    blobs: (parts.blobs ?? []).map(([digest, size, live, wr]) => ({
      digest,
      register: { size, live, w: wr },
    })),
    deleted: parts.deleted,
  };
}
const EMPTY = state({});
const policy = (extra: Record<string, unknown> = {}) =>
  parsePolicy({ name: "p", source: "a", destination: "b", ...extra });
const kinds = (actions: Action[]) =>
  actions.map((a) => `${a.kind}:${"tag" in a ? a.tag : "digest" in a ? a.digest.slice(7, 11) : ""}`);
const short = (d: Digest) => d.slice(7, 11);

const SOURCE = state({
  manifests: [
    [M1, image, true, w(10)],
    [M2, { ...image, blobs: [CONFIG] }, true, w(11)],
  ],
  tags: [
    ["v1", M1, w(20)],
    ["dev", M2, w(21)],
  ],
  blobs: [
    [CONFIG, 5, true, w(1)],
    [LAYER, 7, true, w(2)],
  ],
});

describe("planRepository", () => {
  test("unfiltered: every manifest, blob link and tag the destination lacks, content first", () => {
    const plan = planRepository(policy(), SOURCE, EMPTY, "a");
    assert.deepEqual(kinds(plan.actions), [
      `copy-manifest:${short(M1)}`,
      `copy-manifest:${short(M2)}`,
      `link-blob:${short(CONFIG)}`,
      `link-blob:${short(LAYER)}`,
      "set-tag:v1",
      "set-tag:dev",
    ]);
  });

  test("nothing when the destination holds the same writes (or later ones)", () => {
    assert.deepEqual(planRepository(policy(), SOURCE, SOURCE, "a").actions, []);
    const newer = state({ manifests: [[M1, image, true, w(99, "b")]] });
    assert.ok(
      !kinds(planRepository(policy(), SOURCE, newer, "a").actions).includes(`copy-manifest:${short(M1)}`),
    );
  });

  test("a tag filter copies only what selected tags point at", () => {
    const plan = planRepository(policy({ tags: ["v*"] }), SOURCE, EMPTY, "a");
    assert.deepEqual(kinds(plan.actions), [`copy-manifest:${short(M1)}`, "set-tag:v1"]);
  });

  test("only the source's own writes are planned; content they need comes whatever its origin", () => {
    const mixed = state({
      manifests: [
        [M1, image, true, w(10, "c")],
        [M2, image, true, w(11, "c")],
      ],
      tags: [
        ["v1", M1, w(20, "a")],
        ["v2", M2, w(21, "c")],
      ],
    });
    assert.deepEqual(kinds(planRepository(policy({ tags: ["v*"] }), mixed, EMPTY, "a").actions), [
      `copy-manifest:${short(M1)}`,
      "set-tag:v1",
    ]);
    assert.deepEqual(kinds(planRepository(policy(), mixed, EMPTY, "a").actions), [
      `copy-manifest:${short(M1)}`,
      "set-tag:v1",
    ]);
  });

  test("a destination rebuilt empty gets its own writes back from a source that copied them", () => {
    // b pushed v2 (and copied a's v1); b lost everything; a holds both.
    const held = state({
      manifests: [
        [M1, image, true, w(10, "a")],
        [M2, image, true, w(11, "b")],
      ],
      tags: [
        ["v1", M1, w(20, "a")],
        ["v2", M2, w(21, "b")],
        ["v3", M2, w(22, "c")],
      ],
    });
    assert.deepEqual(kinds(planRepository(policy(), held, EMPTY, "a", "b").actions), [
      `copy-manifest:${short(M1)}`,
      `copy-manifest:${short(M2)}`,
      "set-tag:v1",
      "set-tag:v2",
    ]);
    // Once b holds its own writes again, nothing more is planned.
    const restored = state({
      manifests: [
        [M1, image, true, w(10, "a")],
        [M2, image, true, w(11, "b")],
      ],
      tags: [
        ["v1", M1, w(20, "a")],
        ["v2", M2, w(21, "b")],
      ],
    });
    assert.deepEqual(kinds(planRepository(policy(), held, restored, "a", "b").actions), []);
  });

  test("signed-only: unsigned images stay; signatures travel with their subject", () => {
    const source = state({
      manifests: [
        [M1, image, true, w(10)],
        [M2, image, true, w(11)],
        [SIG, referrer(M2, "application/vnd.dev.cosign.artifact.sig.v1+json"), true, w(12)],
      ],
      tags: [
        ["v1", M1, w(20)],
        ["v2", M2, w(21)],
      ],
    });
    assert.deepEqual(kinds(planRepository(policy({ signedOnly: true }), source, EMPTY, "a").actions), [
      `copy-manifest:${short(M2)}`,
      `copy-manifest:${short(SIG)}`,
      "set-tag:v2",
    ]);
  });

  test("a platform filter copies the index and the selected children only", () => {
    const source = state({
      manifests: [
        [AMD, image, true, w(10)],
        [ARM, image, true, w(11)],
        [INDEX, index, true, w(12)],
      ],
      tags: [["v1", INDEX, w(20)]],
    });
    assert.deepEqual(
      kinds(planRepository(policy({ platforms: ["linux/arm64"] }), source, EMPTY, "a").actions),
      [`copy-manifest:${short(ARM)}`, `copy-manifest:${short(INDEX)}`, "set-tag:v1"],
    );
  });

  test("a referrer hold keeps the tag back until the artifact exists, then lets it move", () => {
    const hold = policy({ holdTagsForReferrers: ["application/vnd.example.sbom"] });
    const without = state({ manifests: [[M1, image, true, w(10)]], tags: [["v1", M1, w(20)]] });
    const held = planRepository(hold, without, EMPTY, "a").actions;
    assert.deepEqual(kinds(held), [`copy-manifest:${short(M1)}`, "hold-tag:v1"]);
    assert.deepEqual((held[1] as { missing: string[] }).missing, ["application/vnd.example.sbom"]);
    const withSbom = state({
      manifests: [
        [M1, image, true, w(10)],
        [SBOM, referrer(M1, "application/vnd.example.sbom"), true, w(11)],
      ],
      tags: [["v1", M1, w(20)]],
    });
    assert.deepEqual(kinds(planRepository(hold, withSbom, EMPTY, "a").actions), [
      `copy-manifest:${short(M1)}`,
      `copy-manifest:${short(SBOM)}`,
      "set-tag:v1",
    ]);
  });

  test("override off keeps a tag the destination shows pointing elsewhere", () => {
    const destination = state({ manifests: [[M2, image, true, w(5, "b")]], tags: [["v1", M2, w(6, "b")]] });
    const actions = planRepository(policy({ override: false }), SOURCE, destination, "a").actions;
    assert.ok(kinds(actions).includes("keep-tag:v1"));
    assert.ok(!kinds(actions).includes("set-tag:v1"));
  });

  describe("deletions", () => {
    const destination = state({
      manifests: [
        [M1, image, true, w(10)],
        [M2, image, true, w(11)],
      ],
      tags: [
        ["v1", M1, w(20)],
        ["v2", M1, w(21)],
        ["dev", M2, w(22)],
      ],
    });
    const source = state({
      manifests: [
        [M1, image, false, w(40)],
        [M2, image, true, w(11)],
      ],
      tags: [
        ["v1", M1, w(20)],
        ["v2", null, w(30)],
        ["dev", M2, w(22)],
      ],
    });

    test("are left alone without deletes", () => {
      assert.deepEqual(planRepository(policy(), source, destination, "a").actions, []);
    });

    test("travel with deletes, counted for the breaker (tags removed or hidden)", () => {
      const plan = planRepository(policy({ deletes: true }), source, destination, "a");
      assert.deepEqual(kinds(plan.actions), ["delete-tag:v2", `delete-manifest:${short(M1)}`]);
      assert.equal(plan.visibleTags, 3);
      assert.equal(plan.tagsRemoved, 2, "v2 deleted, v1 hidden with its manifest");
    });

    test("a repository deletion comes first and counts every older tag", () => {
      const gone = state({ deleted: w(50) });
      const plan = planRepository(policy({ deletes: true }), gone, destination, "a");
      assert.deepEqual(kinds(plan.actions), ["delete-repository:"]);
      assert.equal(plan.tagsRemoved, 3);
    });
  });
});

describe("breakerTrips", () => {
  const table: Array<[number, number, boolean]> = [
    [0, 10, false],
    [5, 10, false],
    [6, 10, true],
    [3, 3, false], // fewer than minTags: never held
    [4, 4, true],
  ];
  for (const [removed, visible, trips] of table) {
    test(`${removed} of ${visible} tags`, () =>
      assert.equal(breakerTrips(removed, visible, DEFAULT_BREAKER), trips));
  }
});

describe("deep and shared index chains (issue 10, finding 4)", () => {
  test("a chain of 50,000 nested indexes is planned, children first, without overflowing the stack", () => {
    const depth = 50_000;
    const digests = Array.from({ length: depth + 1 }, (_, i) => digestOf(`chain-${i}`));
    const manifests: Array<[Digest, ManifestRecord | null, boolean, Write]> = digests.map((d, i) => [
      d,
      i === 0 ? image : { ...index, manifests: [digests[i - 1]!], platforms: undefined },
      true,
      w(1000 + i),
    ]);
    // The top of the chain first: its walk goes all the way down.
    manifests.reverse();
    const policy = parsePolicy({ name: "all", source: "a", destination: "b" });
    const plan = planRepository(policy, state({ manifests }), state({}), "a", "b");
    const copies = plan.actions
      .filter((a) => a.kind === "copy-manifest")
      .map((a) => (a as { digest: string }).digest);
    assert.equal(copies.length, depth + 1);
    assert.deepEqual(copies.slice(0, 3), digests.slice(0, 3));
  });

  test("indexes sharing children plan each manifest once", () => {
    // Two indexes per level, each listing both of the level below: 2^31 paths to the images.
    const levels: Digest[][] = [[AMD, ARM]];
    const manifests: Array<[Digest, ManifestRecord | null, boolean, Write]> = [
      [AMD, image, true, w(1)],
      [ARM, image, true, w(2)],
    ];
    for (let i = 1; i <= 30; i++) {
      const below = levels[i - 1]!;
      const level = [digestOf(`l${i}a`), digestOf(`l${i}b`)];
      for (const d of level)
        manifests.push([d, { ...index, manifests: below, platforms: undefined }, true, w(10 + i)]);
      levels.push(level);
    }
    const policy = parsePolicy({ name: "all", source: "a", destination: "b" });
    const plan = planRepository(policy, state({ manifests }), state({}), "a", "b");
    const copies = plan.actions
      .filter((a) => a.kind === "copy-manifest")
      .map((a) => (a as { digest: string }).digest);
    assert.equal(copies.length, manifests.length);
    assert.equal(new Set(copies).size, copies.length);
    // Children before the indexes listing them.
    for (let i = 1; i < levels.length; i++)
      for (const d of levels[i]!)
        for (const child of levels[i - 1]!) assert.ok(copies.indexOf(child) < copies.indexOf(d));
  });
});
