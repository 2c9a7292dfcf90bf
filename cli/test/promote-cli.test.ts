/**
 * Gated promotion (issue 17, item 2) on a real two-region mesh with
 * authentication and a real Distribution as the external destination, through
 * `meridian gate …`, `meridian promote` and the admin API; pulls with skopeo
 * by digest. Signatures are made here with a generated key in cosign's
 * format; the nodes verify them with the public key given by the setting
 * `verification.keys` (MERIDIAN_VERIFICATION_KEYS).
 *
 * Asserts: a signed image passes to region b and is pullable there by
 * digest; a tampered payload, a wrong key and a missing signature are each
 * refused naming the signature gate; a vulnerability report at the severity
 * is refused, below it passes (and is pullable from Distribution), a never
 * scanned image is refused; the annotation and minAge gates; a retry answers
 * the same promotion id without a copy; the record is in the source tag's
 * history, the destination tag's history in region b (replicated), the audit
 * log and the activity feed; an unauthenticated caller and a project admin of the
 * source's project (not a system admin) are refused; a malformed reference,
 * an unknown destination and a bad gate file are clear errors; a webhook
 * receiver subscribed to the source project gets promotion.passed,
 * promotion.failed and scan-gate.refused CloudEvents from the real worker.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { COSIGN_SIGNATURE_ARTIFACT } from "../../protocol/cosign.js";
import { cosignSign, generateCosignKey, type TestKey } from "../../testing/cosign.js";
import { startDistribution } from "../../testing/distribution.js";
import { waitWritable } from "../../testing/faults.js";
import { cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
const SARIF = "application/sarif+json";
let mesh: RunningMesh;
let adminAuth: string;
let creds: string;
let distUrl: string;
let work: string;
let key: TestKey;
let a: OciClient;
/** CloudEvents a webhook receiver got (a subscription of project team to promotion and scan-gate). */
const received: Array<{ type: string; data: { promotion?: { id: string; outcome: string } } }> = [];

const meridian = (args: string[]) => runCli([...args, "--data", mesh.dataDir], 60_000);
/** A POST to region a's admin API; `auth` "" sends no credentials. */
const api = (path: string, body: unknown, auth = adminAuth) =>
  fetch(`${mesh.regions.get("a")!.registry}/admin/v1${path}`, {
    method: "POST",
    headers: { ...(auth === "" ? {} : { authorization: auth }), "content-type": "application/json" },
    body: JSON.stringify(body),
  });
const host = (u: string) => u.replace(/^https?:\/\//, "");

async function gateFile(name: string, body: unknown): Promise<string> {
  const file = join(work, `${name}.json`);
  writeFileSync(file, JSON.stringify(body));
  return file;
}

async function setGate(scope: string, body: unknown): Promise<void> {
  const r = await meridian(["gate", "set", scope, await gateFile(scope.replace(":", "-"), body)]);
  assert.equal(r.code, 0, r.stderr);
}

/** Push an image to region a; returns its digest and manifest descriptor. */
async function image(repo: string, tag: string, annotations?: Record<string, string>) {
  const { digest, manifest } = await a.pushRandomImage(
    repo,
    tag,
    2,
    4096,
    annotations === undefined ? {} : { annotations },
  );
  const size = Buffer.byteLength(JSON.stringify(manifest));
  return { digest, subject: { mediaType: OCI_MANIFEST, digest, size } };
}

/** Attach a cosign signature as a referrer; `tamper` changes the payload after signing. */
async function sign(
  repo: string,
  img: Awaited<ReturnType<typeof image>>,
  signer = key,
  tamper = false,
): Promise<void> {
  const sig = cosignSign(signer.privateKey, repo, img.digest);
  const payload = tamper
    ? Buffer.from(sig.payload.toString().replace('"optional":null', '"optional":{}'))
    : sig.payload;
  await a.pushBlob(repo, payload, sig.layer.mediaType);
  await a.pushBlob(repo, sig.config, "application/vnd.oci.image.config.v1+json");
  const m = JSON.parse(sig.referrerManifest(img.subject).toString());
  m.layers[0] = { ...m.layers[0], digest: sha256(payload), size: payload.length };
  assert.equal(m.artifactType, COSIGN_SIGNATURE_ARTIFACT);
  await a.pushManifest(repo, sha256(Buffer.from(JSON.stringify(m))), m);
}

/** Attach a SARIF report listing findings of these severities (CVSS scores). */
async function report(repo: string, img: Awaited<ReturnType<typeof image>>, scores: number[]): Promise<void> {
  const sarif = Buffer.from(
    JSON.stringify({
      version: "2.1.0",
      runs: [
        {
          tool: { driver: { name: "trivy" } },
          results: scores.map((s, i) => ({
            ruleId: `CVE-${i}`,
            properties: { "security-severity": String(s) },
          })),
        },
      ],
    }),
  );
  const layer = await a.pushBlob(repo, sarif, SARIF);
  const empty = await a.pushBlob(repo, Buffer.from("{}"), "application/vnd.oci.empty.v1+json");
  const m = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: SARIF,
    config: empty,
    layers: [layer],
    subject: img.subject,
  };
  await a.pushManifest(repo, sha256(Buffer.from(JSON.stringify(m))), m);
}

