/**
 * Replication policies with external endpoints (issue 17, item 1), against
 * real processes: two regions (nats-server, node, peer, worker each) and a
 * real CNCF Distribution 2.8 (htpasswd auth; no Referrers API, so the
 * referrers tag schema) behind a chaos/ TcpProxy, playing the on-prem
 * registry. Everything is set through the admin API as operators do.
 *
 * One mesh for the file; steps run in order: invalid policies refused;
 * export on push with a cosign signature referrer (the tag schema at
 * Distribution), under a bandwidth budget; a manual import of a filtered
 * set, which then replicates to the other region; wrong credentials; an
 * undefined endpoint; the endpoint down while pushes go on (regions keep
 * replicating), then back: everything arrives.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { TcpProxy } from "../../chaos/tcp-proxy.js";
import { endpointLinkFigures, parseProm } from "../../mesh-client/mesh-status.js";
import { OciRegistryClient } from "../../mesh-client/oci-registry-client.js";
import { digestOf } from "../../protocol/digest.js";
import { cosignSign, generateCosignKey } from "../../testing/cosign.js";
import { type Distribution, startDistribution } from "../../testing/distribution.js";
import { sleep } from "../../testing/faults.js";
import { type After, cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../../testing/mesh.js";
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";
import { streamEvents } from "../../testing/streams.js";
import { serverCerts } from "../../testing/tls.js";

let mesh: ProxiedMesh;
let cleanup: After;
let dist: Distribution;
let proxy: TcpProxy;
/** Distribution as the test reads and writes it directly (not through the proxy). */
let onprem: OciRegistryClient;
let dir: string;
const USER = "meridian";
const PASSWORD = "s3cret-pass";
const BUDGET = 200 * 1024;

const client = (region: string) => new OciClient(mesh.regions.get(region)!.registry);

