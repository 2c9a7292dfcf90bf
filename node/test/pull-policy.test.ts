/**
 * Block-pull policies (issue 18, item 3) on a real region with auth
 * (`meridian up --auth`), real cosign-format signatures (testing/cosign.ts)
 * and real clients: a project's policy refuses GETs of manifests without a
 * verified signature, with a vulnerability report at or above a severity,
 * or never scanned; the refusal is 403 DENIED naming the project's policy and
 * the gate, recorded in the audit log with the reason; system admins and
 * the named robots are exempt; a platform's manifest pulled by digest passes
 * through its signed index; HEAD and blobs are not judged; only system
 * admins set policies, and bad policies are refused with every problem.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { cosignSign, generateCosignKey } from "../../testing/cosign.js";
import { cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { errorCode, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
const release = generateCosignKey();
const VULN = "application/vnd.example.vulnerability-report+json";
let mesh: RunningMesh;
let registry: string;
let adminAuth: string;
let admin: OciClient;
let dir: string;
const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString("base64")}`;
const sha = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

async function api(method: string, path: string, json?: unknown, authorization = adminAuth) {
  const res = await fetch(`${registry}/admin/v1${path}`, {
    method,
    headers: { authorization, ...(json === undefined ? {} : { "content-type": "application/json" }) },
    ...(json === undefined ? {} : { body: JSON.stringify(json) }),
  });
  const text = await res.text();
  return { status: res.status, body: (text === "" ? {} : JSON.parse(text)) as Record<string, unknown> };
}

/** Sign `subject` with `key` and attach the signature as an OCI 1.1 referrer. */
async function sign(
  repo: string,
  subject: { digest: string; size: number; mediaType?: string },
  key = release,
) {
  const sig = cosignSign(key.privateKey, `${registry.replace(/^https?:\/\//, "")}/${repo}`, subject.digest);
  await admin.pushBlob(repo, sig.payload, sig.layer.mediaType);
  await admin.pushBlob(repo, sig.config, OCI_CONFIG);
  const bytes = sig.referrerManifest({
    mediaType: subject.mediaType ?? OCI_MANIFEST,
    digest: subject.digest,
    size: subject.size,
  });
  await admin.pushManifest(repo, sha(bytes), bytes.toString());
}

/** Attach a SARIF vulnerability report listing `findings` ([rule id, CVSS score]). */
async function report(
  repo: string,
  subject: { digest: string; size: number },
  findings: Array<[string, string]>,
) {
  const doc = Buffer.from(
    JSON.stringify({
      version: "2.1.0",
      runs: [
        {
          tool: { driver: { name: "test-scanner" } },
          results: findings.map(([id, cvss]) => ({ ruleId: id, properties: { "security-severity": cvss } })),
        },
      ],
    }),
  );
  const layer = await admin.pushBlob(repo, doc, "application/sarif+json");
  const empty = await admin.pushBlob(repo, Buffer.from("{}"), "application/vnd.oci.empty.v1+json");
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: VULN,
    config: { ...empty, mediaType: "application/vnd.oci.empty.v1+json" },
    layers: [layer],
    subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.size },
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  await admin.pushManifest(repo, sha(bytes), bytes.toString());
}

async function image(repo: string, tag: string) {
  const img = await admin.pushRandomImage(repo, tag, 1, 256);
  return { digest: img.digest, size: Buffer.byteLength(JSON.stringify(img.manifest)) };
}

const get = (who: string, repo: string, ref: string, method = "GET") =>
  fetch(`${registry}/v2/${repo}/manifests/${ref}`, {
    method,
    headers: { authorization: who, accept: `${OCI_MANIFEST}, ${OCI_INDEX}` },
  });

let dev: string;
let scanner: string;
let ci: string;
let signed: { digest: string; size: number };
let unsigned: { digest: string; size: number };