async function promote(args: string[]) {
  return meridian(["promote", ...args, "--region", "a"]);
}

before(async () => {
  work = tempDir(cleanup, "promote-");
  key = generateCosignKey();
  const pub = join(work, "release.pub");
  writeFileSync(pub, key.publicPem);
  const dist = await startDistribution(cleanup);
  distUrl = dist.url;
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  cleanup(async () => {
    receiver.closeAllConnections();
    await new Promise((r) => receiver.close(r));
  });
  mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"], {
    MERIDIAN_VERIFICATION_KEYS: `release=${pub}`,
    MERIDIAN_WEBHOOK_ALLOW_LOOPBACK: "true",
  });
  const password = readFileSync(mesh.adminPasswordFile!, "utf8").trim();
  creds = `admin:${password}`;
  adminAuth = `Basic ${Buffer.from(creds).toString("base64")}`;
  for (const r of mesh.regions.values()) await waitWritable(r.registry);
  a = new OciClient(mesh.regions.get("a")!.registry, adminAuth);
  const add = await meridian(["endpoint", "add", "cloud", "--url", distUrl]);
  assert.equal(add.code, 0, add.stderr);
  await setGate("destination:b", { signature: { keys: ["release"] } });
  const hook = await fetch(`${mesh.regions.get("a")!.registry}/admin/v1/webhooks/promotions`, {
    method: "PUT",
    headers: { authorization: adminAuth, "content-type": "application/json" },
    body: JSON.stringify({
      url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`,
      project: "team",
      events: ["promotion", "scan-gate"],
    }),
  });
  assert.equal(hook.status, 200, await hook.text());
});

describe("meridian promote", () => {
  test("a signed image passes to region b, is pullable there by digest, and a retry answers the same promotion", async () => {
    const img = await image("team/app", "1.0");
    await sign("team/app", img);
    const r = await promote(["team/app:1.0", "--to", "b/prod/app:1.0", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const first = JSON.parse(r.stdout);
    assert.equal(first.outcome, "passed");
    assert.equal(first.repeated, false);
    assert.equal(first.gates[0].gate, "signature");
    assert.ok(first.copied.referrers >= 1, "the signature came along");
    const b = mesh.regions.get("b")!.registry;
    const out = join(work, "pulled-b");
    await run("skopeo", [
      "copy",
      "--src-tls-verify=false",
      "--src-creds",
      creds,
      `docker://${host(b)}/prod/app@${img.digest}`,
      `oci:${out}:x`,
    ]);
    // skopeo checked the manifest against the digest it pulled by; the bytes it sees there are the image's.
    const raw = await run("skopeo", [
      "inspect",
      "--raw",
      "--tls-verify=false",
      "--creds",
      creds,
      `docker://${host(b)}/prod/app@${img.digest}`,
    ]);
    assert.equal(sha256(Buffer.from(raw.stdout)), img.digest);
    const tagThere = await fetch(`${b}/v2/prod/app/manifests/1.0`, {
      method: "HEAD",
      headers: { authorization: adminAuth, accept: OCI_MANIFEST },
    });
    assert.equal(tagThere.headers.get("docker-content-digest"), img.digest, "the tag is set in region b");

    const again = await promote(["team/app:1.0", "--to", "b/prod/app:1.0", "--json"]);
    assert.equal(again.code, 0, again.stderr);
    const second = JSON.parse(again.stdout);
    assert.equal(second.promotionId, first.promotionId);
    assert.equal(second.repeated, true);
    assert.equal(second.copied, undefined);

    const history = await meridian(["tag", "history", "team/app:1.0", "--region", "a"]);
    assert.equal(history.code, 0, history.stderr);
    assert.match(history.stdout, new RegExp(`promotion ${first.promotionId} passed`));
    // The record replicates: the destination tag's history in region b lists it too.
    await eventually(
      async () => {
        const there = await meridian(["tag", "history", "prod/app:1.0", "--region", "b"]);
        return there.code === 0 && there.stdout.includes(`promotion ${first.promotionId} passed`);
      },
      30_000,
      250,
    );
    // The audit log records the promotion request (who, when, what it asked for).
    await eventually(
      async () => {
        const audit = await fetch(`${mesh.regions.get("a")!.registry}/admin/v1/audit?limit=200`, {
          headers: { authorization: adminAuth },
        });
        return /POST \/admin\/v1\/promotions/.test(await audit.text());
      },
      10_000,
      250,
    );
    const activity = await fetch(`${mesh.regions.get("a")!.registry}/admin/v1/activity?kind=promotion`, {
      headers: { authorization: adminAuth },
    });
    const items = ((await activity.json()) as { items: Array<{ detail: { promotionId: string } }> }).items;
    assert.ok(items.some((i) => i.detail.promotionId === first.promotionId));
  });

  test("a missing signature, a wrong key and a tampered payload are each refused naming the signature gate", async () => {
    await image("team/app", "unsigned");
    const wrong = await image("team/app", "wrong");
    await sign("team/app", wrong, generateCosignKey());
    const tampered = await image("team/app", "tampered");
    await sign("team/app", tampered, key, true);
    for (const tag of ["unsigned", "wrong", "tampered"]) {
      const r = await promote([`team/app:${tag}`, "--to", "b/prod/app"]);
      assert.equal(r.code, 1, `${tag}: ${r.stdout}`);
      assert.match(r.stderr, /promotion refused by 1 gate/);
      assert.match(r.stderr, /\[destination:b\] signature: /, tag);
      const tagThere = await fetch(`${mesh.regions.get("b")!.registry}/v2/prod/app/manifests/${tag}`, {
        method: "HEAD",
        headers: { authorization: adminAuth, accept: OCI_MANIFEST },
      });
      assert.equal(tagThere.status, 404, `${tag} was not tagged in b`);
    }
    const res = await api("/promotions", { source: "team/app:unsigned", to: "b" });
    assert.equal(res.status, 403);
    const body = (await res.json()) as { errors: Array<{ code: string; detail: { outcome: string } }> };
    assert.equal(body.errors[0]!.code, "DENIED");
    assert.equal(body.errors[0]!.detail.outcome, "failed");
  });

  test("vulnerability gate to an endpoint: at the severity refused, below passes and is pullable there, never scanned refused", async () => {
    await setGate("destination:cloud", { vulnerabilities: { artifactTypes: [SARIF], failAt: "high" } });
    const high = await image("team/svc", "high");
    await report("team/svc", high, [7.5, 2]);
    const low = await image("team/svc", "low");
    await report("team/svc", low, [3.1]);
    await image("team/svc", "unscanned");
    const refused = await promote(["team/svc:high", "--to", "cloud"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /vulnerabilities: 1 finding\(s\) at or above high: CVE-0 \(high\)/);
    const never = await promote(["team/svc:unscanned", "--to", "cloud"]);
    assert.equal(never.code, 1);
    assert.match(never.stderr, /vulnerabilities: never scanned/);
    const passed = await promote(["team/svc:low", "--to", "cloud"]);
    assert.equal(passed.code, 0, passed.stderr);
    const out = join(work, "pulled-cloud");
    await run("skopeo", [
      "copy",
      "--src-tls-verify=false",
      `docker://${host(distUrl)}/team/svc@${low.digest}`,
      `oci:${out}:x`,
    ]);
    const tag = await run("skopeo", [
      "inspect",
      "--raw",
      "--tls-verify=false",
      `docker://${host(distUrl)}/team/svc:low`,
    ]);
    assert.equal(sha256(Buffer.from(tag.stdout)), low.digest, "the endpoint's tag is set");
  });

  test("annotation and minAge gates of the destination project, to another repository of the region", async () => {
    await setGate("project:prod", {
      annotations: { "org.opencontainers.image.source": "*" },
      minAge: { seconds: 3600 },
    });
    await image("team/web", "1.0");
    const refused = await promote(["team/web:1.0", "--to", "prod/web:1.0"]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /\[project:prod\] annotations: org\.opencontainers\.image\.source is missing/,
    );
    assert.match(refused.stderr, /\[project:prod\] minAge: tag held its digest for \d+ s, less than 3600 s/);
    await setGate("project:prod", {
      annotations: { "org.opencontainers.image.source": "*" },
      minAge: { seconds: 0 },
    });
    const img = await image("team/web", "2.0", {
      "org.opencontainers.image.source": "https://git.example/web",
    });
    const passed = await promote(["team/web:2.0", "--to", "prod/web:2.0"]);
    assert.equal(passed.code, 0, passed.stderr);
    const there = await fetch(`${mesh.regions.get("a")!.registry}/v2/prod/web/manifests/2.0`, {
      method: "HEAD",
      headers: { authorization: adminAuth, accept: OCI_MANIFEST },
    });
    assert.equal(there.headers.get("docker-content-digest"), img.digest);
  });

  test("refusals of the caller and of bad input", async () => {
    assert.equal((await api("/promotions", { source: "team/app:1.0", to: "b" }, "")).status, 401);
    const wrongPassword = `Basic ${Buffer.from("admin:wrong").toString("base64")}`;
    assert.equal((await api("/promotions", { source: "team/app:1.0", to: "b" }, wrongPassword)).status, 401);
    // A user who is not a system admin (promotion acts with the mesh's rights: node/http/admin/promotions.ts).
    const devPassword = "a developer's password";
    const made = await fetch(`${mesh.regions.get("a")!.registry}/admin/v1/users/dev`, {
      method: "PUT",
      headers: { authorization: adminAuth, "content-type": "application/json" },
      body: JSON.stringify({ password: devPassword }),
    });
    assert.equal(made.status, 200, await made.text());
    const member = await fetch(`${mesh.regions.get("a")!.registry}/admin/v1/projects/team/members/dev`, {
      method: "PUT",
      headers: { authorization: adminAuth, "content-type": "application/json" },
      body: JSON.stringify({ role: "projectAdmin" }),
    });
    assert.equal(member.status, 200, await member.text());
    const dev = `Basic ${Buffer.from(`dev:${devPassword}`).toString("base64")}`;
    const refused = await api("/promotions", { source: "team/app:1.0", to: "b" }, dev);
    assert.equal(refused.status, 403);
    assert.match(await refused.text(), /a system admin is required/);
    const badRef = await api("/promotions", { source: "team/app", to: "b" });
    assert.equal(badRef.status, 400);
    assert.match(await badRef.text(), /want REPO:TAG/);
    const unknownTag = await api("/promotions", { source: "team/app:nope", to: "b" });
    assert.equal(unknownTag.status, 404);
    const unknownDest = await promote(["team/app:1.0", "--to", "Nowhere"]);
    assert.equal(unknownDest.code, 1);
    assert.match(unknownDest.stderr, /no such region or endpoint/);
    const noTo = await promote(["team/app:1.0"]);
    assert.equal(noTo.code, 2);
    const badTimeout = await promote(["team/app:1.0", "--to", "b", "--timeout", "0"]);
    assert.equal(badTimeout.code, 2);
    assert.match(badTimeout.stderr, /--timeout SEC/);
    const bad = await meridian([
      "gate",
      "set",
      "destination:b",
      await gateFile("bad", { signature: { keys: [] }, vulnerabilities: { failAt: "severe" }, extra: 1 }),
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /gates\.signature\.keys/);
    assert.match(bad.stderr, /"severe" is not one of low, medium, high, critical/);
    assert.match(bad.stderr, /gates\.vulnerabilities\.artifactTypes: missing/);
    assert.match(bad.stderr, /unknown key "extra"/);
    const badScope = await meridian(["gate", "set", "region:b", await gateFile("ok", {})]);
    assert.equal(badScope.code, 2);
    const list = await meridian(["gate", "list", "--json"]);
    const scopes = (JSON.parse(list.stdout) as { gates: Array<{ scope: string }> }).gates.map((g) => g.scope);
    assert.ok(scopes.includes("destination:b"), `the bad file changed nothing: ${list.stdout}`);
  });

  test("promotions are announced as CloudEvents: passed, failed, and scan-gate refused", async () => {
    await eventually(
      () => {
        const types = new Set(received.map((e) => e.type));
        return [
          "io.meridian.promotion.passed",
          "io.meridian.promotion.failed",
          "io.meridian.scan-gate.refused",
        ].every((t) => types.has(t));
      },
      30_000,
      250,
    );
    for (const e of received) {
      assert.ok(e.data.promotion !== undefined, "each names its promotion");
      assert.equal(e.type === "io.meridian.promotion.passed", e.data.promotion.outcome === "passed");
    }
  });
});
