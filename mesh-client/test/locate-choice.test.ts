/**
 * The pure parts of mesh-client/locate.ts: which digest a tag's region
 * states are relative to, and how a reference is read.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseReference, tagDigest } from "../../mesh-client/locate.js";
import type { Mesh } from "../../protocol/mesh.js";

const mesh = {
  regions: ["a", "b", "c"].map((name) => ({ name, registry: "", nats: "", grpc: "" })),
  insecure: true,
} as unknown as Mesh;
const D1 = `sha256:${"1".repeat(64)}`;
const D2 = `sha256:${"2".repeat(64)}`;
const serves = (digest: string | null, at = "2026-01-01T00:00:00.000Z", home?: string) => ({
  present: digest !== null,
  digest,
  at,
  ...(home === undefined ? {} : { home }),
});

describe("tagDigest", () => {
  test("the digest most regions serve", () => {
    assert.equal(tagDigest(mesh, [serves(D1), serves(D2), serves(D2)]), D2);
  });
  test("a tie: the most recently written", () => {
    assert.equal(
      tagDigest(mesh, [serves(D1, "2026-01-02T00:00:00.000Z"), serves(D2), new Error("down")]),
      D1,
    );
  });
  test("the home region's digest, whatever the others serve", () => {
    assert.equal(
      tagDigest(mesh, [serves(D1, undefined, "c"), serves(D1, undefined, "c"), serves(D2, undefined, "c")]),
      D2,
    );
  });
  test("a home that does not answer, or serves nothing: the majority", () => {
    assert.equal(
      tagDigest(mesh, [serves(D1, undefined, "c"), serves(D1, undefined, "c"), new Error("down")]),
      D1,
    );
    assert.equal(
      tagDigest(mesh, [serves(D1, undefined, "c"), serves(D1, undefined, "c"), serves(null, undefined, "c")]),
      D1,
    );
  });
  test("nobody serves it: none", () => {
    assert.equal(tagDigest(mesh, [serves(null), new Error("down"), serves(null)]), undefined);
  });
});

describe("parseReference", () => {
  test("a tag or a digest", () => {
    assert.deepEqual(parseReference("team/app:v1"), { repository: "team/app", tag: "v1" });
    assert.deepEqual(parseReference(`team/app@${D1}`), { repository: "team/app", digest: D1 });
  });
  test("malformed: the protocol's domain errors (400s)", () => {
    for (const [bad, code] of [
      ["team/app", "NAME_INVALID"],
      ["Team/app:v1", "NAME_INVALID"],
      [":v1", "NAME_INVALID"],
      ["team/app:", "TAG_INVALID"],
      ["team/app:-v1", "TAG_INVALID"],
      ["team/app@sha256:short", "DIGEST_INVALID"],
      ["team/app@", "DIGEST_INVALID"],
    ] as const)
      assert.throws(
        () => parseReference(bad),
        (err: { code?: string }) => err.code === code,
        bad,
      );
  });
});
