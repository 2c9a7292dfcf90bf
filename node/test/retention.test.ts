/**
 * Retention rules against a real two-region mesh with authentication
 * (`meridian up --regions a,b --auth`), through bin/meridian and the admin
 * API: rules set and refused, the plan table (keep last N, tag glob, semver
 * range, untagged expiry, pulled recently — the pull made in region b,
 * recorded coarsely and replicated to the deciding region a), a plan that
 * changes nothing, a run in the non-deciding region that deletes nothing, a
 * run that deletes exactly the plan, its deletions replicated to b, and an
 * undelete that brings a retention deletion back. Non-admins are refused.
 *
 * One mesh for the file; the steps run in order. Nodes record pulls every
 * second here (MERIDIAN_PULL_FLUSH_SECONDS), and the untagged rule expires
 * after UNTAGGED_S seconds, so the test waits that long once.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { sleep, waitWritable } from "../../testing/faults.js";
import { cleanupStack, eventually, runCli } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_CONFIG, OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
let adminAuth: string;
const UNTAGGED_S = 30;
const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const registry = (region: string) => mesh.regions.get(region)!.registry;
const client = (region: string) => new OciClient(registry(region), adminAuth);

async function admin(
  region: string,
  method: string,
  path: string,
  json?: unknown,
  /** "" sends no credentials. */
  authorization = adminAuth,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers: Record<string, string> = {};
  if (authorization !== "") headers.authorization = authorization;
  if (json !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${registry(region)}/admin/v1${path}`, {
    method,
    headers,
    ...(json === undefined ? {} : { body: JSON.stringify(json) }),
  });
  return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, unknown> };
}

const meridian = (args: string[], timeoutMs?: number) => runCli([...args, "--data", mesh.dataDir], timeoutMs);
async function succeeds(args: string[]): Promise<string> {
  const r = await meridian(args);
  assert.equal(r.code, 0, `meridian ${args.join(" ")}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** Is the manifest there in `region` (its own view only)? */
async function present(region: string, repo: string, digest: string): Promise<boolean> {
  const res = await client(region).fetch(`/v2/${repo}/manifests/${digest}`, {
    method: "HEAD",
    headers: { accept: OCI_MANIFEST, "cache-control": "only-if-cached" },
  });
  return res.status === 200;
}

/** Push an image to region a by tag, or untagged (by digest) with `tag` undefined; its digest. */
async function image(repo: string, tag?: string): Promise<string> {
  const c = client("a");
  const config = await c.pushBlob(repo, Buffer.from(JSON.stringify({ nonce: Math.random() })), OCI_CONFIG);
  const layer = await c.pushBlob(repo, Buffer.from(`layer ${Math.random()}`));
  const bytes = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] }),
  );
  await c.pushManifest(repo, tag ?? sha256(bytes), bytes.toString());
  return sha256(bytes);
}

interface RepoPlan {
  repo: string;
  decidedBy: string;
  keep: Array<{ digest: string; reasons: string[] }>;
  delete: Array<{ digest: string; tags: string[] }>;
}
async function plan(region: string): Promise<Map<string, RepoPlan>> {
  const r = await admin(region, "GET", "/retention/plan");
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return new Map((r.body.repositories as RepoPlan[]).map((p) => [p.repo, p]));
}
const deletions = (p: Map<string, RepoPlan>) =>
  [...p.values()].flatMap((r) => r.delete.map((d) => `${r.repo}@${d.digest}`)).sort();

/** Each image pushed: its repository and digest, by name (its tag, or old/fresh when untagged). */
const img: Record<string, string> = {};
const repoOf: Record<string, string> = {};
async function pushed(name: string, repo: string, tag?: string): Promise<void> {
  img[name] = await image(repo, tag);
  repoOf[name] = repo;
}
let oldPushedAt = 0;