async function adminSend(region: string, method: string, path: string, body?: unknown): Promise<Response> {
  return client(region).fetch(`/admin/v1${path}`, {
    method,
    ...(body === undefined
      ? {}
      : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
  });
}

async function ok(res: Response): Promise<Record<string, unknown>> {
  const text = await res.text();
  assert.ok(res.status >= 200 && res.status < 300, `${res.status}: ${text}`);
  return text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
}

/** A run's record as the admin API shows it, as text ("" until recorded). */
async function runText(name: string, runId: unknown): Promise<string> {
  const res = await adminSend("a", "GET", `/policies/${name}/runs/${String(runId)}`);
  return res.status === 200 ? await res.text() : "";
}

async function setPolicy(name: string, policy: Record<string, unknown>): Promise<void> {
  await ok(await adminSend("a", "PUT", `/policies/${name}`, policy));
}

/** The digest `region` shows for repo:ref (undefined: absent). */
async function digestAt(region: string, repo: string, ref: string): Promise<string | undefined> {
  const res = await client(region).fetch(`/v2/${repo}/manifests/${ref}`, {
    method: "HEAD",
    headers: { accept: OCI_MANIFEST, "cache-control": "only-if-cached" },
  });
  return res.status === 200 ? (res.headers.get("docker-content-digest") ?? undefined) : undefined;
}

/** Wait for `check`; on a timeout the error carries the worker's log of `region`. */
async function until(what: string, check: () => Promise<boolean>, region = "a", ms = 45_000): Promise<void> {
  try {
    await eventually(check, ms, 200);
  } catch (err) {
    const log = mesh.regions.get(region)!.worker.log().slice(-6_000);
    throw new Error(`${what}: ${(err as Error).message}\n${log}`);
  }
}

async function workerJson<T>(region: string, path: string): Promise<T> {
  return (await (await fetch(`${mesh.regions.get(region)!.worker.info.metrics}${path}`)).json()) as T;
}

interface LinkShown {
  policy: string;
  endpoint: string;
  direction: string;
  src: string;
  dst: string;
  state: string;
  bytes: number;
  oldestPendingAgeSeconds: number;
  failure?: { reason: string };
}

async function endpointLink(region: string, policy: string): Promise<LinkShown | undefined> {
  const { endpointLinks } = await workerJson<{ endpointLinks: LinkShown[] }>(region, "/links");
  return endpointLinks.find((l) => l.policy === policy);
}

/**
 * The digest Distribution shows for repo:tag, for polling: "error" when it
 * fails to answer (Distribution 2.8 answers 500 now and then to a HEAD on a
 * tag being written).
 */
function there(repo: string, tag: string): Promise<string | undefined> {
  return onprem.headManifest(repo, tag).then(
    (h) => h?.digest,
    () => "error",
  );
}

/** The endpoint links as `meridian status` reads them off a worker's metrics page. */
async function statusFigures(region: string) {
  const text = await (await fetch(`${mesh.regions.get(region)!.worker.info.metrics}/metrics`)).text();
  return endpointLinkFigures(parseProm(text));
}

async function workerMetric(region: string, name: string, labels: Record<string, string>) {
  const text = await (await fetch(`${mesh.regions.get(region)!.worker.info.metrics}/metrics`)).text();
  return parseProm(text).find(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  )?.value;
}

/** Push blobs and a manifest with a registry client (into Distribution). */
async function pushTo(c: OciRegistryClient, repo: string, tag: string): Promise<string> {
  const desc = (mediaType: string, b: Buffer) => ({ mediaType, digest: digestOf(b), size: b.length });
  const config = Buffer.from(JSON.stringify({ os: "linux", n: randomBytes(8).toString("hex") }));
  const layer = randomBytes(2048);
  for (const b of [config, layer]) await c.pushBlob(repo, desc("", b), async () => b);
  const manifest = { schemaVersion: 2, mediaType: OCI_MANIFEST, config: desc(OCI_CONFIG, config) };
  const bytes = Buffer.from(JSON.stringify({ ...manifest, layers: [desc(OCI_LAYER, layer)] }));
  await c.putManifest(repo, tag, { bytes, mediaType: OCI_MANIFEST, digest: digestOf(bytes) });
  return digestOf(bytes);
}

/** A cosign signature of `subject` (an OCI 1.1 referrer) pushed into `region`; its digest. */
async function signIn(
  region: string,
  repo: string,
  subject: { digest: string; size: number },
): Promise<string> {
  const sig = cosignSign(generateCosignKey().privateKey, `${repo}`, subject.digest);
  const c = client(region);
  await c.pushBlob(repo, sig.config, "application/vnd.oci.image.config.v1+json");
  await c.pushBlob(repo, sig.payload, sig.layer.mediaType);
  const bytes = sig.referrerManifest({ mediaType: OCI_MANIFEST, ...subject });
  const { digest } = await c.pushManifest(repo, digestOf(bytes), bytes.toString("utf8"));
  return digest;
}

describe("policies with external endpoints", () => {
  cleanup = cleanupStack({ after });
  before(async () => {
    dist = await startDistribution(cleanup, { user: USER, password: PASSWORD });
    proxy = await TcpProxy.start({ target: { host: "127.0.0.1", port: Number(new URL(dist.url).port) } });
    cleanup(() => proxy.close());
    onprem = new OciRegistryClient({ url: dist.url, credentials: { username: USER, password: PASSWORD } });
    mesh = await startProxiedMesh(cleanup, ["a", "b"], {
      worker: { MERIDIAN_ANTI_ENTROPY_INTERVAL_MS: "0" },
    });
    dir = tempDir(cleanup, "meridian-endpoint-creds-");
    writeFileSync(join(dir, "good"), `${USER}:${PASSWORD}\n`, { mode: 0o600 });
    writeFileSync(join(dir, "bad"), `${USER}:wrong-password\n`, { mode: 0o600 });
    const url = `http://${proxy.address}`;
    for (const [name, file] of [
      ["onprem", "good"],
      ["badcreds", "bad"],
    ])
      await ok(await adminSend("a", "PUT", `/endpoints/${name}`, { url, credentialsFile: join(dir, file!) }));
  });

  test("invalid policies are refused with the reason: an endpoint on both sides, an on-push import", async () => {
    for (const [body, reason] of [
      [
        { source: "endpoint:onprem", destination: "endpoint:badcreds", trigger: "manual" },
        /an endpoint on both sides \(endpoint:onprem, endpoint:badcreds\)/,
      ],
      [
        { source: "endpoint:onprem", destination: "b" },
        /on-push \(the default\) cannot import from endpoint:onprem/,
      ],
      [{ source: "a", destination: "endpoint:NOPE" }, /invalid endpoint name "NOPE"/],
    ] as const) {
      const res = await adminSend("a", "PUT", "/policies/bad", body);
      const text = await res.text();
      assert.equal(res.status, 400, text);
      const { errors } = JSON.parse(text) as { errors: Array<{ code: string; message: string }> };
      assert.equal(errors[0]!.code, "UNSUPPORTED");
      assert.match(errors[0]!.message, reason);
    }
    assert.equal((await adminSend("a", "GET", "/policies/bad")).status, 404);
  });

  test("export on push: a→onprem carries prod/** with its signature (the referrers tag schema there), under its budget", async () => {
    await setPolicy("export-prod", {
      source: "a",
      destination: "endpoint:onprem",
      repositories: ["prod/**"],
      bandwidth: BUDGET,
    });
    await until(
      "the export link in a's worker",
      async () => (await endpointLink("a", "export-prod")) !== undefined,
    );
    const c = client("a");
    await c.pushRandomImage("dev/tool", "v1");
    const image = await c.pushRandomImage("prod/app", "v1", 2, 300 * 1024);
    await until("prod/app:v1 at Distribution", async () => (await there("prod/app", "v1")) === image.digest);
    const size = Buffer.byteLength(JSON.stringify(image.manifest));
    // The signature comes after the image: it still travels (the tag is in step, its referrers are not).
    const sig = await signIn("a", "prod/app", { digest: image.digest, size });
    await until("the signature in Distribution's referrers tag", async () => {
      const r = await onprem.referrers("prod/app", image.digest);
      return !r.api && r.manifests.some((m) => m.digest === sig);
    });
    assert.equal((await onprem.getManifest("prod/app", sig))?.digest, sig);
    for (const l of image.layers) assert.ok(await onprem.hasBlob("prod/app", l.digest));
    assert.equal(await onprem.headManifest("dev/tool", "v1"), undefined, "dev/** is not selected");

    const link = (await endpointLink("a", "export-prod"))!;
    assert.equal(link.state, "ok");
    assert.equal(link.src, "a");
    assert.equal(link.dst, "endpoint:onprem");
    assert.ok(link.bytes >= 600 * 1024, `bytes ${link.bytes}`);
    const labels = { src: "a", dst: "endpoint:onprem" };
    // The budget is the policy's, and the copy waited for it (600 KiB at 200 KiB/s cannot go at once).
    assert.equal(
      await workerMetric("a", "meridian_replication_endpoint_budget_bytes_per_second", labels),
      BUDGET,
    );
    assert.ok(
      (await workerMetric("a", "meridian_replication_endpoint_budget_wait_seconds_total", labels))! > 0,
    );
    assert.ok((await workerMetric("a", "meridian_replication_endpoint_bytes_total", labels))! >= 600 * 1024);
    const shown = (await statusFigures("a")).find((l) => l.dst === "endpoint:onprem")!;
    assert.equal(shown.failing, false);
    assert.ok(shown.lastSuccessAt !== undefined && shown.bytes! >= 600 * 1024);
  });

  test("manual import: onprem→b brings onprem/** tags v* through b's write path, and b's content replicates to a", async () => {
    const web1 = await pushTo(onprem, "onprem/web", "v1");
    const webDev = await pushTo(onprem, "onprem/web", "dev-1");
    const db = await pushTo(onprem, "other/db", "v1");
    await setPolicy("import-onprem", {
      source: "endpoint:onprem",
      destination: "b",
      repositories: ["onprem/**"],
      tags: ["v*"],
      trigger: "manual",
    });
    await until(
      "the import policy in b's worker",
      async () => (await endpointLink("b", "import-onprem")) !== undefined,
      "b",
    );
    // `policy plan` says what the run will copy (the CLI reads the endpoint as the worker does).
    const planned = await runCli(["policy", "plan", "import-onprem", "--json", "--mesh", mesh.meshFile]);
    assert.equal(planned.code, 0, planned.stderr);
    const { endpointLinks } = JSON.parse(planned.stdout) as {
      endpointLinks: Array<{
        region: string;
        src: string;
        plans: Array<{ repo: string; actions: unknown[] }>;
      }>;
    };
    assert.equal(endpointLinks.length, 1);
    assert.equal(endpointLinks[0]!.region, "b");
    assert.equal(endpointLinks[0]!.src, "endpoint:onprem");
    assert.deepEqual(endpointLinks[0]!.plans, [
      { repo: "onprem/web", actions: [{ kind: "copy", tag: "v1", digest: web1 }] },
    ]);
    const { runId } = await ok(await adminSend("a", "POST", "/policies/import-onprem/run"));
    await until(
      "the run's result",
      async () => (await runText("import-onprem", runId)).includes('"outcome":"ok"'),
      "b",
    );
    assert.equal(await digestAt("b", "onprem/web", "v1"), web1);
    assert.equal(await digestAt("b", "onprem/web", "dev-1"), undefined, `dev-1 (${webDev}) is not selected`);
    assert.equal(await digestAt("b", "other/db", "v1"), undefined, `other/** (${db}) is not selected`);
    // Imported through b's own write path: events of b's, by the endpoint, which replicate on to a.
    const events = await streamEvents(mesh.regions.get("b")!.nats.url, "b");
    const pushed = events.find((e) => e.type === "manifest.pushed" && "digest" in e && e.digest === web1);
    assert.equal(pushed?.actor, "endpoint:onprem");
    assert.equal(pushed?.origin, "b");
    await until(
      "onprem/web:v1 replicated to a",
      async () => (await digestAt("a", "onprem/web", "v1")) === web1,
    );
  });

  test("wrong credentials: the run fails with the reason, shown on the link and in /failures", async () => {
    await setPolicy("export-bad", {
      source: "a",
      destination: "endpoint:badcreds",
      repositories: ["prod/**"],
      trigger: "manual",
    });
    await until("the link", async () => (await endpointLink("a", "export-bad")) !== undefined);
    const { runId } = await ok(await adminSend("a", "POST", "/policies/export-bad/run"));
    let run = "";
    await until("the failed run", async () => {
      run = await runText("export-bad", runId);
      return run.includes('"outcome":"failed"');
    });
    assert.match(run, /UNAUTHORIZED/);
    const link = (await endpointLink("a", "export-bad"))!;
    assert.equal(link.state, "failing");
    assert.match(link.failure!.reason, /401 UNAUTHORIZED \(credentials refused\)/);
    const { endpoints } = await workerJson<{
      endpoints: Record<string, { reason: string; destination: string }>;
    }>("a", "/failures");
    assert.match(endpoints["export-bad/badcreds/export"]!.reason, /UNAUTHORIZED/);
    assert.equal(endpoints["export-bad/badcreds/export"]!.destination, "endpoint:badcreds");
    await ok(await adminSend("a", "DELETE", "/policies/export-bad"));
  });

  test("a policy naming an endpoint that does not exist is reported, not a crash", async () => {
    await setPolicy("export-ghost", {
      source: "a",
      destination: "endpoint:ghost",
      repositories: ["prod/**"],
    });
    await until(
      "the failing link",
      async () => (await endpointLink("a", "export-ghost"))?.state === "failing",
    );
    assert.match((await endpointLink("a", "export-ghost"))!.failure!.reason, /endpoint ghost is not defined/);
    await ok(await adminSend("a", "DELETE", "/policies/export-ghost"));
  });

  test("endpoint down: regions keep replicating; back: what was pushed meanwhile arrives", async () => {
    proxy.partition();
    const c = client("a");
    const v2 = await c.pushRandomImage("prod/app", "v2");
    const v3 = await c.pushRandomImage("prod/app", "v3");
    await until(
      "the export failing",
      async () => (await endpointLink("a", "export-prod"))?.state === "failing",
    );
    assert.match(
      (await endpointLink("a", "export-prod"))!.failure!.reason,
      /ECONNRESET|socket|closed|hang up/i,
    );
    const shown = (await statusFigures("a")).find((l) => l.dst === "endpoint:onprem")!;
    assert.equal(shown.failing, true);
    assert.ok(shown.oldestPendingMs! > 0);
    // Region replication goes on while the endpoint is down.
    await until("prod/app:v3 in b", async () => (await digestAt("b", "prod/app", "v3")) === v3.digest, "b");
    assert.equal(await onprem.headManifest("prod/app", "v2"), undefined);
    proxy.heal();
    await until("v2 and v3 at Distribution", async () => {
      const [h2, h3] = await Promise.all([there("prod/app", "v2"), there("prod/app", "v3")]);
      return h2 === v2.digest && h3 === v3.digest;
    });
    await until("the link ok again", async () => (await endpointLink("a", "export-prod"))?.state === "ok");
    assert.ok(
      (await workerMetric("a", "meridian_replication_endpoint_runs_total", {
        outcome: "failed",
        src: "a",
      }))! > 0,
    );
  });

  test("override off: an endpoint tag pointing elsewhere is kept, and policy plan says so", async () => {
    const theirs = await pushTo(onprem, "keep/app", "pinned");
    await setPolicy("export-keep", {
      source: "a",
      destination: "endpoint:onprem",
      repositories: ["keep/**"],
      override: false,
    });
    await until("the link", async () => (await endpointLink("a", "export-keep")) !== undefined);
    const c = client("a");
    await c.pushRandomImage("keep/app", "pinned");
    const fresh = await c.pushRandomImage("keep/app", "fresh");
    await until("keep/app:fresh there", async () => (await there("keep/app", "fresh")) === fresh.digest);
    await until("the link caught up", async () => (await endpointLink("a", "export-keep"))?.state === "ok");
    assert.equal(await there("keep/app", "pinned"), theirs);
    const planned = await runCli(["policy", "plan", "export-keep", "--mesh", mesh.meshFile]);
    assert.equal(planned.code, 0, planned.stderr);
    assert.match(planned.stdout, new RegExp(`keep pinned: override is off \\(the tag there is ${theirs}\\)`));
    await ok(await adminSend("a", "DELETE", "/policies/export-keep"));
  });

  test("deletes travel to the endpoint only when asked, and never take a manifest another tag shows", async () => {
    const c = client("a");
    const v4 = await c.pushRandomImage("prod/app", "v4");
    await c.pushManifest("prod/app", "v4-alias", v4.manifest);
    await until("v4 and its alias at Distribution", async () => {
      const [a, b] = await Promise.all([there("prod/app", "v4"), there("prod/app", "v4-alias")]);
      return a === v4.digest && b === v4.digest;
    });
    // Without deletes (export-prod's default): a tag deleted here stays there.
    assert.equal((await c.fetch("/v2/prod/app/manifests/v2", { method: "DELETE" })).status, 202);
    const after = await c.pushRandomImage("prod/app", "after-v2-delete");
    await until(
      "the next push there",
      async () => (await there("prod/app", "after-v2-delete")) === after.digest,
    );
    // Every request of the link carried out (the deletion was asked before that push).
    await until("the link caught up", async () => {
      const l = await endpointLink("a", "export-prod");
      return l?.state === "ok" && l.oldestPendingAgeSeconds === 0;
    });
    assert.ok(
      (await onprem.headManifest("prod/app", "v2")) !== undefined,
      "v2 kept: the policy carries no deletes",
    );

    await setPolicy("export-prod", {
      source: "a",
      destination: "endpoint:onprem",
      repositories: ["prod/**"],
      deletes: true,
    });
    await sleep(1_000); // the worker's view has the policy
    // v4 still shown by v4-alias here: its manifest stays there.
    assert.equal((await c.fetch("/v2/prod/app/manifests/v4", { method: "DELETE" })).status, 202);
    const v3 = await onprem.headManifest("prod/app", "v3");
    assert.equal((await c.fetch("/v2/prod/app/manifests/v3", { method: "DELETE" })).status, 202);
    await until(
      "v3's manifest deleted at Distribution",
      async () => (await there("prod/app", "v3")) === undefined,
    );
    assert.equal(await onprem.getManifest("prod/app", v3!.digest), undefined);
    assert.equal((await onprem.headManifest("prod/app", "v4-alias"))?.digest, v4.digest);
  });

  test("TLS: an endpoint trusted by its CA file exports and imports on schedule; one without the CA fails with the reason", async () => {
    const certs = await serverCerts(cleanup);
    const cloud = await startDistribution(cleanup, {
      tls: { certFile: certs.cert, keyFile: certs.key },
    });
    const direct = new OciRegistryClient({ url: cloud.url, ca: readFileSync(certs.ca) });
    await ok(await adminSend("a", "PUT", "/endpoints/cloud", { url: cloud.url, caFile: certs.ca }));
    await ok(await adminSend("a", "PUT", "/endpoints/cloud-untrusted", { url: cloud.url }));

    await setPolicy("export-tls", { source: "a", destination: "endpoint:cloud", repositories: ["tls/**"] });
    await until("the link", async () => (await endpointLink("a", "export-tls")) !== undefined);
    const image = await client("a").pushRandomImage("tls/app", "v1");
    await until("tls/app:v1 at the TLS registry", async () =>
      direct.headManifest("tls/app", "v1").then(
        (h) => h?.digest === image.digest,
        () => false,
      ),
    );

    await setPolicy("export-untrusted", {
      source: "a",
      destination: "endpoint:cloud-untrusted",
      repositories: ["tls/**"],
      trigger: "manual",
    });
    await until(
      "the untrusted link",
      async () => (await endpointLink("a", "export-untrusted")) !== undefined,
    );
    const { runId } = await ok(await adminSend("a", "POST", "/policies/export-untrusted/run"));
    let run = "";
    await until("the failed run", async () => {
      run = await runText("export-untrusted", runId);
      return run.includes('"outcome":"failed"');
    });
    assert.match(run, /certificate/i);
    assert.match((await endpointLink("a", "export-untrusted"))!.failure!.reason, /certificate/i);
    await ok(await adminSend("a", "DELETE", "/policies/export-untrusted"));

    // A scheduled import (every 2 s) from the TLS registry into b: what appears there arrives.
    const v1 = await pushTo(direct, "sched/base", "v1");
    await setPolicy("import-sched", {
      source: "endpoint:cloud",
      destination: "b",
      repositories: ["sched/**"],
      trigger: { schedule: "*/2 * * * * *" },
    });
    await until("sched/base:v1 in b", async () => (await digestAt("b", "sched/base", "v1")) === v1, "b");
    const v2 = await pushTo(direct, "sched/base", "v2");
    await until(
      "sched/base:v2 in b at a later tick",
      async () => (await digestAt("b", "sched/base", "v2")) === v2,
      "b",
    );
    await ok(await adminSend("a", "DELETE", "/policies/import-sched"));
  });
});