before(async () => {
  dir = tempDir(cleanup, "meridian-pull-policy-");
  writeFileSync(join(dir, "release.pub"), release.publicPem);
  mesh = await startMesh(cleanup, ["a"], undefined, ["--auth"], {
    MERIDIAN_VERIFICATION_KEYS: JSON.stringify({ release: join(dir, "release.pub") }),
  });
  registry = mesh.regions.get("a")!.registry;
  adminAuth = basic("admin", readFileSync(mesh.adminPasswordFile!, "utf8").trim());
  admin = new OciClient(registry, adminAuth);
  assert.equal((await api("PUT", "/projects/prod", { public: false })).status, 200);
  assert.equal((await api("PUT", "/users/dev", { password: "dev-password-1" })).status, 200);
  assert.equal((await api("PUT", "/projects/prod/members/dev", { role: "developer" })).status, 200);
  dev = basic("dev", "dev-password-1");
  for (const name of ["scanner", "ci"]) {
    const r = await api("POST", "/robots", { name, grants: [{ project: "prod", actions: ["pull"] }] });
    assert.equal(r.status, 201);
    const auth = basic(`robot$${name}`, r.body.secret as string);
    if (name === "scanner") scanner = auth;
    else ci = auth;
  }
  signed = await image("prod/app", "signed");
  await sign("prod/app", signed);
  unsigned = await image("prod/app", "unsigned");
});

