import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PolicyInvalidError } from "../errors.js";
import {
  coversLink,
  DEFAULT_POLICY,
  effectivePolicies,
  formatBytesPerSecond,
  isFiltered,
  isSignatureReferrer,
  linkBandwidth,
  linkEffect,
  nextRun,
  type Policy,
  parsePolicies,
  parsePolicy,
  policiesForLink,
  policyToYaml,
  SIGNATURE_ARTIFACT_TYPES,
  selectsKind,
  selectsPlatform,
  selectsRepository,
  selectsTag,
  unselectedRepositories,
} from "../policy.js";
import { forAll, type Rng } from "./prng.js";

/** A valid policy from the fewest keys, plus `extra`. */
const p = (extra: Record<string, unknown> = {}): Policy =>
  parsePolicy({ name: "p", source: "a", destination: "b", ...extra });

/** The problems parsePolicy reports for `input` (fails when it accepts it). */
function problems(input: unknown): string[] {
  try {
    parsePolicy(input);
  } catch (err) {
    assert.ok(err instanceof PolicyInvalidError, `unexpected ${String(err)}`);
    assert.equal(err.code, "POLICY_INVALID");
    const { errors } = err.detail as { errors: string[] };
    assert.equal(err.message, errors.join("; "));
    return errors;
  }
  assert.fail(`accepted ${JSON.stringify(input)}`);
}

function yamlProblems(text: string): string[] {
  try {
    parsePolicies(text);
  } catch (err) {
    assert.ok(err instanceof PolicyInvalidError, `unexpected ${String(err)}`);
    return (err.detail as { errors: string[] }).errors;
  }
  assert.fail("accepted the YAML");
}

describe("parsePolicy: normalization", () => {
  test("defaults fill everything but name, source and destination", () => {
    assert.deepEqual(p(), {
      name: "p",
      sources: ["a"],
      destinations: ["b"],
      repositories: { include: ["**"], exclude: [] },
      tags: { include: [], exclude: [] },
      platforms: [],
      signedOnly: false,
      events: ["delete", "push", "tag"],
      deletes: false,
      override: true,
      trigger: { type: "on-push" },
      bandwidthBytesPerSecond: undefined,
      holdTagsForReferrers: [],
      enabled: true,
      exclusive: false,
    });
  });

  test("the full input format", () => {
    const policy = parsePolicy({
      name: "prod-to-eu",
      sources: ["c", "a", "c"],
      destinations: ["b"],
      repositories: { include: ["prod/**"], exclude: ["prod/tmp/**"] },
      tags: {
        include: ["v*", "regex:^release-[0-9]+$", "semver:>=1.2.0 <2", "glob:semver:x"],
        exclude: ["*-rc*"],
      },
      platforms: ["linux/arm64/v8", "linux/amd64", "linux/amd64"],
      signedOnly: true,
      events: ["tag", "push", "tag"],
      deletes: "on",
      override: "off",
      trigger: { schedule: "  */15   * * * * " },
      bandwidth: "50MiB/s",
      holdTagsForReferrers: ["application/vnd.cncf.notary.signature"],
      enabled: "yes",
      exclusive: "yes",
    });
    assert.deepEqual(policy, {
      name: "prod-to-eu",
      sources: ["a", "c"],
      destinations: ["b"],
      repositories: { include: ["prod/**"], exclude: ["prod/tmp/**"] },
      tags: {
        include: [
          { kind: "glob", pattern: "v*" },
          { kind: "regex", pattern: "^release-[0-9]+$" },
          { kind: "semver", range: ">=1.2.0 <2" },
          { kind: "glob", pattern: "semver:x" },
        ],
        exclude: [{ kind: "glob", pattern: "*-rc*" }],
      },
      platforms: ["linux/amd64", "linux/arm64/v8"],
      signedOnly: true,
      events: ["push", "tag"],
      deletes: true,
      override: false,
      trigger: { type: "schedule", cron: "*/15 * * * *" },
      bandwidthBytesPerSecond: 50 * 2 ** 20,
      holdTagsForReferrers: ["application/vnd.cncf.notary.signature"],
      enabled: true,
      exclusive: true,
    });
  });

  const shorthands: [string, Record<string, unknown>, Partial<Policy>][] = [
    [
      "repositories as a string",
      { repositories: "prod/**" },
      { repositories: { include: ["prod/**"], exclude: [] } },
    ],
    [
      "repositories as a list",
      { repositories: ["a/*", "b/*"] },
      { repositories: { include: ["a/*", "b/*"], exclude: [] } },
    ],
    [
      "repositories exclude only",
      { repositories: { exclude: ["tmp/**"] } },
      { repositories: { include: ["**"], exclude: ["tmp/**"] } },
    ],
    [
      "tags as a list",
      { tags: ["v*"] },
      { tags: { include: [{ kind: "glob", pattern: "v*" }], exclude: [] } },
    ],
    [
      "tags as one string",
      { tags: "latest" },
      { tags: { include: [{ kind: "glob", pattern: "latest" }], exclude: [] } },
    ],
    ["source as a list", { source: ["b", "a"], destination: "c" }, { sources: ["a", "b"] }],
    ["sources as a string", { source: undefined, sources: "a" }, { sources: ["a"] }],
    ["'*' absorbs region names", { destination: ["b", "*"] }, { destinations: ["*"] }],
    ["events as one string", { events: "push" }, { events: ["push"] }],
    ["trigger manual", { trigger: "manual" }, { trigger: { type: "manual" } }],
    ["trigger on-push", { trigger: "on-push" }, { trigger: { type: "on-push" } }],
    [
      "six-field cron",
      { trigger: { schedule: "0 */5 * * * *" } },
      { trigger: { type: "schedule", cron: "0 */5 * * * *" } },
    ],
    [
      "null means absent",
      { tags: null, platforms: null, deletes: null },
      { tags: { include: [], exclude: [] } },
    ],
  ];
  for (const [name, input, expected] of shorthands) {
    test(name, () => {
      const policy = p(input);
      for (const [k, v] of Object.entries(expected)) assert.deepEqual(policy[k as keyof Policy], v, k);
    });
  }

  const booleans: [unknown, boolean][] = [
    [true, true],
    [false, false],
    ["on", true],
    ["off", false],
    ["yes", true],
    ["no", false],
    ["True", true],
    ["OFF", false],
  ];
  for (const [input, expected] of booleans) {
    test(`boolean ${JSON.stringify(input)} is ${expected}`, () => {
      assert.equal(p({ signedOnly: input }).signedOnly, expected);
    });
  }

  const rates: [unknown, number][] = [
    [1000, 1000],
    [1.4, 1],
    ["50MiB/s", 50 * 2 ** 20],
    ["50 MiB/s", 50 * 2 ** 20],
    ["1.5GiB/s", 1.5 * 2 ** 30],
    ["10KiB/s", 10240],
    ["10KB/s", 10_000],
    ["10kB/s", 10_000],
    ["2MB/s", 2_000_000],
    ["100Mbit/s", 12_500_000],
    ["8kbit/s", 1000],
    ["1Gbit/s", 125_000_000],
    ["800B/s", 800],
    ["800bit/s", 100],
  ];
  for (const [input, expected] of rates) {
    test(`bandwidth ${JSON.stringify(input)} is ${expected} B/s`, () => {
      assert.equal(p({ bandwidth: input }).bandwidthBytesPerSecond, expected);
      assert.equal(p({ bandwidthBytesPerSecond: input }).bandwidthBytesPerSecond, expected);
    });
  }
});

