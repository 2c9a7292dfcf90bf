/**
 * External endpoints (issue 17, item 1) across a real two-region mesh with
 * authentication, through `meridian endpoint …` and the admin API: added in
 * a, replicated to b, checked against a real Distribution with htpasswd auth
 * (the credentials read from the file where the command runs; never in any
 * answer), an image copied from it into region a with copyClosure as a worker
 * will, and replicated to b; deleted everywhere; refusals: a bad name, bad URLs, a missing or
 * malformed credentials file, --insecure on http, an unknown body field, a
 * user who is not a system admin (403).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { copyClosure } from "../../mesh-client/oci-copy.js";
import { readCredentialsFile } from "../../mesh-client/oci-credentials.js";
import { OciRegistryClient } from "../../mesh-client/oci-registry-client.js";
import { digestOf } from "../../protocol/digest.js";
import { startDistribution } from "../../testing/distribution.js";
import { waitWritable } from "../../testing/faults.js";
import { cleanupStack, eventually, runCli } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";

const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
let adminAuth: string;
let distUrl: string;

const SECRET = "dist-s3cret-pw";
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const meridian = (args: string[], env?: Record<string, string>) =>
  runCli([...args, "--data", mesh.dataDir], 30_000, env);
const api = (region: string, method: string, path: string, body?: unknown, auth = adminAuth) =>
  fetch(`${mesh.regions.get(region)!.registry}/admin/v1${path}`, {
    method,
    headers: { authorization: auth, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });

interface Row {
  name: string;
  url: string;
  credentialsFile?: string;
  insecure: boolean;
}
async function list(region: string): Promise<Row[]> {
  const r = await meridian(["endpoint", "list", "--region", region, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(!r.stdout.includes(SECRET), "no secret in any answer");
  return (JSON.parse(r.stdout) as { endpoints: Row[] }).endpoints;
}

before(async () => {
  const dist = await startDistribution(cleanup, { user: "ci", password: SECRET });
  distUrl = dist.url;
  mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"]);
  adminAuth = basic("admin", readFileSync(mesh.adminPasswordFile!, "utf8").trim());
  for (const r of mesh.regions.values()) await waitWritable(r.registry);
});

describe("meridian endpoint", () => {
  test("added in a, replicated to b, checked with its credentials file, deleted everywhere", async () => {
    const creds = join(mesh.dataDir, "onprem.creds");
    writeFileSync(creds, `ci:${SECRET}\n`, { mode: 0o600 });
    const add = await meridian([
      "endpoint",
      "add",
      "onprem",
      "--url",
      distUrl,
      "--credentials-file",
      creds,
      "--region",
      "a",
    ]);
    assert.equal(add.code, 0, add.stderr);
    assert.equal(add.stdout, `endpoint onprem set: ${distUrl}\n`);
    assert.equal(add.stderr, "", "a 0600 file: no warning");
    await eventually(async () => (await list("b")).some((e) => e.name === "onprem"), 30_000, 200);
    assert.deepEqual(
      (await list("b")).map(({ name, url, credentialsFile, insecure }) => ({
        name,
        url,
        credentialsFile,
        insecure,
      })),
      [{ name: "onprem", url: distUrl, credentialsFile: creds, insecure: false }],
    );
    const table = await meridian(["endpoint", "list", "--region", "b"]);
    assert.match(
      table.stdout,
      new RegExp(`^onprem +${distUrl.replace(/[.]/g, "\\.")} +${creds} +system CAs`, "m"),
    );
    const one = await api("b", "GET", "/endpoints/onprem");
    assert.equal(one.status, 200);
    assert.ok(!(await one.text()).includes(SECRET));
    // The audit trail of the change holds no secret either.
    const audit = await api("a", "GET", "/audit?limit=50");
    if (audit.status === 200) assert.ok(!(await audit.text()).includes(SECRET));

    const check = await meridian(["endpoint", "check", "onprem", "--region", "b"]);
    assert.equal(check.code, 0, check.stderr);
    assert.equal(check.stdout, `endpoint onprem answers at ${distUrl}\n`);

    // What a worker will do with it: the endpoint as stored, its secret from the file here,
    // an image copied into region a (an OCI registry like any other, with its own auth), and
    // replicated from there to b like any push.
    const stored = (await (await api("b", "GET", "/endpoints/onprem")).json()) as Row;
    const onprem = new OciRegistryClient({
      url: stored.url,
      credentials: readCredentialsFile(stored.credentialsFile!).credentials,
    });
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
    const layer = gzipSync(randomBytes(4000));
    for (const b of [config, layer])
      await onprem.pushBlob("corp/app", { digest: digestOf(b), size: b.length }, async () => b);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: {
          mediaType: "application/vnd.oci.image.config.v1+json",
          digest: digestOf(config),
          size: config.length,
        },
        layers: [
          {
            mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
            digest: digestOf(layer),
            size: layer.length,
          },
        ],
      }),
    );
    await onprem.putManifest("corp/app", "1.0", {
      bytes: manifest,
      mediaType: OCI_MANIFEST,
      digest: digestOf(manifest),
    });
    const regionA = new OciRegistryClient({
      url: mesh.regions.get("a")!.registry,
      credentials: { username: "admin", password: readFileSync(mesh.adminPasswordFile!, "utf8").trim() },
    });
    const copied = await copyClosure(onprem, regionA, { repository: "corp/app", reference: "1.0" });
    assert.equal(copied.digest, digestOf(manifest));
    assert.equal(copied.blobsCopied, 2);
    const regionB = new OciRegistryClient({
      url: mesh.regions.get("b")!.registry,
      credentials: { username: "admin", password: readFileSync(mesh.adminPasswordFile!, "utf8").trim() },
    });
    await eventually(
      async () => (await regionB.getManifest("corp/app", "1.0"))?.digest === digestOf(manifest),
      30_000,
      200,
    );

    // Wrong credentials (a JSON file this time, readable by others: a warning): a clear refusal.
    const wrong = join(mesh.dataDir, "wrong.json");
    writeFileSync(wrong, JSON.stringify({ username: "ci", password: "not-it" }), { mode: 0o644 });
    const addWrong = await meridian([
      "endpoint",
      "add",
      "wrong",
      "--url",
      distUrl,
      "--credentials-file",
      wrong,
    ]);
    assert.equal(addWrong.code, 0, addWrong.stderr);
    assert.match(addWrong.stderr, /readable by group or others; chmod 600 it/);
    const bad = await meridian(["endpoint", "check", "wrong"]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /401 UNAUTHORIZED \(credentials refused\)/);

    const del = await meridian(["endpoint", "delete", "onprem", "--region", "a"]);
    assert.equal(del.code, 0, del.stderr);
    await eventually(async () => !(await list("b")).some((e) => e.name === "onprem"), 30_000, 200);
    assert.equal((await api("b", "GET", "/endpoints/onprem")).status, 404);
    const again = await meridian(["endpoint", "delete", "onprem"]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /endpoint onprem not found/);
  });

  test("--insecure is for https only and shows in the list; --ca-file and --insecure exclude each other", async () => {
    const http = await meridian(["endpoint", "add", "lab", "--url", distUrl, "--insecure"]);
    assert.notEqual(http.code, 0);
    assert.match(http.stderr, /insecure: only for https/);
    const add = await meridian(["endpoint", "add", "lab", "--url", "https://lab.example:5443", "--insecure"]);
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /TLS verification off: labs only/);
    assert.match(
      (await meridian(["endpoint", "list"])).stdout,
      /^lab +https:\/\/lab\.example:5443 +- +INSECURE/m,
    );
    const both = await meridian([
      "endpoint",
      "add",
      "lab2",
      "--url",
      "https://x.example",
      "--insecure",
      "--ca-file",
      "/etc/hosts",
    ]);
    assert.equal(both.code, 2);
  });

  test("refusals: names, URLs, credentials files, unknown fields, and users who are not system admins", async () => {
    for (const [args, message] of [
      [["Bad_Name", "--url", "https://x.example"], /invalid endpoint name/],
      [["x", "--url", "ftp://x.example"], /want http or https/],
      [["x", "--url", "https://user:pw@x.example"], /credentials belong in a credentials file/],
      [["x", "--url", "https://x.example/v2/../admin"], /scheme, host and port only/],
      [["x", "--url", "https://x.example?a=b"], /scheme, host and port only/],
      [
        ["x", "--url", "https://x.example", "--credentials-file", "/nonexistent/creds"],
        /credentials file .*ENOENT/,
      ],
      [["x", "--url", "https://x.example", "--ca-file", "/etc/hostname"], /no PEM certificate/],
    ] as const) {
      const r = await meridian(["endpoint", "add", ...args]);
      assert.notEqual(r.code, 0, args.join(" "));
      assert.match(r.stderr, message, args.join(" "));
    }
    const empty = join(mesh.dataDir, "empty.creds");
    writeFileSync(empty, "\n", { mode: 0o600 });
    const e = await meridian([
      "endpoint",
      "add",
      "x",
      "--url",
      "https://x.example",
      "--credentials-file",
      empty,
    ]);
    assert.match(e.stderr, /credentials file is empty/);
    assert.equal((await api("a", "GET", "/endpoints/x")).status, 404, "nothing of a refusal is visible");

    const unknown = await api("a", "PUT", "/endpoints/x", { url: "https://x.example", password: "no" });
    assert.equal(unknown.status, 400);
    assert.match(await unknown.text(), /password/);
    const relative = await api("a", "PUT", "/endpoints/x", {
      url: "https://x.example",
      credentialsFile: "creds",
    });
    assert.equal(relative.status, 400);

    const user = await api("a", "PUT", "/users/dana", { password: "dana-password-1" });
    assert.equal(user.status, 200, await user.text());
    const dana = basic("dana", "dana-password-1");
    assert.equal((await api("a", "PUT", "/endpoints/x", { url: "https://x.example" }, dana)).status, 403);
    assert.equal((await api("a", "GET", "/endpoints", undefined, dana)).status, 403);
    assert.equal((await api("a", "DELETE", "/endpoints/lab", undefined, dana)).status, 403);
  });
});
