import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { NameInvalidError, TagInvalidError } from "../errors.js";
import { isTag, MAX_NAME_LENGTH, parseRepository, parseTag } from "../names.js";
import { forAll } from "./prng.js";

/** The OCI Distribution Spec's repository-name grammar, written out independently. */
const SPEC_NAME = /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/;
const SPEC_TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

describe("parseRepository accepts", () => {
  const valid = [
    "a",
    "0",
    "library/ubuntu",
    "ubuntu",
    "my-org/my-app",
    "my--org/app",
    "a---b",
    "a.b",
    "a_b",
    "a__b",
    "a.b-c_d__e",
    "a/b/c/d/e/f",
    "foo123/bar456",
    "123",
    "a0/b1.c2/d3_e4/f5__g6/h7-i8",
    "x".repeat(MAX_NAME_LENGTH),
    `${"a".repeat(127)}/${"b".repeat(127)}`,
  ];
  for (const name of valid) {
    test(JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}… (${name.length})` : name), () => {
      assert.ok(SPEC_NAME.test(name), "test table is wrong: the spec accepts this");
      assert.equal(parseRepository(name), name);
    });
  }
});

describe("parseRepository rejects", () => {
  const invalid: [string, string][] = [
    ["empty", ""],
    ["uppercase", "A"],
    ["uppercase component", "library/Ubuntu"],
    ["parent directory", ".."],
    ["current directory", "."],
    ["traversal in the middle", "a/../b"],
    ["traversal at the start", "../a"],
    ["traversal at the end", "a/.."],
    ["dot component", "a/./b"],
    ["absolute path", "/a"],
    ["trailing slash", "a/"],
    ["double slash", "a//b"],
    ["only a slash", "/"],
    ["leading dot", ".a"],
    ["trailing dot", "a."],
    ["double dot separator", "a..b"],
    ["three underscores", "a___b"],
    ["leading underscore", "_a"],
    ["trailing underscore", "a_"],
    ["leading dash", "-a"],
    ["trailing dash", "a-"],
    ["mixed separators", "a._b"],
    ["dash then dot", "a-.b"],
    ["component starting with a separator", "a/-b"],
    ["backslash", "a\\b"],
    ["windows traversal", "..\\a"],
    ["colon (tag syntax)", "a:latest"],
    ["at sign (digest syntax)", "a@sha256"],
    ["space", "a b"],
    ["trailing newline", "a\n"],
    ["NUL byte", "a\u0000b"],
    ["percent-encoded slash", "a%2fb"],
    ["non-ASCII letter", "caf\u00e9"],
    ["fullwidth letter", "\uff41"],
    ["too long by one", "x".repeat(MAX_NAME_LENGTH + 1)],
    ["much too long", `${"a/".repeat(500)}a`],
  ];
  for (const [name, value] of invalid) {
    test(name, () => {
      assert.throws(() => parseRepository(value), NameInvalidError);
    });
  }
  test("the length limit is 255", () => {
    assert.equal(MAX_NAME_LENGTH, 255);
  });
  test("error messages are bounded for huge input", () => {
    try {
      parseRepository("A".repeat(1_000_000));
      assert.fail("accepted");
    } catch (err) {
      assert.ok(err instanceof NameInvalidError);
      assert.ok(err.message.length < 400, `message is ${err.message.length} chars`);
    }
  });
  test("a long adversarial name is rejected quickly (no regex backtracking blow-up)", () => {
    const start = performance.now();
    assert.throws(() => parseRepository(`${"a-".repeat(120)}!`), NameInvalidError);
    assert.throws(() => parseRepository(`${"a".repeat(250)}_`), NameInvalidError);
    assert.ok(performance.now() - start < 200);
  });
});

describe("non-string input (from untrusted JSON) is rejected, not coerced", () => {
  const values: unknown[] = [undefined, null, 1, 123, true, ["a"], { toString: () => "a" }];
  for (const value of values) {
    test(`${String(JSON.stringify(value))}`, () => {
      assert.throws(() => parseRepository(value as string), NameInvalidError);
      assert.throws(() => parseTag(value as string), TagInvalidError);
      assert.equal(isTag(value as string), false);
    });
  }
});

describe("parseRepository agrees with the spec grammar on random strings", () => {
  const alphabet = ["a", "b", "z", "0", "9", ".", "_", "-", "/", "A", ":", "@", " ", "\\"];
  test("1000 random names", () => {
    forAll("names match spec grammar", 1000, (rng) => {
      const length = rng.int(1, 24);
      let name = "";
      for (let i = 0; i < length; i++)
        name += rng.next() < 0.6 ? rng.pick(["a", "b", "0"]) : rng.pick(alphabet);
      const expected = SPEC_NAME.test(name);
      let accepted: boolean;
      try {
        parseRepository(name);
        accepted = true;
      } catch (err) {
        assert.ok(err instanceof NameInvalidError);
        accepted = false;
      }
      assert.equal(accepted, expected, `name ${JSON.stringify(name)}`);
      // Whatever is accepted can never climb out of a directory.
      if (accepted) {
        assert.ok(!name.split("/").some((c) => c === ".." || c === "." || c === ""));
        assert.ok(!name.startsWith("/"));
      }
    });
  });
});

describe("parseTag", () => {
  const valid = [
    "latest",
    "v1",
    "v1.2.3",
    "1.0.0-rc.1",
    "_private",
    "UPPER",
    "MiXeD_case-1.x",
    "0",
    "a".repeat(128),
    `_${"-".repeat(127)}`,
    "sha256-abc.sig",
  ];
  for (const tag of valid) {
    test(`accepts ${JSON.stringify(tag.length > 30 ? `${tag.slice(0, 30)}… (${tag.length})` : tag)}`, () => {
      assert.ok(SPEC_TAG.test(tag), "test table is wrong");
      assert.equal(parseTag(tag), tag);
      assert.equal(isTag(tag), true);
    });
  }
  const invalid: [string, string][] = [
    ["empty", ""],
    ["too long (129)", "a".repeat(129)],
    ["leading dot", ".hidden"],
    ["leading dash", "-x"],
    ["dot dot", ".."],
    ["slash", "a/b"],
    ["colon", "a:b"],
    ["at sign", "a@b"],
    ["plus (semver build)", "1.0+build"],
    ["space", "a b"],
    ["trailing newline", "latest\n"],
    ["non-ASCII", "v\u00e9"],
    ["a digest", "sha256:abc"],
  ];
  for (const [name, tag] of invalid) {
    test(`rejects ${name}`, () => {
      assert.throws(() => parseTag(tag), TagInvalidError);
      assert.equal(isTag(tag), false);
    });
  }
  test("agrees with the spec grammar on 1000 random strings", () => {
    const alphabet = ["a", "Z", "0", "_", ".", "-", "/", ":", "+", " "];
    forAll("tags match spec grammar", 1000, (rng) => {
      const length = rng.pick([0, 1, 2, 5, 127, 128, 129, 130]);
      let tag = "";
      for (let i = 0; i < length; i++) tag += rng.next() < 0.8 ? "a" : rng.pick(alphabet);
      assert.equal(isTag(tag), SPEC_TAG.test(tag), `tag ${JSON.stringify(tag)}`);
    });
  });
});