describe("parsePolicy: errors name the field", () => {
  const base = { name: "prod", source: "a", destination: "b" };
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["bad regex", { tags: ["v*", "regex:^(release"] }, /^policy "prod": tags\[1\]: invalid regex: /],
    [
      "bad regex in include",
      { tags: { include: ["regex:[z-a]"] } },
      /^policy "prod": tags\.include\[0\]: invalid regex: /,
    ],
    [
      "bad semver range",
      { tags: { exclude: ["semver:>=banana"] } },
      /^policy "prod": tags\.exclude\[0\]: invalid semver range ">=banana"/,
    ],
    ["empty semver range", { tags: ["semver:"] }, /^policy "prod": tags\[0\]: empty pattern/],
    [
      "regex over 256 chars",
      { tags: [`regex:^${"a".repeat(256)}$`] },
      /^policy "prod": tags\[0\]: pattern longer than 256/,
    ],
    [
      "glob over 256 chars",
      { repositories: ["a".repeat(257)] },
      /^policy "prod": repositories\[0\]: pattern longer than 256/,
    ],
    [
      "malformed glob",
      { repositories: { exclude: ["prod/{a"] } },
      /^policy "prod": repositories\.exclude\[0\]: invalid glob "prod\/\{a"/,
    ],
    ["empty repository include", { repositories: [] }, /^policy "prod": repositories: empty/],
    [
      "bad cron",
      { trigger: { schedule: "61 * * * *" } },
      /^policy "prod": trigger\.schedule: invalid cron "61 \* \* \* \*": /,
    ],
    [
      "cron with 4 fields",
      { trigger: { schedule: "* * * *" } },
      /^policy "prod": trigger\.schedule: invalid cron .*5 fields/,
    ],
    ["cron with 7 fields", { trigger: { schedule: "0 0 0 * * * 2030" } }, /trigger\.schedule: invalid cron/],
    ["schedule without cron", { trigger: "schedule" }, /^policy "prod": trigger: schedule needs a cron/],
    ["unknown trigger", { trigger: "hourly" }, /^policy "prod": trigger: invalid trigger "hourly"/],
    [
      "bandwidth without unit",
      { bandwidth: "50 megs" },
      /^policy "prod": bandwidth: invalid bandwidth "50 megs"/,
    ],
    ["zero bandwidth", { bandwidth: 0 }, /^policy "prod": bandwidth: invalid bandwidth 0: must be > 0/],
    ["negative bandwidth", { bandwidth: -5 }, /^policy "prod": bandwidth: .*must be > 0/],
    ["sub-byte bandwidth", { bandwidth: "1bit/s" }, /^policy "prod": bandwidth: .*less than 1 B\/s/],
    ["iB without a prefix", { bandwidth: "5iB/s" }, /^policy "prod": bandwidth: invalid bandwidth "5iB\/s"/],
    [
      "both bandwidth keys",
      { bandwidth: 1, bandwidthBytesPerSecond: 1 },
      /^policy "prod": bandwidth: give bandwidth or/,
    ],
    [
      "bad region",
      { destination: ["b", "EU_West"] },
      /^policy "prod": destination\[1\]: invalid region name "EU_West"/,
    ],
    ["region too long", { source: "a".repeat(33) }, /^policy "prod": source: invalid region name/],
    ["both source keys", { sources: ["c"] }, /^policy "prod": sources: give source or sources, not both/],
    ["empty sources", { source: undefined, sources: [] }, /^policy "prod": sources: empty/],
    ["same single region", { destination: "a" }, /^policy "prod": destinations: same as the only source/],
    [
      "unknown key",
      { destnation: "c" },
      /^policy "prod": destnation: unknown key \(did you mean "destination"\?\)/,
    ],
    ["unknown key, no suggestion", { colour: "blue" }, /^policy "prod": colour: unknown key$/],
    ["unknown key with no value", { tagz: null }, /^policy "prod": tagz: unknown key/],
    [
      "unknown repositories key",
      { repositories: { includes: ["a"] } },
      /^policy "prod": repositories\.includes: unknown key/,
    ],
    ["bad platform", { platforms: ["linux"] }, /^policy "prod": platforms\[0\]: invalid platform "linux"/],
    ["platform with upper case", { platforms: "Linux/AMD64" }, /^policy "prod": platforms: invalid platform/],
    ["not a boolean", { deletes: "maybe" }, /^policy "prod": deletes: want a boolean .*"maybe"/],
    [
      "unknown event kind",
      { events: ["push", "pull"] },
      /^policy "prod": events\[1\]: unknown event kind "pull"/,
    ],
    ["empty events", { events: [] }, /^policy "prod": events: empty/],
    [
      "bad artifact type",
      { holdTagsForReferrers: ["signature"] },
      /^policy "prod": holdTagsForReferrers\[0\]: invalid artifact type/,
    ],
    ["tag matcher not a string", { tags: [42] }, /^policy "prod": tags\[0\]: want a string, got number/],
    [
      "unknown matcher kind",
      { tags: [{ kind: "exact", pattern: "x" }] },
      /^policy "prod": tags\[0\]: unknown matcher kind "exact"/,
    ],
    [
      "matcher object with extra keys",
      { tags: [{ kind: "glob", pattern: "x", flags: "i" }] },
      /^policy "prod": tags\[0\]: want \{kind: glob/,
    ],
    ["bad name", { name: "Prod!" }, /^policy "Prod!": name: invalid name "Prod!"/],
    ["name not a string", { name: 7 }, /^policy: name: invalid name 7/],
    ["missing name", { name: undefined }, /^policy: name: required/],
    ["missing source", { source: undefined }, /^policy "prod": source: required/],
    ["missing destination", { destination: undefined }, /^policy "prod": destination: required/],
    ["source not a string", { source: 5 }, /^policy "prod": source: want a string or a list, got number/],
  ];
  for (const [name, extra, pattern] of cases) {
    test(name, () => {
      const errors = problems({ ...base, ...extra });
      assert.equal(errors.length, 1, errors.join("\n"));
      assert.match(errors[0]!, pattern);
    });
  }

  test("not an object", () => {
    assert.deepEqual(problems("name: x"), ["policy: want an object (mapping), got string"]);
    assert.deepEqual(problems([]), ["policy: want an object (mapping), got a list"]);
    assert.deepEqual(problems(null), ["policy: want an object (mapping), got null"]);
  });

  test("every problem is reported at once", () => {
    const errors = problems({
      name: "prod",
      source: "a",
      destination: "Bad",
      tags: ["regex:(", "semver:nope"],
      trigger: { schedule: "nope" },
      bandwidth: "fast",
      extra: 1,
    });
    assert.deepEqual(
      errors.map((e) => e.split(": ").slice(0, 2).join(": ")),
      [
        'policy "prod": extra',
        'policy "prod": destination',
        'policy "prod": tags[0]',
        'policy "prod": tags[1]',
        'policy "prod": trigger.schedule',
        'policy "prod": bandwidth',
      ],
    );
  });
});

