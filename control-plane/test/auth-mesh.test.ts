/**
 * Authentication across a mesh (issue 6): `meridian up --auth` with two
 * regions and the front door as real processes. The admin password file is
 * made and named; identities made in one region log in in the other;
 * a token from one region is good in the other; through the front door the
 * challenge names the front door, and skopeo logs in, pushes and pulls; the
 * front door still routes writes home (it reads the rules with a service
 * token); the CLI administers users, robots and projects and reads the
 * audit log of every region.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";
import { writeImageLayout } from "../../testing/oci-layout.js";

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
const PASSWORD = "a developer's password";
let mesh: RunningMesh;
let adminPassword: string;
let work: string;

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const registry = (region: string) => mesh.regions.get(region)!.registry;
const cli = (args: string[]) => runCli([...args, "--data", mesh.dataDir], 60_000);

before(async () => {
  mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"]);
  work = tempDir(cleanup);
  adminPassword = readFileSync(mesh.adminPasswordFile!, "utf8").trim();
});

describe("up --auth", () => {
  test("names a generated admin password file, readable only by its owner", () => {
    assert.equal(mesh.adminPasswordFile, join(mesh.dataDir, "auth", "admin-password"));
    assert.equal(statSync(mesh.adminPasswordFile!).mode & 0o777, 0o600);
    assert.ok(adminPassword.length >= 16);
    assert.equal(statSync(join(mesh.dataDir, "auth", "token-key.pem")).mode & 0o777, 0o600);
  });

  test("every region and the front door refuse anonymous requests, and the challenge names where it was asked", async () => {
    for (const base of [registry("a"), registry("b"), mesh.frontDoor!]) {
      const res = await fetch(`${base}/v2/`);
      assert.equal(res.status, 401, base);
      assert.equal(
        res.headers.get("www-authenticate"),
        `Bearer realm="${base}/auth/token",service="meridian"`,
      );
    }
  });

  test("a user made with the CLI in region a logs in at region b; a token from a works in b", async () => {
    const passwordFile = join(work, "dev-password");
    writeFileSync(passwordFile, `${PASSWORD}\n`);
    const add = await cli(["user", "add", "dev", "--password-file", passwordFile, "--region", "a"]);
    assert.equal(add.code, 0, add.stderr);
    assert.equal((await cli(["project", "set", "team", "--private"])).code, 0);
    const member = await cli(["project", "member", "team", "dev", "developer"]);
    assert.equal(member.code, 0, member.stderr);
    await eventually(
      async () =>
        (await fetch(`${registry("b")}/v2/`, { headers: { authorization: basic("dev", PASSWORD) } }))
          .status === 200,
      20_000,
      100,
    );
    const res = await fetch(
      `${registry("a")}/auth/token?service=meridian&scope=repository:team/app:pull,push`,
      {
        headers: { authorization: basic("dev", PASSWORD) },
      },
    );
    const { token } = (await res.json()) as { token: string };
    const inB = new OciClient(registry("b"), `Bearer ${token}`);
    const config = await inB.pushBlob("team/app", Buffer.from("{}"));
    const put = await inB.pushManifest("team/app", "v1", {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config,
      layers: [],
    });
    assert.equal(put.response.status, 201);
    const users = await cli(["user", "list", "--json"]);
    const listed = JSON.parse(users.stdout) as {
      users: Array<{ name: string; roles: Record<string, string> }>;
    };
    assert.deepEqual(listed.users.find((u) => u.name === "dev")?.roles, { team: "developer" });
  });

  test("through the front door: skopeo logs in, pushes home and pulls back", async () => {
    const layout = join(work, "layout");
    const digest = writeImageLayout(layout, "v1");
    const host = mesh.frontDoor!.replace(/^http:\/\//, "");
    const env = { ...process.env, REGISTRY_AUTH_FILE: join(work, "auth.json") };
    await run("skopeo", ["login", "--tls-verify=false", "-u", "dev", "-p", PASSWORD, host], { env });
    await run(
      "skopeo",
      ["copy", "--dest-tls-verify=false", `oci:${layout}:v1`, `docker://${host}/team/sk:v1`],
      { env },
    );
    const raw = await run(
      "skopeo",
      ["inspect", "--raw", "--tls-verify=false", `docker://${host}/team/sk:v1`],
      { env },
    );
    assert.equal(sha256(Buffer.from(raw.stdout)), digest);
    await assert.rejects(
      run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${host}/team/sk:v1`], {
        env: { ...process.env, REGISTRY_AUTH_FILE: join(work, "nobody.json") },
      }),
      /unauthorized|authentication required|401/i,
    );
  });

  test("the front door still routes writes to the home region (it reads the rules with its service token)", async () => {
    const admin = basic("admin", adminPassword);
    const rule = await fetch(`${registry("a")}/admin/v1/rules`, {
      method: "PUT",
      headers: { authorization: admin, "content-type": "application/json" },
      body: JSON.stringify({ scope: "homed/", tagMerge: "home-region", home: "b" }),
    });
    assert.equal(rule.status, 200, await rule.text());
    const door = new OciClient(mesh.frontDoor!, admin);
    await eventually(
      async () => {
        const res = await door.fetch("/v2/homed/app/blobs/uploads/", {
          method: "POST",
          headers: { "meridian-client-region": "a" },
        });
        await res.arrayBuffer();
        return res.status === 202 && (res.headers.get("location") ?? "").includes("_region=b");
      },
      20_000,
      200,
    );
  });

  test("robots and the audit log from the CLI", async () => {
    const secretFile = join(work, "robot-secret");
    const made = await cli([
      "robot",
      "create",
      "puller",
      "--project",
      "team",
      "--actions",
      "pull",
      "--secret-file",
      secretFile,
      "--expires",
      "2d",
    ]);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /robot robot\$puller valid until/);
    assert.ok(
      !made.stdout.includes(readFileSync(secretFile, "utf8").trim()),
      "the secret went to the file only",
    );
    const robot = new OciClient(
      registry("a"),
      basic("robot$puller", readFileSync(secretFile, "utf8").trim()),
    );
    assert.equal((await robot.fetch("/v2/team/app/manifests/v1")).status, 200);
    assert.equal((await robot.fetch("/v2/team/app/blobs/uploads/", { method: "POST" })).status, 403);
    assert.match((await cli(["robot", "list"])).stdout, /robot\$puller .*team\/\*\*:pull/);
    assert.match((await cli(["whoami"])).stdout, /^admin \(user, system admin\)/);
    await eventually(
      async () => {
        const audit = await cli(["audit", "--actor", "dev", "--json"]);
        if (audit.code !== 0) return false;
        const { records } = JSON.parse(audit.stdout) as {
          records: Array<{ region: string; action: string; repo?: string }>;
        };
        // dev pushed team/app:v1 in b and team/sk:v1 through the front door (routed to a, dev's client region).
        return (
          records.some((r) => r.region === "b" && r.action === "push" && r.repo === "team/app") &&
          records.some((r) => r.action === "push" && r.repo === "team/sk")
        );
      },
      20_000,
      250,
    );
    const denied = await runCli([
      "user",
      "list",
      "--data",
      join(work, "no-such-data"),
      "--mesh",
      join(mesh.dataDir, "mesh.json"),
    ]);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /needs credentials/);
  });
});
