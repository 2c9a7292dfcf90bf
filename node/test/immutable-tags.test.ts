/**
 * Immutable tags (issue 15, item 3) against a real two-region mesh
 * (`meridian up --regions a,b --auth`): a rule made in one region refuses,
 * in both, a push or delete that would move a tag it protects (403 DENIED
 * naming the rule, nothing of the push visible), lets the first push and a
 * re-push of the same digest through, and a real client (skopeo) hears the
 * refusal; two regions writing a protected tag while replication is frozen
 * end with the first write everywhere and one conflict recorded; deleting
 * the rule makes the tag mutable again; the admin API refuses callers
 * without the right; and the CLI manages rules.
 *
 * One mesh for the file; the steps run in order.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";
import { writeImageLayout } from "../../testing/oci-layout.js";

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
let adminPassword: string;
let adminAuth: string;

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

/** PUT a manifest's bytes by tag without throwing on a refusal. */
async function putManifest(region: string, repo: string, tag: string, manifest: unknown) {
  const res = await client(region).fetch(`/v2/${repo}/manifests/${tag}`, {
    method: "PUT",
    headers: { "content-type": OCI_MANIFEST },
    body: JSON.stringify(manifest),
  });
  return { status: res.status, body: (await res.json().catch(() => ({}))) as OciErrors };
}

interface OciErrors {
  errors?: Array<{ code: string; message: string }>;
}

async function tagIn(region: string, repo: string, tag: string): Promise<string | undefined> {
  const res = await client(region).fetch(`/v2/${repo}/manifests/${tag}`, {
    method: "HEAD",
    headers: { accept: OCI_MANIFEST },
  });
  return res.status === 200 ? (res.headers.get("docker-content-digest") ?? undefined) : undefined;
}

async function ruleNames(region: string): Promise<string[]> {
  const reply = await admin(region, "GET", "/immutability");
  return (reply.body.rules as Array<{ name: string }>).map((r) => r.name);
}

/** A manifest over blobs pushed to `repo` in `region` (random, so each call is a new digest). */
async function newImage(region: string, repo: string): Promise<{ manifest: unknown; digest: string }> {
  const c = client(region);
  const config = await c.pushBlob(
    repo,
    Buffer.from(JSON.stringify({ os: "linux", architecture: "amd64", nonce: Math.random() })),
    "application/vnd.oci.image.config.v1+json",
  );
  const layer = await c.pushBlob(repo, Buffer.from(`layer ${Math.random()}`));
  const manifest = { schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] };
  return { manifest, digest: sha256(JSON.stringify(manifest)) };
}

const RULE = { repositories: "prod/*", tags: "v*" };

before(async () => {
  mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"]);
  adminPassword = readFileSync(mesh.adminPasswordFile!, "utf8").trim();
  adminAuth = basic("admin", adminPassword);
});