describe("matching", () => {
  const repos: [string[], string[], string, boolean][] = [
    // include, exclude, repository, selected
    [["prod/**"], [], "prod/a/b", true],
    [["prod/**"], [], "prod/a", true],
    [["prod/**"], [], "production/a", false],
    [["prod/*"], [], "prod/a/b", false],
    [["prod/*"], [], "prod/a", true],
    [["prod/**"], ["prod/tmp/**"], "prod/tmp/x", false],
    [["prod/**"], ["prod/tmp/**"], "prod/app", true],
    [["**"], ["**"], "anything", false],
    [["**"], [], "a/b/c/d", true],
    [["team-{a,b}/*"], [], "team-b/api", true],
    [["team-{a,b}/*"], [], "team-c/api", false],
    [["a/*", "b/*"], ["b/secret"], "b/secret", false],
  ];
  for (const [include, exclude, repo, expected] of repos) {
    test(`repository ${repo} by +${include.join(",")} -${exclude.join(",")}: ${expected}`, () => {
      assert.equal(selectsRepository(p({ repositories: { include, exclude } }), repo), expected);
    });
  }

  const tags: [unknown, string, boolean][] = [
    // tags field, tag, selected
    [undefined, "anything", true],
    [["v*"], "v1.2.3", true],
    [["v*"], "latest", false],
    [{ include: ["v*"], exclude: ["*-rc*"] }, "v1.2.3-rc1", false],
    [{ exclude: ["latest"] }, "latest", false],
    [{ exclude: ["latest"] }, "stable", true],
    [["regex:^release-[0-9]+$"], "release-42", true],
    [["regex:^release-[0-9]+$"], "release-42a", false],
    [["regex:release"], "pre-release-x", true],
    [["semver:>=1.2.0 <2"], "1.5.0", true],
    [["semver:>=1.2.0 <2"], "v1.5.0", true],
    [["semver:>=1.2.0 <2"], "v2.0.0", false],
    [["semver:>=1.2.0 <2"], "1.1.9", false],
    [["semver:>=1.2.0 <2"], "vv1.5.0", false],
    [["semver:>=1.2.0 <2"], "V1.5.0", false],
    [["semver:>=1.2.0 <2"], "1.5", false],
    [["semver:>=1.2.0 <2"], "latest", false],
    [["semver:>=1.2.0 <2"], "1.5.0-rc.1", false],
    [["semver:>=1.5.0-rc.0 <2"], "1.5.0-rc.1", true],
    [["semver:^1"], "01.2.3", false],
    [{ include: ["semver:*"], exclude: ["semver:1.x"] }, "v1.9.0", false],
    [{ include: ["semver:*"], exclude: ["semver:1.x"] }, "v3.0.0", true],
    [[{ kind: "regex", pattern: "^a" }], "abc", true],
    [["glob:regex:x"], "regex:x", true],
  ];
  for (const [field, tag, expected] of tags) {
    test(`tag ${tag} by ${JSON.stringify(field)}: ${expected}`, () => {
      assert.equal(selectsTag(p({ tags: field }), tag), expected);
    });
  }

  type Platform = { os: string; architecture: string; variant?: string } | undefined;
  const amd64 = { os: "linux", architecture: "amd64" };
  const arm64v8 = { os: "linux", architecture: "arm64", variant: "v8" };
  const arm64 = { os: "linux", architecture: "arm64" };
  const armv7 = { os: "linux", architecture: "arm", variant: "v7" };
  const platforms: [string[], Platform, boolean][] = [
    [[], amd64, true],
    [["linux/amd64"], amd64, true],
    [["linux/amd64"], undefined, true],
    [["linux/amd64"], arm64v8, false],
    [["linux/arm64"], arm64v8, true],
    [["linux/arm64"], arm64, true],
    [["linux/arm64/v8"], arm64v8, true],
    [["linux/arm64/v8"], arm64, false],
    [["linux/arm/v6"], armv7, false],
    [["linux/arm/v6", "linux/arm/v7"], armv7, true],
    [["windows/amd64"], amd64, false],
  ];
  for (const [list, platform, expected] of platforms) {
    test(`platform ${JSON.stringify(platform)} by [${list.join(", ")}]: ${expected}`, () => {
      assert.equal(selectsPlatform(p({ platforms: list }), platform), expected);
    });
  }

  const kinds: [Record<string, unknown>, Record<string, boolean>][] = [
    [{}, { push: true, tag: true, delete: false }],
    [{ deletes: true }, { push: true, tag: true, delete: true }],
    [
      { events: ["push"], deletes: true },
      { push: true, tag: false, delete: false },
    ],
    [
      { events: ["delete"], deletes: false },
      { push: false, tag: false, delete: false },
    ],
    [
      { events: ["tag", "delete"], deletes: "on" },
      { push: false, tag: true, delete: true },
    ],
  ];
  for (const [extra, expected] of kinds) {
    test(`kinds for ${JSON.stringify(extra)}`, () => {
      const policy = p(extra);
      for (const [kind, want] of Object.entries(expected))
        assert.equal(selectsKind(policy, kind as "push" | "tag" | "delete"), want, kind);
    });
  }

  const filtered: [Record<string, unknown>, boolean][] = [
    [{}, false],
    [{ repositories: ["prod/**"], events: ["push"], deletes: true }, false],
    [{ trigger: "manual", bandwidth: 1000 }, false],
    [{ tags: ["v*"] }, true],
    [{ tags: { exclude: ["*-rc*"] } }, true],
    [{ platforms: ["linux/amd64"] }, true],
    [{ signedOnly: true }, true],
    [{ override: false }, true],
    [{ holdTagsForReferrers: ["application/vnd.cncf.notary.signature"] }, true],
  ];
  for (const [extra, expected] of filtered) {
    test(`isFiltered ${JSON.stringify(extra)}: ${expected}`, () => {
      assert.equal(isFiltered(p(extra)), expected);
    });
  }
  test("the default policy is not filtered", () => assert.equal(isFiltered(DEFAULT_POLICY), false));
});

