/**
 * Quotas across a real two-region mesh (`meridian up --regions a,b --auth`,
 * every region replicating everything to the other) through the commands an
 * operator types: `meridian quota set` in one region reaches the other (one
 * admin event, replicated); an image pushed to a counts in b once replicated
 * (each region counts what it stores); b enforces the quota on its own
 * usage; `meridian quota show` prints it, as a table and as JSON; a user who
 * is not a system admin is refused; bad sizes are usage errors.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { waitWritable } from "../../testing/faults.js";
import { cleanupStack, eventually, runCli } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OciClient, sha256 } from "../../testing/oci-client.js";
import { formatBytes, parseSize } from "../quota-commands.js";

const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
let adminAuth: string;

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const client = (region: string) => new OciClient(mesh.regions.get(region)!.registry, adminAuth);
const meridian = (args: string[], env?: Record<string, string>) =>
  runCli([...args, "--data", mesh.dataDir], 30_000, env);

interface Shown {
  region: string;
  project: string;
  limitBytes: number | null;
  usedBytes: number;
  blobs: number;
}

async function show(region: string, project: string): Promise<Shown> {
  const r = await meridian(["quota", "show", project, "--region", region, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Shown;
}

before(async () => {
  mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"]);
  adminAuth = basic("admin", readFileSync(mesh.adminPasswordFile!, "utf8").trim());
  for (const r of mesh.regions.values()) await waitWritable(r.registry);
});

describe("meridian quota", () => {
  test("sizes: units, none, and what is not a size", () => {
    assert.equal(parseSize("1048576"), 1048576);
    assert.equal(parseSize("10GiB"), 10 * 2 ** 30);
    assert.equal(parseSize("500MB"), 500e6);
    assert.equal(parseSize("1.5 kib"), 1536);
    assert.equal(parseSize("none"), null);
    for (const bad of ["", "-1", "ten", "5 parsecs", "1e3"]) assert.throws(() => parseSize(bad), bad);
    assert.equal(formatBytes(512), "512 B");
    assert.equal(formatBytes(3 * 2 ** 20), "3.0 MiB");
  });

  test("set in one region, shown in both; a replicated push counts in the destination", async () => {
    const set = await meridian(["quota", "set", "team", "1MiB", "--region", "a"]);
    assert.equal(set.code, 0, set.stderr);
    assert.equal(set.stdout, "quota of team: 1.0 MiB (1048576 bytes) in each region\n");
    await eventually(async () => (await show("b", "team")).limitBytes === 2 ** 20, 30_000, 200);

    const image = await client("a").pushRandomImage("team/app", "v1", 2, 100_000);
    const a = await show("a", "team");
    const manifestSize = Buffer.byteLength(JSON.stringify(image.manifest));
    assert.equal(a.usedBytes, image.config.size + 200_000 + manifestSize);
    assert.equal(a.blobs, 4);
    // Replicated into b, it counts there: the same distinct bytes.
    await eventually(async () => (await show("b", "team")).usedBytes === a.usedBytes, 30_000, 200);
    assert.equal((await show("b", "team")).blobs, 4);
    const metrics = await (await fetch(`${mesh.regions.get("b")!.registry}/metrics`)).text();
    assert.match(
      metrics,
      new RegExp(`^meridian_project_storage_bytes\\{project="team",region="b"\\} ${a.usedBytes}$`, "m"),
    );
    assert.match(metrics, /^meridian_project_quota_bytes\{project="team",region="b"\} 1048576$/m);

    const table = await meridian(["quota", "show", "--region", "b"]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^region b\n/);
    assert.match(table.stdout, /^team +1\.0 MiB +\d+\.\d KiB +\d+\.\d% +4 +0 B/m);
  });

  test("b enforces the quota on its own usage: a push there over it is refused 403 DENIED", async () => {
    const used = (await show("b", "team")).usedBytes;
    const set = await meridian(["quota", "set", "team", String(used), "--region", "b"]);
    assert.equal(set.code, 0, set.stderr);
    await eventually(async () => (await show("b", "team")).limitBytes === used, 30_000, 200);
    const blob = Buffer.from("one byte too many");
    const res = await client("b").fetch(`/v2/team/app/blobs/uploads/?digest=${sha256(blob)}`, {
      method: "POST",
      body: blob,
    });
    assert.equal(res.status, 403);
    const body = (await res.json()) as { errors: Array<{ code: string; message: string }> };
    assert.equal(body.errors[0]!.code, "DENIED");
    assert.match(body.errors[0]!.message, /^quota exceeded: project team holds/);
    const head = await client("b").fetch(`/v2/team/app/blobs/${sha256(blob)}`, { method: "HEAD" });
    assert.equal(head.status, 404);
  });

  test("a user who is not a system admin is refused; bad arguments are usage errors", async () => {
    const put = await client("a").fetch("/admin/v1/users/carol", {
      method: "PUT",
      body: JSON.stringify({ password: "carol-password-1" }),
      headers: { "content-type": "application/json" },
    });
    assert.equal(put.status, 200, await put.text());
    const member = await client("a").fetch("/admin/v1/projects/team/members/carol", {
      method: "PUT",
      body: JSON.stringify({ role: "projectAdmin" }),
      headers: { "content-type": "application/json" },
    });
    assert.equal(member.status, 200, await member.text());
    const file = join(mesh.dataDir, "carol-password");
    writeFileSync(file, "carol-password-1\n");
    const env = { MERIDIAN_USER: "carol", MERIDIAN_PASSWORD_FILE: file };
    const refused = await meridian(["quota", "set", "team", "none", "--region", "a"], env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /system admin/);
    // And what to do next: who is signed in, how to sign in as someone else.
    assert.match(
      refused.stderr,
      /signed in as carol: set MERIDIAN_USER and MERIDIAN_PASSWORD_FILE to a user allowed this/,
    );
    const wrong = join(mesh.dataDir, "wrong-password");
    writeFileSync(wrong, "not-her-password\n");
    const denied = await meridian(["quota", "show", "team", "--region", "a"], {
      MERIDIAN_USER: "carol",
      MERIDIAN_PASSWORD_FILE: wrong,
    });
    assert.equal(denied.code, 1);
    assert.match(
      denied.stderr,
      /needs credentials \(those given were refused\): set MERIDIAN_USER and MERIDIAN_PASSWORD_FILE/,
    );
    // A member may look at the project's usage.
    const seen = await meridian(["quota", "show", "team", "--region", "a", "--json"], env);
    assert.equal(seen.code, 0, seen.stderr);
    assert.notEqual((JSON.parse(seen.stdout) as Shown).limitBytes, null);

    const bad = await meridian(["quota", "set", "team", "lots"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /SIZE: want bytes/);
    assert.equal((await meridian(["quota", "set", "team"])).code, 2);
    assert.equal((await meridian(["quota", "show", "a", "b"])).code, 2);
  });
});
