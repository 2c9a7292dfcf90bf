/**
 * The automaton regex matcher (protocol/linear-regex.ts): RegExp.test's
 * answer on picomatch's regexes for thousands of seeded random globs and
 * names, on random regexes, and on a table; polynomial on the inputs that
 * make V8 backtrack.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import picomatch from "picomatch";
import { linearRegex } from "../linear-regex.js";
import { makeRng } from "./prng.js";

const PICOMATCH = { windows: false };
const seed = Number(process.env.MERIDIAN_SEED ?? 20261204);

describe("linearRegex", () => {
  for (const [source, input, want] of [
    ["", "", true],
    ["a", "xay", true],
    ["^a$", "xay", false],
    ["^(?:a|bc)+$", "abca", true],
    ["^(?:a|bc)+$", "abcb", false],
    ["^[^.\\/]x?$", ".", false],
    ["^[a-c-]{2,3}$", "a-c", true],
    ["^[a-c-]{2,3}$", "a-cd", false],
    ["^\\d+\\.\\d+$", "1.25", true],
    ["^(?!\\.)[^/]*?$", ".a", false],
    ["^(?=.)a*$", "", false],
    ["^v\\d+(?:\\.\\d+){0,2}(?:-rc\\d*)?$", "v1.2.3-rc4", true],
    ["[]", "a", false],
    ["^(a*)*b$", "aaaa", false],
  ] as const)
    test(`/${source}/ on ${JSON.stringify(input)}: ${want}`, () => {
      assert.equal(new RegExp(source).test(input), want);
      assert.equal(linearRegex(source)!(input), want);
    });

  test("what it does not support it says so (the caller keeps the RegExp)", () => {
    for (const source of ["(a)\\1", "(?<=a)b", "(?<n>a)", "\\bword", "\\u0041", "a{2", "(?=a)*"])
      assert.equal(linearRegex(source), undefined, source);
    assert.equal(linearRegex("a", "i"), undefined);
  });

  test("picomatch's regexes: the same answers as V8 on random globs and names", () => {
    const rng = makeRng(seed);
    const parts = [
      "a",
      "b",
      "-",
      ".",
      "*",
      "?",
      "/",
      "**",
      "/**/",
      "**/",
      "/**",
      "{a,b}",
      "[ab]",
      "[!a]",
      "+(a)",
      "!(b)",
    ];
    const chars = ["a", "b", "-", ".", "/"];
    let compared = 0;
    for (let i = 0; i < 4000; i++) {
      const glob = Array.from({ length: rng.int(1, 6) }, () => rng.pick(parts)).join("");
      let re: RegExp;
      try {
        re = picomatch.makeRe(glob, PICOMATCH);
      } catch {
        continue;
      }
      const linear = linearRegex(re.source, re.flags);
      if (linear === undefined) continue;
      const matcher = picomatch(glob, PICOMATCH);
      for (let j = 0; j < 5; j++) {
        const name = Array.from({ length: rng.int(0, 8) }, () => rng.pick(chars)).join("");
        compared++;
        assert.equal(linear(name), re.test(name), `seed ${seed}: /${re.source}/ on ${JSON.stringify(name)}`);
        // policy.ts's composition equals picomatch's own matcher.
        assert.equal(
          name !== "" && (name === glob || linear(name)),
          matcher(name),
          `seed ${seed}: ${glob} on ${name}`,
        );
      }
    }
    assert.ok(compared > 10_000, `${compared} compared`);
  });

  test("random regexes: the same answers as V8", () => {
    const rng = makeRng(seed + 1);
    const atoms = [
      "a",
      "b",
      ".",
      "[ab]",
      "[^a]",
      "\\d",
      "(?:a|b)",
      "(a|bb)",
      "(?!a)",
      "(?=b)",
      "^",
      "$",
      "1",
    ];
    const quantifiers = ["", "", "*", "+", "?", "{1,2}", "*?", "{2}"];
    let compared = 0;
    for (let i = 0; i < 3000; i++) {
      const source = Array.from({ length: rng.int(1, 5) }, () => {
        const atom = rng.pick(atoms);
        return /^[\^$]|^\(\?[=!]/.test(atom) ? atom : atom + rng.pick(quantifiers);
      }).join(rng.next() < 0.1 ? "|" : "");
      let re: RegExp;
      try {
        re = new RegExp(source);
      } catch {
        continue;
      }
      const linear = linearRegex(source);
      if (linear === undefined) continue;
      for (let j = 0; j < 5; j++) {
        const input = Array.from({ length: rng.int(0, 6) }, () => rng.pick(["a", "b", "1", "-"])).join("");
        compared++;
        assert.equal(
          linear(input),
          re.test(input),
          `seed ${seed + 1}: /${source}/ on ${JSON.stringify(input)}`,
        );
      }
    }
    assert.ok(compared > 5_000, `${compared} compared`);
  });

  test("inputs built to backtrack are matched in polynomial time", () => {
    const started = process.hrtime.bigint();
    const glob = picomatch.makeRe("*a*a*a*a*a*a*a*a*b", PICOMATCH);
    assert.equal(linearRegex(glob.source)!("a".repeat(128)), false);
    const globstar = picomatch.makeRe("**/a*a*a*a*a*a*a*a*b/**", PICOMATCH);
    assert.equal(linearRegex(globstar.source)!(`${"a/".repeat(64)}${"a".repeat(120)}`), false);
    assert.equal(linearRegex("^(a+)+$")!(`${"a".repeat(128)}!`), false);
    // V8 took 5 s for the first at 48 characters (and ~forever at 128). Generous.
    assert.ok(Number(process.hrtime.bigint() - started) / 1e9 < 5);
  });
});