describe("links", () => {
  const links: [Record<string, unknown>, string, string, boolean][] = [
    [{}, "a", "b", true],
    [{}, "b", "a", false],
    [{ source: "*" }, "c", "b", true],
    [{ source: "*" }, "b", "b", false],
    [{ source: "*", destination: "*" }, "x", "y", true],
    [{ source: "*", destination: "*" }, "x", "x", false],
    [{ destination: ["b", "c"] }, "a", "c", true],
    [{ destination: ["b", "c"] }, "a", "d", false],
    [{ enabled: false }, "a", "b", false],
    [{ enabled: "off", source: "*", destination: "*" }, "a", "b", false],
  ];
  for (const [extra, src, dst, expected] of links) {
    test(`coversLink ${JSON.stringify(extra)} ${src}→${dst}: ${expected}`, () => {
      assert.equal(coversLink(p(extra), src, dst), expected);
    });
  }

  const zeta = p({ name: "zeta", source: "*", destination: "b", bandwidth: "10MiB/s" });
  const alpha = p({ name: "alpha", source: "a", destination: "*", bandwidth: "50MiB/s" });
  const mid = p({ name: "mid", source: "a", destination: "b" });
  const off = p({ name: "off", source: "a", destination: "c", enabled: false, bandwidth: 1 });

  test("policiesForLink: the covering policies, sorted by name", () => {
    assert.deepEqual(policiesForLink([zeta, mid, alpha, off], "a", "b"), [alpha, mid, zeta]);
    assert.deepEqual(policiesForLink([zeta, mid, alpha, off], "a", "c"), [alpha]);
    assert.deepEqual(policiesForLink([zeta, mid, alpha, off], "c", "d"), []);
  });

  // Exclusive counterparts: only these switch the default mirror off their links (issue 11, finding 4).
  const zetaX = p({ name: "zeta", source: "*", destination: "b", exclusive: true });
  const midX = p({ name: "mid", source: "a", destination: "b", exclusive: true });
  const offX = p({ name: "off", source: "a", destination: "c", enabled: false, exclusive: true });
  const prod = p({ name: "prod", source: "a", destination: "c", repositories: "prod/**" });
  const prodX = p({ name: "prod", source: "a", destination: "c", repositories: "prod/**", exclusive: "yes" });

  const effective: [string, Policy[], string, string, Policy[]][] = [
    ["no policies at all: the default mirrors everything", [], "a", "b", [DEFAULT_POLICY]],
    ["covered by non-exclusive policies: the default mirror stays", [zeta, mid], "a", "b", [DEFAULT_POLICY]],
    [
      "the README's prod/** policy (not exclusive): the default mirror stays",
      [prod],
      "a",
      "c",
      [DEFAULT_POLICY],
    ],
    ["an exclusive prod/** policy: only it", [prodX], "a", "c", [prodX]],
    ["an exclusive policy on another link: the default here", [prodX], "a", "b", [DEFAULT_POLICY]],
    ["one exclusive among several: the covering policies only", [zeta, midX], "a", "b", [midX, zeta]],
    ["exclusive via a wildcard source", [zetaX, mid], "c", "b", [zetaX]],
    ["a link no policy names: the default", [midX], "b", "a", [DEFAULT_POLICY]],
    ["a link named only by a disabled policy: the default", [off], "a", "c", [DEFAULT_POLICY]],
    ["a link named only by a disabled exclusive policy: nothing (paused)", [offX], "a", "c", []],
    ["disabled exclusive and enabled on the link: the enabled one", [offX, alpha], "a", "c", [alpha]],
    ["a region to itself: nothing", [], "a", "a", []],
    ["a region to itself, exclusive policies: nothing", [zetaX], "b", "b", []],
  ];
  for (const [name, policies, src, dst, expected] of effective) {
    test(`effectivePolicies: ${name}`, () => {
      assert.deepEqual(effectivePolicies(policies, src, dst), expected);
    });
  }

  test("exclusive defaults to false (a stored policy from before it existed is not exclusive)", () => {
    assert.equal(p({}).exclusive, false);
    const stored = { ...parsePolicy({ name: "old", source: "a", destination: "b" }) } as Record<
      string,
      unknown
    >;
    delete stored.exclusive;
    assert.equal(parsePolicy(stored).exclusive, false);
    assert.deepEqual(effectivePolicies([parsePolicy(stored)], "a", "b"), [DEFAULT_POLICY]);
    assert.throws(() => p({ exclusive: "maybe" }), /exclusive: want a boolean/);
  });

  test("linkEffect says what stops on an exclusive link, and that the mirror stays otherwise", () => {
    assert.match(
      linkEffect([prodX], "a", "c"),
      /^a→c: replication of everything else stops \(exclusive: prod\); only prod \(prod\/\*\*\) replicates$/,
    );
    assert.match(linkEffect([prod], "a", "c"), /^a→c: the full mirror stays/);
    assert.match(linkEffect([offX], "a", "c"), /stops \(exclusive: off\); nothing replicates/);
  });

  test("unselectedRepositories: what an exclusive link leaves behind", () => {
    const repos = ["prod/api", "team/app"];
    assert.deepEqual(unselectedRepositories([prodX], "a", "c", repos), ["team/app"]);
    assert.deepEqual(unselectedRepositories([prod], "a", "c", repos), []);
  });

  const bandwidths: [Policy[], string, string, number | undefined][] = [
    [[zeta, alpha, mid], "a", "b", 10 * 2 ** 20],
    [[alpha, mid], "a", "b", 50 * 2 ** 20],
    [[mid], "a", "b", undefined],
    [[], "a", "b", undefined],
    [[off, alpha], "a", "c", 50 * 2 ** 20],
    [[zeta], "a", "c", undefined],
  ];
  for (const [policies, src, dst, expected] of bandwidths) {
    test(`linkBandwidth [${policies.map((x) => x.name).join(",")}] ${src}→${dst}: ${expected}`, () => {
      assert.equal(linkBandwidth(policies, src, dst), expected);
    });
  }
});

