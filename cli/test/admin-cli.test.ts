/**
 * The admin commands of `meridian` against a real two-region mesh (`meridian
 * up --regions a,b`): policies applied, listed, shown, planned and run to
 * completion; tag history; where an artifact has replicated; rules, alerts,
 * repository delete and undelete. Every command runs as bin/meridian would
 * for an operator, reading <data>/mesh.json.
 *
 * One mesh for the file; the steps run in order. A `trigger: manual` policy
 * naming the link a→b is applied first, so pushes to a stay in a until the
 * policy is run: plan must list what b lacks, and nothing once it has run.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { sleep, waitWritable } from "../../testing/faults.js";
import { cleanupStack, eventually, runCli } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
const client = (region: string) => new OciClient(mesh.regions.get(region)!.registry);

/** Run `meridian ARGS --data <mesh dir>`; never longer than `timeoutMs`. */
const meridian = (args: string[], timeoutMs?: number) => runCli([...args, "--data", mesh.dataDir], timeoutMs);

async function succeeds(args: string[], timeoutMs?: number): Promise<string> {
  const r = await meridian(args, timeoutMs);
  assert.equal(r.code, 0, `meridian ${args.join(" ")}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

async function digestIn(region: string, repo: string, tag: string): Promise<string | undefined> {
  const res = await client(region).fetch(`/v2/${repo}/manifests/${tag}`, {
    method: "HEAD",
    headers: { accept: OCI_MANIFEST, "cache-control": "only-if-cached" },
  });
  return res.status === 200 ? (res.headers.get("docker-content-digest") ?? undefined) : undefined;
}

const POLICIES = `policies:
  - name: apps-ab
    source: a
    destination: b
    repositories: ["apps/**"]
    trigger: manual
    exclusive: true
  - name: scratch
    source: b
    destination: a
    repositories: ["scratch/**"]
    trigger: manual
    exclusive: true
`;

describe("meridian admin commands", () => {
  const images = new Map<string, string>();

  before(async () => {
    mesh = await startMesh(cleanup, ["a", "b"]);
    for (const r of mesh.regions.values()) await waitWritable(r.registry);
  });

  test("policy apply, list, show and delete; invalid files and usage errors", async () => {
    const file = join(mesh.dataDir, "policies.yaml");
    writeFileSync(file, POLICIES);
    assert.equal(
      await succeeds(["policy", "apply", file]),
      "applied policy apps-ab\napplied policy scratch\n" +
        "a→b: replication of everything else stops (exclusive: apps-ab); only apps-ab (apps/**) replicates\n" +
        "b→a: replication of everything else stops (exclusive: scratch); only scratch (scratch/**) replicates\n",
    );

    const bad = join(mesh.dataDir, "bad.yaml");
    writeFileSync(bad, "name: Bad\nsource: a\ndestination: a\ntigger: manual\n");
    const invalid = await meridian(["policy", "apply", bad]);
    assert.equal(invalid.code, 1);
    assert.match(invalid.stderr, /bad\.yaml is invalid \(nothing applied\)/);
    assert.match(invalid.stderr, / {2}- .*name: invalid name/);
    assert.match(invalid.stderr, / {2}- .*tigger: unknown key \(did you mean "trigger"\?\)/);

    const list = await succeeds(["policy", "list"]);
    assert.match(list, /^name\s+link\s+repositories\s+tags\s+trigger\s+deletes\s+enabled\s+exclusive$/m);
    assert.match(list, /^apps-ab\s+a→b\s+apps\/\*\*\s+\*\s+manual\s+off\s+yes\s+yes$/m);
    assert.match(list, /^scratch\s+b→a\s+scratch\/\*\*/m);
    const json = JSON.parse(await succeeds(["policy", "list", "--json"])) as {
      policies: Array<{ name: string }>;
    };
    assert.deepEqual(json.policies.map((p) => p.name).sort(), ["apps-ab", "scratch"]);

    const show = await succeeds(["policy", "show", "apps-ab"]);
    assert.match(show, /^name: apps-ab$/m);
    assert.match(show, /^trigger: manual$/m);
    assert.match(show, /# no runs/);

    assert.equal(
      await succeeds(["policy", "delete", "scratch"]),
      "deleted policy scratch\nb→a: the full mirror stays (no exclusive policy on this link); everything still replicates\n",
    );
    const gone = await meridian(["policy", "show", "scratch"]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /policy scratch not found/);

    assert.equal((await meridian(["policy", "show"])).code, 2);
    assert.equal((await meridian(["policy", "frobnicate"])).code, 2);
    assert.equal((await meridian(["policy", "list", "--wait"])).code, 2);
    assert.equal((await meridian(["policy", "list", "--region", "nowhere"])).code, 2);
  });

  test("policy plan lists what b lacks; policy run --wait copies it; then plan has nothing left", async () => {
    // The policy must be in b's worker's view before the pushes, or the default policy would carry them.
    await eventually(async () => (await policiesIn("b")).includes("apps-ab"), 15_000, 100);
    await sleep(1_500);
    const a = client("a");
    for (const repo of ["apps/one", "apps/two", "other/x"])
      images.set(repo, (await a.pushRandomImage(repo, "v1")).digest);
    await sleep(1_000);
    assert.equal(
      await digestIn("b", "apps/one", "v1"),
      undefined,
      "nothing replicates on push under a manual policy",
    );

    const plan = await succeeds(["policy", "plan", "apps-ab"]);
    assert.match(plan, /^a → b: 2 repositories$/m);
    for (const repo of ["apps/one", "apps/two"]) {
      assert.match(plan, new RegExp(`^  ${repo}$`, "m"));
      assert.ok(plan.includes(`    copy manifest ${images.get(repo)}`), plan);
      assert.ok(plan.includes(`    set tag v1 → ${images.get(repo)}`), plan);
    }
    assert.ok(!/^ {2}other\/x$/m.test(plan), "a repository the policy does not select is not planned");
    assert.match(plan, /^a→b: replication of everything else stops \(exclusive: apps-ab\)/m);
    assert.match(plan, /^ {2}not replicated on this link: other\/x$/m);
    assert.match(plan, /^ {2}total: .*copy-manifest 2.*set-tag 2/m);
    const planJson = JSON.parse(await succeeds(["policy", "plan", "apps-ab", "--json"])) as {
      links: Array<{ source: string; destination: string; plans: Array<{ repo: string }> }>;
    };
    assert.equal(planJson.links.length, 1);
    assert.deepEqual(
      planJson.links[0]!.plans.map((p) => p.repo),
      ["apps/one", "apps/two"],
    );

    const run = await succeeds(["policy", "run", "apps-ab", "--wait"], 120_000);
    assert.match(run, /^run [0-9a-f-]{36} of policy apps-ab requested; waiting for b$/m);
    assert.match(run, /^b: ok at .*copy-manifest 2/m);
    assert.match(run, /^done: 1 of 1 region\(s\) ok; totals: /m);
    for (const repo of ["apps/one", "apps/two"])
      assert.equal(await digestIn("b", repo, "v1"), images.get(repo));
    const pulled = await client("b").fetch(`/v2/apps/one/manifests/v1`, {
      headers: { accept: OCI_MANIFEST },
    });
    assert.equal(pulled.status, 200);
    assert.equal(await digestIn("b", "other/x", "v1"), undefined);

    assert.equal(
      await succeeds(["policy", "plan", "apps-ab"]),
      "a→b: replication of everything else stops (exclusive: apps-ab); only apps-ab (apps/**) replicates\n" +
        "  not replicated on this link: other/x\n" +
        "a → b: nothing to do\n",
    );
    const show = await succeeds(["policy", "show", "apps-ab"]);
    assert.match(show, /# recent runs \(1 of 1\):/);
    assert.match(show, /# {5}b: ok at /);
  });

  test("replication status: present in both regions after the run, not selected where no policy carries it", async () => {
    const two = await succeeds(["replication", "status", `apps/two@${images.get("apps/two")}`]);
    assert.match(two, /^a\s+present\s+tags: v1$/m);
    assert.match(two, /^b\s+present\s+tags: v1$/m);
    const other = JSON.parse(
      await succeeds(["replication", "status", `other/x@${images.get("other/x")}`, "--json"]),
    ) as { regions: Array<{ region: string; state: string }> };
    assert.deepEqual(
      other.regions.map((r) => [r.region, r.state]),
      [
        ["a", "present"],
        ["b", "not selected"],
      ],
    );
    const malformed = await meridian(["replication", "status", "other/x@sha256:nope"]);
    assert.equal(malformed.code, 1);
    assert.match(malformed.stderr, /digest/);
    assert.equal((await meridian(["replication", "status", "other/x"])).code, 2);
  });

  test("tag history: every write, and what the tag held at a given time", async () => {
    const first = images.get("apps/one")!;
    const between = new Date().toISOString();
    await sleep(50);
    const second = (await client("a").pushRandomImage("apps/one", "v1")).digest;
    const out = await succeeds(["tag", "history", "apps/one:v1", "--at", between]);
    assert.match(out, /^apps\/one:v1 {2}rule lww$/m);
    assert.match(out, /^time\s+origin\s+digest\s+actor\s+via$/m);
    const rows = out.split("\n").filter((l) => /\sa\s+sha256:/.test(l));
    assert.equal(rows.length, 2, out);
    assert.ok(rows[0]!.includes(first) && rows[1]!.includes(second), out);
    assert.match(out, new RegExp(`^now: ${second}$`, "m"));
    assert.ok(out.includes(`at ${between}: ${first}`), out);
    assert.match(out, /^conflicts: none$/m);
    const unknown = await meridian(["tag", "history", "apps/one:nope"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /tag unknown/);
    assert.equal((await meridian(["tag", "history", "apps/one"])).code, 2);
  });

  test("tag rule and rules, alerts, repo delete and undelete", async () => {
    assert.equal(
      await succeeds(["tag", "rule", "locked/", "first-write"]),
      "tag rule of locked/: first-write\n",
    );
    const rules = await succeeds(["tag", "rules"]);
    assert.match(rules, /^\(default\)\s+lww\s+-\s+async$/m);
    assert.match(rules, /^locked\/\s+first-write\s+-\s+async$/m);
    const badRule = await meridian(["tag", "rule", "locked/", "home-region"]);
    assert.equal(badRule.code, 1);
    assert.match(badRule.stderr, /home: required/);

    assert.equal(await succeeds(["alerts"]), "no alerts\n");

    const deleted = await succeeds(["repo", "delete", "other/x"]);
    assert.match(deleted, /^deleted repository other\/x/);
    assert.equal(await digestIn("a", "other/x", "v1"), undefined);
    const restored = await succeeds(["undelete", "other/x"]);
    assert.ok(restored.includes(`restored manifest ${images.get("other/x")}`), restored);
    assert.ok(restored.includes(`restored tag v1 → ${images.get("other/x")}`), restored);
    assert.equal(await digestIn("a", "other/x", "v1"), images.get("other/x"));
    const again = await meridian(["undelete", "other/x:v1"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /nothing to restore/);
    const missing = await meridian(["repo", "delete", "never/there"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /not known/);
  });
});

/** Policy names in a region's own view (through its admin API). */
async function policiesIn(region: string): Promise<string[]> {
  const res = await client(region).fetch("/admin/v1/policies");
  const body = (await res.json()) as { policies: Array<{ name: string }> };
  return body.policies.map((p) => p.name);
}