describe("retention across a two-region mesh", () => {
  before(async () => {
    process.env.MERIDIAN_PULL_FLUSH_SECONDS = "1";
    mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"]);
    adminAuth = basic("admin", readFileSync(mesh.adminPasswordFile!, "utf8").trim());
    for (const r of mesh.regions.values()) await waitWritable(r.registry);
    oldPushedAt = Date.now();
    await pushed("old", "keep/untagged");
    await pushed("stable", "keep/untagged", "stable");
    for (const t of ["t1", "t2", "t3"]) await pushed(t, "keep/last", t);
    for (const t of ["release-1", "v1.2.0", "v2.0.0"]) await pushed(t, "keep/tags", t);
    for (const t of ["p1", "p2"]) await pushed(t, "keep/pulled", t);
    await pushed("other", "other/app", "x");
  });

  test("rules: set (CLI and API), listed, refused when bad or asked by a non-admin", async () => {
    await succeeds([
      "retention",
      "set",
      "last",
      "--repos",
      "keep/last",
      "--keep-last",
      "2",
      "--deciding-region",
      "a",
    ]);
    await succeeds([
      "retention",
      "set",
      "tags",
      "--repos",
      "keep/tags",
      "--keep-tags",
      "release-*,semver:>=1.0.0 <2.0.0",
      "--deciding-region",
      "a",
    ]);
    // Set through b's API without a region: b is the default decider; then replaced to name a.
    const viaB = await admin("b", "PUT", "/retention/rules/untagged", {
      repositories: ["keep/untagged"],
      untaggedDays: UNTAGGED_S / 86_400,
    });
    assert.equal(viaB.status, 200, JSON.stringify(viaB.body));
    assert.equal((viaB.body.rule as { region: string }).region, "b");
    const r = await admin("b", "PUT", "/retention/rules/untagged", {
      repositories: ["keep/untagged"],
      untaggedDays: UNTAGGED_S / 86_400,
      region: "a",
    });
    assert.equal(r.status, 200);
    await succeeds([
      "retention",
      "set",
      "pulled",
      "--repos",
      "keep/pulled",
      "--keep-last",
      "0",
      "--pulled-days",
      "1",
      "--deciding-region",
      "a",
      "--region",
      "b",
    ]);

    // Replicated: a lists every rule, all decided by a.
    await eventually(
      async () => {
        const list = await admin("a", "GET", "/retention/rules");
        const rules = list.body.rules as Array<{ name: string; rule: { region: string } }>;
        return rules.length === 4 && rules.every((x) => x.rule.region === "a");
      },
      30_000,
      200,
    );
    const listed = await succeeds(["retention", "list", "--region", "a"]);
    assert.match(listed, /^last\s+keep\/last\s+a\s+keep last 2/m);
    assert.match(listed, /^tags\s+keep\/tags\s+a\s+keep tags release-\*, semver:>=1\.0\.0 <2\.0\.0/m);

    // Bad rules: every problem listed, 400; nothing stored.
    const bad = await admin("a", "PUT", "/retention/rules/bad", {
      repositories: [],
      keepLast: -1,
      keepTags: ["semver:>>1"],
      region: "EU",
    });
    assert.equal(bad.status, 400);
    const err = (bad.body.errors as Array<{ code: string; detail: { errors: string[] } }>)[0]!;
    assert.equal(err.code, "UNSUPPORTED"); // PolicyInvalidError's OCI code (protocol/errors.ts)
    assert.equal(err.detail.errors.length, 4, JSON.stringify(err.detail.errors));
    const cliBad = await meridian(["retention", "set", "x", "--repos", "a{", "--keep-last", "many"]);
    assert.equal(cliBad.code, 2, cliBad.stderr);
    assert.equal((await admin("a", "PUT", "/retention/rules/Bad!", { repositories: ["**"] })).status, 400);
    assert.equal((await admin("a", "DELETE", "/retention/rules/nope")).status, 404);
    assert.equal((await admin("a", "GET", "/retention/plan?repo=a%7B")).status, 400);
    assert.equal((await admin("a", "GET", "/retention/runs/nope")).status, 404);

    // Only system admins: a developer is refused (403 DENIED), nobody signed in is asked to (401).
    assert.equal((await admin("a", "PUT", "/users/dev", { password: "dev-password-1" })).status, 200);
    const dev = basic("dev", "dev-password-1");
    for (const [method, path, body] of [
      ["GET", "/retention/rules", undefined],
      ["PUT", "/retention/rules/mine", { repositories: ["**"], keepLast: 0 }],
      ["DELETE", "/retention/rules/last", undefined],
      ["GET", "/retention/plan", undefined],
      ["POST", "/retention/runs", {}],
    ] as const) {
      const refused = await admin("a", method, path, body, dev);
      assert.equal(refused.status, 403, `${method} ${path}: ${JSON.stringify(refused.body)}`);
      assert.equal((refused.body.errors as Array<{ code: string }>)[0]!.code, "DENIED");
      assert.equal((await admin("a", method, path, body, "")).status, 401);
    }
    const rules = (await admin("a", "GET", "/retention/rules")).body.rules as unknown[];
    assert.equal(rules.length, 4, "nothing a refused call asked for was stored");
  });

  test("the plan table, the same in both regions, changes nothing", async () => {
    // Everything replicated to b; the untagged image old enough; a fresh one pushed; p1 pulled in b.
    for (const [name, digest] of Object.entries(img))
      await eventually(() => present("b", repoOf[name]!, digest), 30_000, 100);
    await sleep(Math.max(0, oldPushedAt + UNTAGGED_S * 1000 + 500 - Date.now()));
    const pull = await client("b").fetch("/v2/keep/pulled/manifests/p1", {
      headers: { accept: OCI_MANIFEST },
    });
    assert.equal(pull.status, 200);
    await pull.arrayBuffer();
    // The pull, recorded by b's node within a second, reaches a by replication.
    await eventually(
      async () => (await plan("a")).get("keep/pulled")?.keep.some((k) => k.digest === img.p1) === true,
      30_000,
      250,
    );
    // Pushed last, so it is as young as can be when the table is checked (it expires UNTAGGED_S later).
    await pushed("fresh", "keep/untagged");

    const a = await plan("a");
    const table: Array<[string, string[], string[]]> = [
      ["keep/last", [img.t1!], [img.t2!, img.t3!]],
      ["keep/tags", [img["v2.0.0"]!], [img["release-1"]!, img["v1.2.0"]!]],
      ["keep/untagged", [img.old!], [img.stable!, img.fresh!]],
      ["keep/pulled", [img.p2!], [img.p1!]],
    ];
    for (const [repo, gone, kept] of table) {
      const p = a.get(repo)!;
      assert.equal(p.decidedBy, "a");
      assert.deepEqual(p.delete.map((d) => d.digest).sort(), [...gone].sort(), `${repo} deletes`);
      assert.deepEqual(p.keep.map((d) => d.digest).sort(), [...kept].sort(), `${repo} keeps`);
    }
    assert.match(a.get("keep/pulled")!.keep[0]!.reasons.join(), /pulled within 1d/);
    assert.equal(a.has("other/app"), false, "no rule matches other/app");

    // b plans the same (it holds the same rules and content), decided by a.
    await eventually(async () => deletions(await plan("b")).join() === deletions(a).join(), 30_000, 200);

    // Changing nothing: everything is still there, and planning again gives the same.
    for (const d of deletions(a)) {
      const [repo, digest] = d.split("@") as [string, string];
      assert.ok(await present("a", repo, digest), d);
    }
    assert.deepEqual(deletions(await plan("a")), deletions(a));
    const text = await succeeds(["retention", "plan", "--region", "a", "--repo", "keep/last"]);
    assert.match(text, new RegExp(`delete\\s+${img.t1}\\s+t1`));
    assert.match(text, /1 manifest\(s\) to delete in 1 repository; nothing changed/);
  });

  test("a run in b, which decides nothing, deletes nothing", async () => {
    const before = deletions(await plan("a"));
    const out = await succeeds(["retention", "run", "--region", "b"]);
    assert.match(out, /keep\/last: skipped, decided by region a/);
    assert.match(out, /region b: done; deleted 0 manifest\(s\) in 0 repositories/);
    for (const d of before) {
      const [repo, digest] = d.split("@") as [string, string];
      assert.ok(await present("a", repo, digest), `${d} in a`);
      assert.ok(await present("b", repo, digest), `${d} in b`);
    }
  });

  test("a run deletes exactly the plan in the deciding region, and the deletions replicate", async () => {
    const planned = deletions(await plan("a"));
    for (const name of ["t1", "v2.0.0", "old", "p2"])
      assert.ok(planned.includes(`${repoOf[name]}@${img[name]}`), `${name} planned`);
    // Without --region: the CLI runs it where the rules are decided (a only).
    const out = await succeeds(["retention", "run", "--json"]);
    const runs = (JSON.parse(out) as { runs: Array<{ region: string; deleted: string[]; state: string }> })
      .runs;
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.region, "a");
    assert.equal(runs[0]!.state, "done");
    assert.deepEqual([...runs[0]!.deleted].sort(), planned);
    for (const p of planned) {
      const [repo, digest] = p.split("@") as [string, string];
      assert.equal(await present("a", repo, digest), false, `${p} gone in a`);
      await eventually(async () => !(await present("b", repo, digest)), 30_000, 100);
    }
    for (const [name, digest] of Object.entries(img)) {
      if (planned.includes(`${repoOf[name]}@${digest}`)) continue;
      assert.ok(await present("a", repoOf[name]!, digest), `${name} kept in a`);
      assert.ok(await present("b", repoOf[name]!, digest), `${name} kept in b`);
    }
    // A second run finds nothing more to delete.
    // (keep/untagged left out: its fresh image expires UNTAGGED_S after its push, whenever this runs.)
    const again = await succeeds(["retention", "run", "--repo", "keep/{last,tags,pulled}"]);
    assert.match(again, /region a: done; deleted 0 manifest\(s\) in 3 repositories/);
  });

  test("undelete brings back a retention deletion, in both regions", async () => {
    await succeeds(["undelete", `keep/last@${img.t1}`, "--region", "a"]);
    assert.ok(await present("a", "keep/last", img.t1!));
    await eventually(() => present("b", "keep/last", img.t1!), 30_000, 100);
    const tagged = await client("a").fetch("/v2/keep/last/manifests/t1", {
      headers: { accept: OCI_MANIFEST },
    });
    assert.equal(tagged.status, 200, "its tag came back with it");
    await tagged.arrayBuffer();
  });

  test("a retention deletion of most of a repository's tags trips b's delete breaker, as any deletion would", async () => {
    for (const t of ["m1", "m2", "m3", "m4", "m5"]) await pushed(t, "keep/many", t);
    for (const t of ["m1", "m2", "m3", "m4", "m5"])
      await eventually(() => present("b", "keep/many", img[t]!), 30_000, 100);
    await succeeds([
      "retention",
      "set",
      "many",
      "--repos",
      "keep/many",
      "--keep-last",
      "1",
      "--deciding-region",
      "a",
    ]);
    await eventually(async () => (await plan("a")).get("keep/many")?.delete.length === 4, 30_000, 200);
    const out = await succeeds(["retention", "run", "--repo", "keep/many"]);
    assert.match(out, /region a: done; deleted 4 manifest\(s\) in 1 repository/);
    for (const t of ["m1", "m2", "m3", "m4"])
      assert.equal(await present("a", "keep/many", img[t]!), false, t);
    // b lets some through, then halts the rest (4 of 5 tags is over the default 50%) and says so.
    await eventually(
      async () => {
        const alerts = (await admin("b", "GET", "/alerts")).body.alerts as Array<{
          kind: string;
          repo?: string;
        }>;
        return alerts.some((x) => x.kind === "delete-breaker" && x.repo === "keep/many");
      },
      30_000,
      200,
    );
    const held = [];
    for (const t of ["m1", "m2", "m3", "m4"]) if (await present("b", "keep/many", img[t]!)) held.push(t);
    assert.ok(held.length > 0, "the breaker held some deletions in b");
    assert.ok(await present("b", "keep/many", img.m5!));
  });
});