describe("nextRun", () => {
  const every15 = p({ trigger: { schedule: "*/15 * * * *" } });
  const runs: [string, Policy, string, string | undefined][] = [
    ["mid-interval", every15, "2024-03-01T10:07:30.000Z", "2024-03-01T10:15:00.000Z"],
    ["strictly after a run time", every15, "2024-03-01T10:15:00.000Z", "2024-03-01T10:30:00.000Z"],
    ["across midnight", every15, "2024-12-31T23:59:59.999Z", "2025-01-01T00:00:00.000Z"],
    [
      "in UTC",
      p({ trigger: { schedule: "0 3 * * *" } }),
      "2024-03-01T04:00:00.000Z",
      "2024-03-02T03:00:00.000Z",
    ],
    [
      "six fields (seconds)",
      p({ trigger: { schedule: "30 * * * * *" } }),
      "2024-03-01T10:00:31.000Z",
      "2024-03-01T10:01:30.000Z",
    ],
    ["on-push has none", p(), "2024-03-01T10:00:00.000Z", undefined],
    ["manual has none", p({ trigger: "manual" }), "2024-03-01T10:00:00.000Z", undefined],
    [
      "a disabled schedule has none",
      p({ trigger: { schedule: "* * * * *" }, enabled: false }),
      "2024-03-01T10:00:00.000Z",
      undefined,
    ],
  ];
  for (const [name, policy, after, expected] of runs) {
    test(name, () => {
      assert.equal(nextRun(policy, new Date(after))?.toISOString(), expected);
    });
  }
  test("successive runs every 15 minutes", () => {
    let t = new Date("2024-03-01T10:07:30.000Z");
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      t = nextRun(every15, t)!;
      seen.push(t.toISOString().slice(11, 16));
    }
    assert.deepEqual(seen, ["10:15", "10:30", "10:45", "11:00"]);
  });
});