describe("immutable tags across two regions", () => {
  const first = new Map<string, { manifest: unknown; digest: string }>();

  test("a rule made in a protects the tag in a and in b: 403 DENIED naming the rule, nothing visible", async () => {
    const put = await admin("a", "PUT", "/immutability/prod-v", RULE);
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.deepEqual({ ...put.body, seq: 0 }, { name: "prod-v", ...RULE, seq: 0 });
    await eventually(async () => (await ruleNames("b")).includes("prod-v"), 30_000, 100);

    const one = await newImage("a", "prod/api");
    first.set("api", one);
    assert.equal((await putManifest("a", "prod/api", "v1", one.manifest)).status, 201, "the first push");

    const other = await newImage("a", "prod/api");
    const refused = await putManifest("a", "prod/api", "v1", other.manifest);
    assert.equal(refused.status, 403);
    assert.equal(refused.body.errors?.[0]?.code, "DENIED");
    assert.match(refused.body.errors![0]!.message, /immutable \(rule prod-v\)/);
    assert.match(refused.body.errors![0]!.message, new RegExp(one.digest));
    // Nothing half-applied: the refused manifest is not visible by digest, the tag did not move.
    assert.equal((await client("a").fetch(`/v2/prod/api/manifests/${other.digest}`)).status, 404);
    assert.equal(await tagIn("a", "prod/api", "v1"), one.digest);

    // Re-pushing the digest the tag holds is idempotent.
    assert.equal((await putManifest("a", "prod/api", "v1", one.manifest)).status, 201);
    // Deleting the tag is refused too.
    const del = await client("a").fetch("/v2/prod/api/manifests/v1", { method: "DELETE" });
    assert.equal(del.status, 403);
    assert.match(await del.text(), /"DENIED".*cannot be deleted/);
    // So is deleting the manifest it points at, or the repository (either would hide the tag).
    const byDigest = await client("a").fetch(`/v2/prod/api/manifests/${one.digest}`, { method: "DELETE" });
    assert.equal(byDigest.status, 403);
    assert.match(await byDigest.text(), /"DENIED".*carries tag v1, which is immutable \(rule prod-v\)/);
    const repoDelete = await admin("a", "DELETE", "/repositories/prod/api");
    assert.equal(repoDelete.status, 403, JSON.stringify(repoDelete.body));
    assert.equal(await tagIn("a", "prod/api", "v1"), one.digest);
    // Tags and repositories the rule does not match stay mutable.
    for (const tag of ["latest", "latest"])
      assert.equal(
        (await putManifest("a", "prod/api", tag, (await newImage("a", "prod/api")).manifest)).status,
        201,
      );
    for (let i = 0; i < 2; i++)
      assert.equal(
        (await putManifest("a", "dev/api", "v1", (await newImage("a", "dev/api")).manifest)).status,
        201,
      );

    // In b, once the tag has replicated, the same refusal.
    await eventually(async () => (await tagIn("b", "prod/api", "v1")) === one.digest, 30_000, 100);
    const inB = await putManifest("b", "prod/api", "v1", (await newImage("b", "prod/api")).manifest);
    assert.equal(inB.status, 403);
    assert.equal(inB.body.errors?.[0]?.code, "DENIED");
    assert.equal(await tagIn("b", "prod/api", "v1"), one.digest);
  });

  test("skopeo: the first copy succeeds, a different image to the same tag is denied", async () => {
    const work = tempDir(cleanup);
    const host = registry("a").replace(/^http:\/\//, "");
    const creds = `admin:${adminPassword}`;
    const copy = (layout: string) =>
      run(
        "skopeo",
        [
          "copy",
          "--dest-tls-verify=false",
          "--dest-creds",
          creds,
          `oci:${layout}:v2`,
          `docker://${host}/prod/sk:v2`,
        ],
        { timeout: 60_000 },
      );
    const one = join(work, "one");
    const digest = writeImageLayout(one, "v2", [2_000]);
    await copy(one);
    assert.equal(await tagIn("a", "prod/sk", "v2"), digest);
    await copy(one); // the same image again: allowed
    const two = join(work, "two");
    writeImageLayout(two, "v2", [3_000]);
    await assert.rejects(copy(two), /immutable \(rule prod-v\)/);
    assert.equal(await tagIn("a", "prod/sk", "v2"), digest);
  });

  test("both regions write a protected tag while replication is frozen: the first write wins everywhere, one conflict", async () => {
    const workers = ["a", "b"].map((r) => mesh.regions.get(r)!.pids.worker!);
    const resume = () => {
      for (const pid of workers) {
        try {
          process.kill(pid, "SIGCONT");
        } catch {}
      }
    };
    cleanup(resume);
    const inA = await newImage("a", "prod/race");
    first.set("race", inA);
    const inB = await newImage("b", "prod/race");
    for (const pid of workers) process.kill(pid, "SIGSTOP");
    try {
      // a writes first (its clock is earlier), b a moment later: each region accepts its own.
      assert.equal((await putManifest("a", "prod/race", "v1", inA.manifest)).status, 201);
      await new Promise((r) => setTimeout(r, 20));
      assert.equal((await putManifest("b", "prod/race", "v1", inB.manifest)).status, 201);
      assert.equal(await tagIn("b", "prod/race", "v1"), inB.digest);
    } finally {
      resume();
    }
    for (const region of ["a", "b"])
      await eventually(async () => (await tagIn(region, "prod/race", "v1")) === inA.digest, 30_000, 100);
    type Conflict = { winner: { digest: string }; loser: { digest: string; origin: string }; rule?: string };
    for (const region of ["a", "b"]) {
      let conflicts: Conflict[] = [];
      await eventually(
        async () => {
          const h = await admin(region, "GET", "/repositories/prod/race/tags/v1/history");
          conflicts = h.body.conflicts as Conflict[];
          return conflicts.length > 0;
        },
        30_000,
        100,
      );
      assert.equal(conflicts.length, 1, `${region}: ${JSON.stringify(conflicts)}`);
      assert.equal(conflicts[0]!.winner.digest, inA.digest);
      assert.equal(conflicts[0]!.loser.digest, inB.digest);
      assert.equal(conflicts[0]!.loser.origin, "b");
      assert.equal(conflicts[0]!.rule, "prod-v");
    }
    // The history names the rule, and what the tag held at a time folds the same way.
    const at = new Date(Date.now()).toISOString();
    const history = await admin("b", "GET", `/repositories/prod/race/tags/v1/history?at=${at}`);
    assert.equal(history.body.immutable, "prod-v");
    assert.equal((history.body.at as { digest: string }).digest, inA.digest);
    assert.equal((history.body.writes as unknown[]).length, 2, "the losing write stays in the history");
    // Still one after a moment more (both regions may detect it; it is recorded once).
    await new Promise((r) => setTimeout(r, 1_000));
    for (const region of ["a", "b"]) {
      const h = await admin(region, "GET", "/repositories/prod/race/tags/v1/history");
      assert.equal((h.body.conflicts as Conflict[]).length, 1);
    }
  });

  test("deleting the rule makes the tag mutable again, in both regions", async () => {
    const del = await admin("b", "DELETE", "/immutability/prod-v");
    assert.equal(del.status, 200, JSON.stringify(del.body));
    await eventually(async () => !(await ruleNames("a")).includes("prod-v"), 30_000, 100);
    const next = await newImage("a", "prod/api");
    assert.equal((await putManifest("a", "prod/api", "v1", next.manifest)).status, 201);
    assert.equal(await tagIn("a", "prod/api", "v1"), next.digest);
    await eventually(async () => (await tagIn("b", "prod/api", "v1")) === next.digest, 30_000, 100);
    const byDigest = await client("a").fetch(`/v2/prod/api/manifests/${next.digest}`, { method: "DELETE" });
    assert.equal(byDigest.status, 202);
    // The write rejected while the rule was in force stays rejected: b's race write did not come back.
    assert.equal(await tagIn("b", "prod/race", "v1"), first.get("race")!.digest);
    const again = await admin("a", "DELETE", "/immutability/prod-v");
    assert.equal(again.status, 404);
    assert.equal((again.body.errors as Array<{ code: string }>)[0]!.code, "NAME_UNKNOWN");
  });

  test("who may change rules: system admins; a project admin within their project; nobody else", async () => {
    for (const [path, json] of [
      ["/projects/prod", { public: false }],
      ["/users/padmin", { password: "padmin-password-1" }],
      ["/users/dev", { password: "dev-password-1" }],
      ["/projects/prod/members/padmin", { role: "projectAdmin" }],
      ["/projects/prod/members/dev", { role: "developer" }],
    ] as const)
      assert.equal((await admin("a", "PUT", path, json)).status, 200, path);
    const padmin = basic("padmin", "padmin-password-1");
    const dev = basic("dev", "dev-password-1");
    const denied = (r: { status: number; body: Record<string, unknown> }) => {
      assert.equal(r.status, 403, JSON.stringify(r.body));
      assert.equal((r.body.errors as Array<{ code: string }>)[0]!.code, "DENIED");
    };

    // Anonymous: 401; a developer: 403, whatever the body.
    assert.equal((await admin("a", "PUT", "/immutability/x", RULE, "")).status, 401);
    denied(await admin("a", "PUT", "/immutability/x", RULE, dev));
    denied(await admin("a", "DELETE", "/immutability/x", undefined, dev));
    // A project admin: inside prod yes; a glob reaching other projects or another project no.
    const mine = await admin(
      "a",
      "PUT",
      "/immutability/prod-rel",
      { repositories: "prod/**", tags: "rel-*" },
      padmin,
    );
    assert.equal(mine.status, 200, JSON.stringify(mine.body));
    denied(await admin("a", "PUT", "/immutability/wide", { repositories: "*/api", tags: "v*" }, padmin));
    denied(await admin("a", "PUT", "/immutability/theirs", { repositories: "dev/*", tags: "v*" }, padmin));
    // A system admin's rule over everything: the project admin may neither replace nor delete it.
    assert.equal(
      (await admin("a", "PUT", "/immutability/all-rel", { repositories: "**", tags: "release" })).status,
      200,
    );
    denied(
      await admin("a", "PUT", "/immutability/all-rel", { repositories: "prod/*", tags: "release" }, padmin),
    );
    denied(await admin("a", "DELETE", "/immutability/all-rel", undefined, padmin));
    assert.equal((await admin("a", "DELETE", "/immutability/prod-rel", undefined, padmin)).status, 200);
    assert.equal((await admin("a", "DELETE", "/immutability/all-rel")).status, 200);
    // Bad input: 400 listing the problem.
    const bad = await admin("a", "PUT", "/immutability/Bad_Name", { repositories: "prod/*", tags: "a{" });
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(bad.body), /name: .*tags: invalid glob/);
    assert.equal((await admin("a", "PUT", "/immutability/ok", { repositories: "prod/*" })).status, 400);
    // The refused changes changed nothing, in either region.
    await eventually(async () => (await ruleNames("b")).length === 0, 30_000, 100);
    assert.deepEqual(await ruleNames("a"), []);
  });

  test("meridian immutable add, list and delete", async () => {
    const meridian = (args: string[]) => runCli([...args, "--data", mesh.dataDir], 60_000);
    const add = await meridian(["immutable", "add", "cli-rule", "--repos", "prod/*", "--tags", "v*"]);
    assert.equal(add.code, 0, add.stderr);
    assert.equal(add.stdout, "immutable rule cli-rule: tags v* in prod/*\n");
    const list = await meridian(["immutable", "list"]);
    assert.match(list.stdout, /^name\s+repositories\s+tags\s+set by\s+at\s+in$/m);
    assert.match(list.stdout, /^cli-rule\s+prod\/\*\s+v\*\s+admin\s+\S+\s+a$/m);
    const history = await meridian(["tag", "history", "prod/race:v1"]);
    assert.equal(history.code, 0, history.stderr);
    assert.match(history.stdout, /^prod\/race:v1 {2}rule lww, immutable \(rule cli-rule\)$/m);
    assert.match(history.stdout, /^conflict recorded .* \(a\) won over .* \(b\)$/m);
    const bad = await meridian(["immutable", "add", "x", "--repos", "prod/*"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--repos GLOB and --tags GLOB are required/);
    const del = await meridian(["immutable", "delete", "cli-rule"]);
    assert.equal(del.code, 0, del.stderr);
    assert.equal(del.stdout, "deleted immutable rule cli-rule\n");
    const gone = await meridian(["immutable", "delete", "cli-rule"]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /no immutability rule named cli-rule/);
  });
});
