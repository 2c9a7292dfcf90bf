/**
 * The decisions of `meridian import` (protocol/import-plan.ts), by tables:
 * flags read into a filter (every problem listed), repositories and tags
 * selected (an exclude wins; the policy forms glob, regex and semver),
 * literal --repos, destinations under a prefix, names and media types
 * refused with the reason, failures told apart as skips or failures, and
 * the checkpoint read back, refused when malformed or written for another
 * import, and done only at the same digest.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  checkpointMismatch,
  classifyFailure,
  destinationRepo,
  emptyCheckpoint,
  isDone,
  literalRepos,
  mediaTypeProblem,
  nameProblem,
  parseCheckpoint,
  parseImportFilter,
  selectsImportTag,
  selectsRepo,
} from "../import-plan.js";

const D1 = `sha256:${"1".repeat(64)}`;
const D2 = `sha256:${"2".repeat(64)}`;

describe("import filter", () => {
  test("every problem of the flags is listed", () => {
    const { problems } = parseImportFilter(
      ["a{", "ok/*"],
      ["regex:(", "semver:not a range", "!"],
      "Bad Prefix",
    );
    assert.equal(problems.length, 5, problems.join("\n"));
    assert.match(problems.join("\n"), /--repos a\{: invalid glob/);
    assert.match(problems.join("\n"), /--tags regex:\(: invalid regex/);
    assert.match(problems.join("\n"), /--tags semver:not a range: invalid semver range/);
    assert.match(problems.join("\n"), /--tags !: empty pattern/);
    assert.match(problems.join("\n"), /--to-prefix: "Bad Prefix" is not a repository name prefix/);
  });

  test("repositories by glob; none given selects all", () => {
    const all = parseImportFilter([], [], undefined).filter;
    assert.ok(selectsRepo(all, "any/thing"));
    const some = parseImportFilter(["team/**", "solo"], [], undefined).filter;
    for (const [repo, want] of [
      ["team/a", true],
      ["team/a/b", true],
      ["solo", true],
      ["solo/x", false],
      ["other/team", false],
    ] as const)
      assert.equal(selectsRepo(some, repo), want, repo);
  });

  test("tags: glob, regex, semver, and an exclude that wins", () => {
    const f = parseImportFilter(
      [],
      ["v*", "regex:^rc-[0-9]+$", "semver:>=2.0.0 <3", "!v1.1", "!glob:*-dirty"],
      undefined,
    ).filter;
    for (const [tag, want] of [
      ["v1.0", true],
      ["v1.1", false],
      ["v1.2-dirty", false],
      ["rc-12", true],
      ["rc-x", false],
      ["2.5.0", true],
      ["3.0.0", false],
      ["latest", false],
    ] as const)
      assert.equal(selectsImportTag(f, tag), want, tag);
    const onlyExclude = parseImportFilter([], ["!dev"], undefined).filter;
    assert.ok(selectsImportTag(onlyExclude, "latest"));
    assert.ok(!selectsImportTag(onlyExclude, "dev"));
  });

  test("literal --repos skip the catalog; any glob character needs it", () => {
    assert.deepEqual(literalRepos(parseImportFilter(["a/b", "c"], [], undefined).filter), ["a/b", "c"]);
    assert.equal(literalRepos(parseImportFilter(["a/b", "c*"], [], undefined).filter), undefined);
    assert.equal(literalRepos(parseImportFilter([], [], undefined).filter), undefined);
  });

  test("destinations under a prefix (trailing slashes dropped)", () => {
    assert.equal(destinationRepo(parseImportFilter([], [], undefined).filter, "a/b"), "a/b");
    assert.equal(destinationRepo(parseImportFilter([], [], "mirror/hub/").filter, "a/b"), "mirror/hub/a/b");
  });
});

describe("what cannot be carried", () => {
  test("names and tags Meridian refuses", () => {
    assert.equal(nameProblem("a/b", "v1"), undefined);
    assert.match(nameProblem("A/b", "v1")!, /name invalid in Meridian: A\/b/);
    assert.match(nameProblem(`${"a".repeat(256)}`, "v1")!, /name invalid/);
    assert.match(nameProblem("a", ".hidden")!, /tag invalid in Meridian/);
  });

  test("media types: schema 1 and unknown types are skipped with the reason", () => {
    for (const t of [
      "application/vnd.oci.image.manifest.v1+json",
      "application/vnd.oci.image.index.v1+json",
      "application/vnd.docker.distribution.manifest.v2+json",
      "application/vnd.docker.distribution.manifest.list.v2+json",
    ])
      assert.equal(mediaTypeProblem(t), undefined, t);
    assert.match(
      mediaTypeProblem("application/vnd.docker.distribution.manifest.v1+prettyjws")!,
      /^schema1 manifest/,
    );
    assert.match(
      mediaTypeProblem("application/vnd.docker.distribution.manifest.v1+json")!,
      /^schema1 manifest/,
    );
    assert.equal(
      mediaTypeProblem("application/vnd.oci.artifact.manifest.v1+json"),
      "manifest media type unsupported: application/vnd.oci.artifact.manifest.v1+json",
    );
    assert.equal(mediaTypeProblem(""), "manifest media type unsupported: (none)");
  });

  test("failures: content and rights are skips, transport and servers failures", () => {
    const cases: Array<[Parameters<typeof classifyFailure>[0], "skipped" | "failed", RegExp]> = [
      [
        { side: "source", ociCode: "BLOB_UNKNOWN", status: 404, message: "x" },
        "skipped",
        /^blob unknown upstream$/,
      ],
      [
        { side: "source", ociCode: "MANIFEST_UNKNOWN", status: 404, message: "x" },
        "skipped",
        /^manifest unknown upstream/,
      ],
      [{ side: "source", ociCode: "DENIED", status: 403, message: "no" }, "skipped", /^denied upstream: no/],
      [{ side: "source", ociCode: "TIMEOUT", status: 0, message: "slow" }, "failed", /^upstream: slow/],
      [{ side: "source", ociCode: "UNKNOWN", status: 503, message: "down" }, "failed", /^upstream: down/],
      [
        { side: "meridian", ociCode: "DENIED", status: 403, message: "quota exceeded: project p" },
        "skipped",
        /^quota exceeded: /,
      ],
      [
        { side: "meridian", ociCode: "DENIED", status: 403, message: "no push" },
        "skipped",
        /^denied by Meridian: no push/,
      ],
      [
        { side: "meridian", ociCode: "NAME_INVALID", status: 400, message: "bad" },
        "skipped",
        /^name invalid in Meridian/,
      ],
      [
        { side: "meridian", ociCode: "MANIFEST_INVALID", status: 400, message: "bad" },
        "skipped",
        /^refused by Meridian \(MANIFEST_INVALID\)/,
      ],
      [
        { side: "meridian", ociCode: "CONNECT", status: 0, message: "refused" },
        "failed",
        /^Meridian: refused/,
      ],
      [
        { side: "meridian", ociCode: "DIGEST_MISMATCH", status: 200, message: "sent" },
        "failed",
        /^digest mismatch: sent/,
      ],
      [
        { side: "source", ociCode: "DIGEST_MISMATCH", status: 200, message: "sent" },
        "failed",
        /^digest mismatch: sent/,
      ],
    ];
    for (const [f, outcome, reason] of cases) {
      const c = classifyFailure(f);
      assert.equal(c.outcome, outcome, JSON.stringify(f));
      assert.match(c.reason, reason, JSON.stringify(f));
    }
  });
});

describe("checkpoint", () => {
  const of = { endpoint: "onprem", url: "http://127.0.0.1:5000", region: "a", prefix: "" };

  test("read back; done only at the same digest", () => {
    const c = emptyCheckpoint(of);
    c.done["a/b:v1"] = D1;
    const back = parseCheckpoint(JSON.stringify(c));
    assert.deepEqual(back, c);
    assert.ok(isDone(back, "a/b", "v1", D1));
    assert.ok(!isDone(back, "a/b", "v1", D2), "moved upstream: copy again");
    assert.ok(!isDone(back, "a/b", "v2", D1));
  });

  test("malformed files are refused", () => {
    for (const text of [
      "[]",
      "null",
      JSON.stringify({ ...emptyCheckpoint(of), version: 2 }),
      JSON.stringify({ ...emptyCheckpoint(of), done: { "a:b": 1 } }),
      JSON.stringify({ ...emptyCheckpoint(of), done: null }),
      JSON.stringify({ version: 1, done: {} }),
    ])
      assert.throws(() => parseCheckpoint(text), /not a meridian import checkpoint/, text);
    assert.throws(() => parseCheckpoint("{"), SyntaxError);
  });

  test("a checkpoint of another import does not fit", () => {
    const c = emptyCheckpoint(of);
    assert.equal(checkpointMismatch(c, of), undefined);
    assert.match(checkpointMismatch(c, { ...of, region: "b" })!, /written for region "a", not "b"/);
    assert.match(checkpointMismatch(c, { ...of, prefix: "m" })!, /prefix/);
    assert.match(checkpointMismatch(c, { ...of, url: "http://x" })!, /url/);
  });
});