describe("parsePolicies: YAML", () => {
  const one = "name: one\nsource: a\ndestination: b\n";
  const two = "name: two\nsource: b\ndestination: a\n";
  const forms: [string, string, string[]][] = [
    ["one policy", one, ["one"]],
    [
      "a list",
      `- ${one.trimEnd().replaceAll("\n", "\n  ")}\n- ${two.trimEnd().replaceAll("\n", "\n  ")}\n`,
      ["one", "two"],
    ],
    [
      "a policies key",
      `policies:\n  - {name: one, source: a, destination: b}\n  - {name: two, source: b, destination: a}\n`,
      ["one", "two"],
    ],
    ["several documents", `${one}---\n${two}`, ["one", "two"]],
    [
      "documents with a leading marker and a trailing empty one",
      `---\n${one}---\n${two}---\n`,
      ["one", "two"],
    ],
    [
      "documents mixing a list and a policy",
      `- {name: x, source: a, destination: b}\n---\n${two}`,
      ["x", "two"],
    ],
    ["an empty file", "", []],
    ["only comments", "# no policies yet\n", []],
    ["an empty policies key", "policies:\n", []],
  ];
  for (const [name, text, names] of forms) {
    test(name, () => {
      assert.deepEqual(
        parsePolicies(text).map((x) => x.name),
        names,
      );
    });
  }

  test("the example from the format description", () => {
    const [policy] = parsePolicies(`
name: prod-to-eu
source: a              # or  sources: [a, b]   ("*" allowed)
destination: b         # or  destinations: [b, c]
repositories:
  include: ["prod/**"]
  exclude: ["prod/tmp/**"]
tags:
  include: ["v*", "regex:^release-[0-9]+$", "semver:>=1.2.0 <2"]
  exclude: ["*-rc*"]
platforms: [linux/amd64]
signedOnly: true
events: [push, tag, delete]
deletes: on
override: off
trigger: {schedule: "*/15 * * * *"}
bandwidth: 50MiB/s
holdTagsForReferrers: [application/vnd.cncf.notary.signature]
enabled: true
`);
    assert.ok(policy);
    assert.equal(policy.deletes, true);
    assert.equal(policy.override, false);
    assert.equal(policy.bandwidthBytesPerSecond, 52_428_800);
    assert.deepEqual(policy.trigger, { type: "schedule", cron: "*/15 * * * *" });
    assert.equal(selectsTag(policy, "v1.5.0"), true);
    assert.equal(selectsTag(policy, "v1.5.0-rc1"), false);
    assert.equal(selectsRepository(policy, "prod/tmp/x"), false);
  });

  test("duplicate names are an error", () => {
    const errors = yamlProblems(`${one}---\n${two}---\n${one}`);
    assert.deepEqual(errors, ['policy "one": name: duplicate (also policy #1)']);
  });

  test("problems in several policies are reported together, unnamed ones by position", () => {
    const errors = yamlProblems(
      `- {name: ok, source: a, destination: b}\n- {source: a}\n- {name: bad, source: a, destination: b, bandwidth: x}\n`,
    );
    assert.equal(errors.length, 3, errors.join("\n"));
    assert.match(errors[0]!, /^policy #2: name: required$/);
    assert.match(errors[1]!, /^policy #2: destination: required$/);
    assert.match(errors[2]!, /^policy "bad": bandwidth: invalid bandwidth "x"/);
  });

  const syntax: [string, string, RegExp][] = [
    [
      "an unterminated flow list",
      "name: a\nsource: [a, b\ndestination: c\n",
      /^policy YAML: line \d+, column \d+: /,
    ],
    [
      "a duplicate key",
      "name: a\nsource: a\nsource: b\ndestination: c\n",
      /^policy YAML: line 3, column 1: .*[Uu]nique/,
    ],
    [
      "an unquoted * (an alias)",
      "name: a\nsource: *\ndestination: b\n",
      /^policy YAML: line 2, column 9: .*\(quote "\*" when you mean every region\)$/,
    ],
    ["bad indentation", "name: a\n  source: a\n destination: b\n", /^policy YAML: line \d+, column \d+: /],
  ];
  for (const [name, text, pattern] of syntax) {
    test(`syntax error: ${name}`, () => {
      const errors = yamlProblems(text);
      assert.ok(errors.length >= 1);
      assert.match(errors[0]!, pattern);
    });
  }

  const shapes: [string, string, RegExp][] = [
    ["a scalar document", "just a string\n", /^policy YAML: document 1: want a policy/],
    [
      "policies next to other keys",
      "policies: []\nname: x\n",
      /^policy YAML: document 1: unknown keys next to policies: name/,
    ],
    ["policies not a list", "policies: {name: x}\n", /^policy YAML: document 1: policies: want a list/],
    ["a list item that is not a mapping", "- name\n", /^policy #1: want an object/],
  ];
  for (const [name, text, pattern] of shapes) {
    test(`shape error: ${name}`, () => {
      assert.match(yamlProblems(text)[0]!, pattern);
    });
  }
});

/** Policies that exercise every field and every output form. */
const SAMPLES: Policy[] = [
  DEFAULT_POLICY,
  p(),
  p({
    name: "everything",
    source: ["a", "b"],
    destination: "*",
    repositories: { include: ["prod/**", "team-{a,b}/*"], exclude: ["prod/tmp/**"] },
    tags: {
      include: ["v*", "regex:^release-[0-9]+$", "semver:>=1.2.0 <2", "glob:regex:literal", "*"],
      exclude: ["*-rc*", "regex:'quoted' \"both\" # not a comment: {x}"],
    },
    platforms: ["linux/amd64", "linux/arm64/v8"],
    signedOnly: true,
    events: ["push", "tag"],
    deletes: true,
    override: false,
    trigger: { schedule: "0 */6 * * *" },
    bandwidth: "100Mbit/s",
    holdTagsForReferrers: [
      "application/vnd.cncf.notary.signature",
      "application/vnd.dev.cosign.artifact.sig.v1+json",
    ],
    enabled: false,
  }),
  p({ name: "odd-rate", bandwidth: 1234567, trigger: "manual", tags: { exclude: ["latest"] } }),
  p({ name: "long", tags: [`regex:^(${Array.from({ length: 40 }, (_, i) => `t${i} x`).join("|")})$`] }),
  p({ name: "on", source: "on", destination: "off", repositories: ["yes", "null"], tags: ["true", "1.0"] }),
];

describe("round trip and idempotence", () => {
  for (const policy of SAMPLES) {
    test(`policyToYaml round-trips ${policy.name}`, () => {
      assert.deepEqual(parsePolicies(policyToYaml(policy)), [policy]);
    });
    test(`parsePolicy is idempotent on ${policy.name}`, () => {
      assert.deepEqual(parsePolicy(policy), policy);
      assert.deepEqual(parsePolicy(parsePolicy(policy)), parsePolicy(policy));
    });
    test(`the normalized ${policy.name} survives JSON`, () => {
      assert.deepEqual(parsePolicy(JSON.parse(JSON.stringify(policy))), policy);
    });
  }

  test("several policies round-trip as YAML documents", () => {
    const text = SAMPLES.map(policyToYaml).join("---\n");
    assert.deepEqual(parsePolicies(text), SAMPLES);
  });

  test("policyToYaml reads like the input format", () => {
    const yaml = policyToYaml(p({ name: "x", bandwidth: "50MiB/s", trigger: { schedule: "*/15 * * * *" } }));
    assert.match(yaml, /^name: x$/m);
    assert.match(yaml, /^source: a$/m);
    assert.match(yaml, /^bandwidth: 50MiB\/s$/m);
    assert.match(yaml, /^trigger:\n {2}schedule: "\*\/15 \* \* \* \*"$/m);
  });

  test("DEFAULT_POLICY is frozen", () => {
    assert.ok(Object.isFrozen(DEFAULT_POLICY));
    assert.ok(Object.isFrozen(DEFAULT_POLICY.sources));
    assert.throws(() => DEFAULT_POLICY.sources.push("x"));
  });

  test("random policies round-trip and re-parse to themselves (300 cases)", () => {
    forAll("policy round trip", 300, (rng) => {
      const policy = parsePolicy(randomInput(rng));
      assert.deepEqual(parsePolicy(policy), policy);
      assert.deepEqual(parsePolicy(JSON.parse(JSON.stringify(policy))), policy);
      assert.deepEqual(parsePolicies(policyToYaml(policy)), [policy]);
    });
  });
});

/** A random valid policy input, in any of the accepted spellings. */
function randomInput(rng: Rng): Record<string, unknown> {
  const some = <T>(items: readonly T[], max = items.length) => rng.shuffle(items).slice(0, rng.int(0, max));
  const maybe = (x: unknown) => (rng.next() < 0.5 ? x : undefined);
  const regions = ["a", "b", "c", "eu-west-1", "*"];
  const src = rng.pick(regions);
  const dst = rng.pick(regions.filter((r) => r !== src));
  const matchers = [
    "v*",
    "latest",
    "regex:^v[0-9]+$",
    "semver:^1.2",
    "semver:>=2 <3 || 4.x",
    "glob:semver:x",
    "*-rc*",
  ];
  const input: Record<string, unknown> = {
    name: `p-${rng.int(0, 999)}`,
    ...(rng.next() < 0.5 ? { source: src } : { sources: [src, ...some(regions.slice(0, 3), 2)] }),
    ...(rng.next() < 0.5 ? { destination: dst } : { destinations: [dst] }),
    repositories: rng.pick([
      undefined,
      "prod/**",
      ["a/*", "b/**"],
      { include: ["x/**"], exclude: some(["x/tmp/**", "x/y"]) },
      { exclude: ["tmp/**"] },
    ]),
    tags: rng.pick([
      undefined,
      some(matchers, 3),
      { include: some(matchers, 2), exclude: some(matchers, 2) },
    ]),
    platforms: maybe(some(["linux/amd64", "linux/arm64", "linux/arm/v7", "windows/amd64"])),
    signedOnly: maybe(rng.pick([true, false, "on", "no"])),
    events: maybe(rng.pick([["push"], ["tag", "push"], "delete", ["push", "tag", "delete"]])),
    deletes: maybe(rng.pick([true, "off", "yes"])),
    override: maybe(rng.pick([false, "on"])),
    trigger: rng.pick([
      undefined,
      "on-push",
      "manual",
      { schedule: "*/5 * * * *" },
      { schedule: "0 0 * * * *" },
    ]),
    bandwidth: rng.pick([undefined, rng.int(1, 2 ** 40), "50MiB/s", "10Mbit/s", "1.25GB/s", "3KiB/s"]),
    holdTagsForReferrers: maybe(some(SIGNATURE_ARTIFACT_TYPES)),
    enabled: maybe(rng.pick([true, false, "off"])),
  };
  return Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined));
}

describe("display and signatures", () => {
  const formats: [number, string][] = [
    [800, "800 B/s"],
    [1024, "1 KiB/s"],
    [1536, "1.5 KiB/s"],
    [50 * 2 ** 20, "50 MiB/s"],
    [12_500_000, "11.92 MiB/s"],
    [3 * 2 ** 30, "3 GiB/s"],
  ];
  for (const [n, text] of formats) {
    test(`formatBytesPerSecond(${n}) is ${text}`, () => assert.equal(formatBytesPerSecond(n), text));
  }

  const referrers: [string | undefined, string, boolean][] = [
    ["application/vnd.dev.cosign.artifact.sig.v1+json", "application/vnd.oci.image.manifest.v1+json", true],
    ["application/vnd.cncf.notary.signature", "application/vnd.oci.image.manifest.v1+json", true],
    ["application/vnd.example.sbom", "application/vnd.oci.image.manifest.v1+json", false],
    [undefined, "application/vnd.cncf.notary.signature", true],
    [undefined, "application/vnd.oci.image.manifest.v1+json", false],
  ];
  for (const [artifactType, mediaType, expected] of referrers) {
    test(`isSignatureReferrer(${artifactType}, ${mediaType}): ${expected}`, () => {
      assert.equal(isSignatureReferrer(artifactType, mediaType), expected);
    });
  }
  test("SIGNATURE_ARTIFACT_TYPES holds cosign and notation", () => {
    assert.deepEqual([...SIGNATURE_ARTIFACT_TYPES].sort(), [
      "application/vnd.cncf.notary.signature",
      "application/vnd.dev.cosign.artifact.sig.v1+json",
    ]);
  });
});