describe("block-pull policies", () => {
  test("who may set a policy, and bad policies refused with every problem", async () => {
    const policy = { gates: { signature: { keys: ["release"] } }, exempt: { robots: ["robot$scanner"] } };
    assert.equal((await api("PUT", "/pull-policies/prod", policy, dev)).status, 403, "a developer");
    assert.equal((await api("PUT", "/pull-policies/prod", policy, "")).status, 401, "anonymous");
    const bad = await api("PUT", "/pull-policies/prod", {
      gates: { signature: { keys: ["nobody"] }, minAge: { seconds: 5 }, colour: 1 },
      exempt: { robots: ["ci"] },
    });
    assert.equal(bad.status, 400);
    const errors = (bad.body.errors as Array<{ detail: { errors: string[] } }>)[0]!.detail.errors.join("\n");
    assert.match(errors, /minAge: not a pull gate/);
    assert.match(errors, /unknown key "colour"/);
    assert.match(errors, /exempt\.robots: "ci" is not a robot name/);
    const unknownKey = await api("PUT", "/pull-policies/prod", {
      gates: { signature: { keys: ["nobody"] } },
    });
    assert.equal(unknownKey.status, 400);
    assert.match(JSON.stringify(unknownKey.body), /nobody is not a key of this node's verification\.keys/);
    assert.equal((await api("PUT", "/pull-policies/prod", { gates: {} })).status, 400, "no gate at all");
    assert.equal((await api("DELETE", "/pull-policies/prod")).status, 404, "nothing to delete yet");
  });

  test("a signature policy set with the CLI: unsigned refused with DENIED naming the policy, signed pulled", async () => {
    const file = join(dir, "prod-policy.yaml");
    writeFileSync(file, "gates:\n  signature:\n    keys: [release]\nexempt:\n  robots: [robot$scanner]\n");
    const set = await runCli(["pull-policy", "set", "prod", file, "--data", mesh.dataDir]);
    assert.equal(set.code, 0, set.stderr);
    const list = await runCli(["pull-policy", "list", "--data", mesh.dataDir]);
    assert.match(list.stdout, /prod .*signature.*system admins, robot\$scanner/);
    await eventually(async () => (await get(dev, "prod/app", "unsigned")).status === 403, 5_000, 100);
    const refused = await get(dev, "prod/app", "unsigned");
    assert.equal(await errorCode(refused.clone()), "DENIED");
    assert.match(await refused.text(), /pull policy of project prod: signature: /);
    assert.equal((await get(dev, "prod/app", "signed")).status, 200, "the signed image");
    assert.equal((await get(dev, "prod/app", unsigned.digest)).status, 403, "by digest too");
    assert.equal((await get(dev, "prod/app", "unsigned", "HEAD")).status, 200, "HEAD is not judged");
    // Exempt: the named robot and system admins; not the other robot.
    assert.equal((await get(scanner, "prod/app", "unsigned")).status, 200, "exempted robot");
    assert.equal((await get(adminAuth, "prod/app", "unsigned")).status, 200, "system admin");
    assert.equal((await get(ci, "prod/app", "unsigned")).status, 403, "robot not exempted");
    // A tampered signature (signed by another key) is no signature.
    const forged = await image("prod/app", "forged");
    await sign("prod/app", forged, generateCosignKey());
    assert.equal((await get(dev, "prod/app", "forged")).status, 403);
    // The metric counts refusals by gate.
    const metrics = await (await fetch(`${registry}/metrics`)).text();
    assert.match(metrics, /meridian_pulls_refused_total\{[^}]*reason="signature"[^}]*\} [1-9]/);
  });

  test("skopeo as the developer: the unsigned image cannot be copied out, the signed one can", async () => {
    const host = registry.replace(/^https?:\/\//, "");
    const out = join(dir, "copies");
    const copy = (tag: string) =>
      run(
        "skopeo",
        [
          "copy",
          "--src-tls-verify=false",
          "--src-creds",
          "dev:dev-password-1",
          `docker://${host}/prod/app:${tag}`,
          `oci:${out}:${tag}`,
        ],
        { timeout: 60_000 },
      ).then(
        () => ({ ok: true, stderr: "" }),
        (err: { stderr?: string }) => ({ ok: false, stderr: err.stderr ?? "" }),
      );
    assert.equal((await copy("signed")).ok, true);
    const refused = await copy("unsigned");
    assert.equal(refused.ok, false);
    assert.match(refused.stderr, /denied|pull policy/i);
  });

  test("a platform pulled by digest passes through its signed index", async () => {
    const amd = await image("prod/multi", "amd64-only");
    const arm = await image("prod/multi", "arm64-only");
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { mediaType: OCI_MANIFEST, ...amd, platform: { os: "linux", architecture: "amd64" } },
        { mediaType: OCI_MANIFEST, ...arm, platform: { os: "linux", architecture: "arm64" } },
      ],
    };
    const pushed = await admin.pushManifest("prod/multi", "v1", index, OCI_INDEX);
    await sign("prod/multi", { digest: pushed.digest, size: pushed.bytes.byteLength, mediaType: OCI_INDEX });
    assert.equal((await get(dev, "prod/multi", "v1")).status, 200, "the signed index");
    assert.equal((await get(dev, "prod/multi", amd.digest)).status, 200, "its child, by digest");
    const loner = await image("prod/multi", "loner");
    assert.equal((await get(dev, "prod/multi", loner.digest)).status, 403, "a manifest in no signed index");
  });

  test("a vulnerability policy: findings at or above the severity refused, below pulled, never scanned refused", async () => {
    const policy = {
      gates: { vulnerabilities: { artifactTypes: [VULN], failAt: "high" } },
      exempt: { systemAdmins: false },
    };
    assert.equal((await api("PUT", "/pull-policies/prod", policy)).status, 200);
    const clean = await image("prod/scanned", "clean");
    await report("prod/scanned", clean, [["CVE-2024-0001", "2.0"]]);
    const badImage = await admin.pushRandomImage("prod/scanned", "bad", 1, 256);
    const bad = { digest: badImage.digest, size: Buffer.byteLength(JSON.stringify(badImage.manifest)) };
    const badLayer = badImage.layers[0]!.digest;
    await report("prod/scanned", bad, [["CVE-2024-9999", "9.8"]]);
    await image("prod/scanned", "never");
    // The signature policy refused "clean" too: wait for the new policy (nodes re-read it every second).
    let last = "";
    await eventually(
      async () => {
        const res = await get(dev, "prod/scanned", "clean");
        last = await res.text();
        return res.status === 200;
      },
      5_000,
      100,
    ).catch((err) => assert.fail(`${err}: ${last}`));
    assert.equal((await get(dev, "prod/scanned", "never")).status, 403);
    const refused = await get(dev, "prod/scanned", "bad");
    assert.equal(refused.status, 403);
    assert.match(await refused.text(), /vulnerabilities: .*CVE-2024-9999/);
    assert.match(await (await get(dev, "prod/scanned", "never")).text(), /never scanned/);
    // systemAdmins: false: the admin is judged too.
    assert.equal((await get(adminAuth, "prod/scanned", "bad")).status, 403);
    // Blobs are not judged (the manifest is the gate).
    assert.equal(
      (await fetch(`${registry}/v2/prod/scanned/blobs/${badLayer}`, { headers: { authorization: dev } }))
        .status,
      200,
    );
  });

  test("every refusal is in the audit log with its reason; deleting the policy lifts it", async () => {
    const audit = await api("GET", "/audit?action=pull&actor=dev");
    const records = audit.body.records as Array<{ status: number; detail?: string; reference?: string }>;
    const refusals = records.filter((r) => r.status === 403);
    assert.ok(refusals.length >= 3, JSON.stringify(records.slice(0, 5)));
    assert.ok(refusals.every((r) => /pull policy of project prod/.test(r.detail ?? "")));
    const del = await runCli(["pull-policy", "delete", "prod", "--data", mesh.dataDir]);
    assert.equal(del.code, 0, del.stderr);
    await eventually(async () => (await get(dev, "prod/scanned", "bad")).status === 200, 5_000, 100);
    assert.equal((await get(dev, "prod/app", "unsigned")).status, 200);
  });
});
