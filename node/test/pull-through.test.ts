/**
 * Pull-through cache projects (issue 17, item 3) on a real two-region mesh
 * with authentication, a real CNCF Distribution (htpasswd) as the upstream
 * and skopeo pulling through Meridian:
 * - configuration: system admins only (401 anonymous, 403 a user); an
 *   unknown endpoint, a bad prefix, a bad freshness refused naming the field
 *   (admin API and `meridian project proxy`);
 * - a miss is fetched, stored (replicated to region b by the event log like
 *   any push) and served; the second pull is a hit; an upstream 404 is
 *   MANIFEST_UNKNOWN; a push is 403 DENIED;
 * - a tag moved upstream is served moved once its freshness passed, HEAD
 *   and GET alike;
 * - upstream frozen (SIGSTOP): a cached tag past its freshness is still
 *   served (bounded wait), a never-cached tag fails 503 UNAVAILABLE, more
 *   misses than the node's turns do not hold up a miss on another
 *   upstream, and then upstream killed: cached content still pulls with skopeo;
 * - a blob whose upstream bytes are corrupted (a small HTTP server between
 *   Meridian and Distribution flips a byte of one blob) is refused: 503,
 *   nothing of it stored, the manifest not cached;
 * - wrong upstream credentials: 503 naming the 401, the secret never echoed.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { OciRegistryClient } from "../../mesh-client/oci-registry-client.js";
import { digestOf } from "../../protocol/digest.js";
import { type Distribution, startDistribution } from "../../testing/distribution.js";
import { sleep, waitWritable } from "../../testing/faults.js";
import { cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
/** What the corrupting relay answered (see corruptingRelay). */
const relayed: string[] = [];
const SECRET = "upstream-s3cret-pw";
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const MANIFEST_ACCEPT = `${OCI_MANIFEST}, ${OCI_INDEX}`;
let mesh: RunningMesh;
let dist: Distribution;
/** A second upstream, without auth: never frozen. */
let other: Distribution;
let upstream: OciRegistryClient;
let adminPassword: string;
let adminAuth: string;
let regionA: string;
let regionB: string;
let host: string;

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const meridian = (args: string[]) => runCli([...args, "--data", mesh.dataDir], 30_000);
/** An admin API call; `auth` null: anonymous. */
const admin = (method: string, path: string, body?: unknown, auth: string | null = adminAuth) =>
  fetch(`${regionA}/admin/v1${path}`, {
    method,
    headers: {
      ...(auth === null ? {} : { authorization: auth }),
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
/** A manifest request to a region, as a client would send it (with the admin's credentials). */
const manifest = (base: string, repo: string, ref: string, method = "GET", cached = false) =>
  fetch(`${base}/v2/${repo}/manifests/${ref}`, {
    method,
    headers: {
      authorization: adminAuth,
      accept: MANIFEST_ACCEPT,
      ...(cached ? { "cache-control": "only-if-cached" } : {}),
    },
    signal: AbortSignal.timeout(30_000),
  });

/** Push a one-layer image of random bytes to the upstream (under `tag`, else by digest); its digests. */
async function pushUpstream(repo: string, tag?: string) {
  const config = Buffer.from(
    JSON.stringify({ architecture: "amd64", os: "linux", seed: randomBytes(8).toString("hex") }),
  );
  const layer = gzipSync(randomBytes(64 * 1024));
  for (const b of [config, layer])
    await upstream.pushBlob(repo, { digest: digestOf(b), size: b.length }, async () => b);
  const bytes = Buffer.from(
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
  await upstream.putManifest(repo, tag ?? digestOf(bytes), {
    bytes,
    mediaType: OCI_MANIFEST,
    digest: digestOf(bytes),
  });
  return { digest: digestOf(bytes), layer: digestOf(layer), size: bytes.length };
}

/** Push an index of two such images (by digest) under `tag`; the index's and the children's digests. */
async function pushIndexUpstream(repo: string, tag: string) {
  const children = [await pushUpstream(repo), await pushUpstream(repo)];
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: children.map((c, i) => ({
        mediaType: OCI_MANIFEST,
        digest: c.digest,
        size: c.size,
        platform: { os: "linux", architecture: i === 0 ? "amd64" : "arm64" },
      })),
    }),
  );
  await upstream.putManifest(repo, tag, { bytes, mediaType: OCI_INDEX, digest: digestOf(bytes) });
  return { digest: digestOf(bytes), children };
}

async function skopeoPull(ref: string): Promise<string> {
  const out = tempDir(cleanup, "meridian-pull-");
  await run(
    "skopeo",
    [
      "copy",
      "--src-tls-verify=false",
      "--src-creds",
      `admin:${adminPassword}`,
      `docker://${host}/${ref}`,
      `dir:${out}`,
    ],
    { timeout: 60_000 },
  );
  return digestOf(readFileSync(join(out, "manifest.json")));
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${regionA}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

async function setProxy(project: string, endpoint: string, extra: string[] = []): Promise<void> {
  const r = await meridian(["project", "proxy", project, "--endpoint", endpoint, ...extra]);
  assert.equal(r.code, 0, r.stderr);
}

/**
 * An HTTP server between Meridian and the upstream that relays everything,
 * except that the bytes of blob `corrupt` have their first byte flipped (same length);
 * each answer is recorded in `answered` as "METHOD URL STATUS".
 */
async function corruptingRelay(
  target: string,
  corrupt: () => string | undefined,
  answered: string[],
): Promise<string> {
  const server: Server = createServer((req, res) => {
    const upstreamReq = httpRequest(
      `${target}${req.url}`,
      { method: req.method, headers: { ...req.headers, host: new URL(target).host } },
      (up) => {
        answered.push(`${req.method} ${req.url} ${up.statusCode}`);
        const bad = corrupt();
        const flip = bad !== undefined && req.method === "GET" && req.url?.endsWith(`/blobs/${bad}`) === true;
        res.writeHead(up.statusCode ?? 502, up.headers);
        let first = true;
        up.on("data", (chunk: Buffer) => {
          if (flip && first && chunk.length > 0) {
            chunk = Buffer.from(chunk);
            chunk[0] = (chunk[0] ?? 0) ^ 0xff;
          }
          first = false;
          res.write(chunk);
        });
        up.on("end", () => res.end());
      },
    );
    upstreamReq.on("error", () => res.destroy());
    req.pipe(upstreamReq);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

before(async () => {
  dist = await startDistribution(cleanup, { user: "ci", password: SECRET });
  other = await startDistribution(cleanup);
  upstream = new OciRegistryClient({ url: dist.url, credentials: { username: "ci", password: SECRET } });
  mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"], {
    MERIDIAN_PULL_THROUGH_CHECK_TIMEOUT_MS: "1000",
    MERIDIAN_PULL_THROUGH_FETCH_TIMEOUT_MS: "4000",
  });
  regionA = mesh.regions.get("a")!.registry;
  regionB = mesh.regions.get("b")!.registry;
  host = new URL(regionA).host;
  adminPassword = readFileSync(mesh.adminPasswordFile!, "utf8").trim();
  adminAuth = basic("admin", adminPassword);
  for (const r of mesh.regions.values()) await waitWritable(r.registry);
  const creds = join(mesh.dataDir, "upstream.creds");
  writeFileSync(creds, `ci:${SECRET}\n`, { mode: 0o600 });
  const add = await meridian(["endpoint", "add", "up", "--url", dist.url, "--credentials-file", creds]);
  assert.equal(add.code, 0, add.stderr);
});

describe("pull-through cache", () => {
  test("configuration: system admins only; bad settings refused naming the field", async () => {
    assert.equal((await admin("PUT", "/proxies/hub", { endpoint: "up" }, null)).status, 401);
    const user = await admin("PUT", "/users/dev", { password: "dev-password-1", systemAdmin: false });
    assert.equal(user.status, 200, await user.text());
    const asDev = await admin("PUT", "/proxies/hub", { endpoint: "up" }, basic("dev", "dev-password-1"));
    assert.equal(asDev.status, 403);
    assert.equal(((await asDev.json()) as { errors: { code: string }[] }).errors[0]?.code, "DENIED");

    const refused = async (project: string, body: unknown, field: RegExp) => {
      const r = await admin("PUT", `/proxies/${project}`, body);
      const text = await r.text();
      assert.equal(r.status, 400, text);
      assert.match(text, field);
    };
    await refused("hub", { endpoint: "nowhere" }, /endpoint: no endpoint named nowhere/);
    await refused("hub", { endpoint: "up", upstreamPrefix: "Library/" }, /upstreamPrefix/);
    await refused("hub", { endpoint: "up", freshnessSeconds: -1 }, /freshnessSeconds/);
    await refused("hub", { endpoint: "up", freshnessSeconds: 10 * 24 * 3600 }, /freshnessSeconds/);
    await refused("Hub", { endpoint: "up" }, /project/);
    await refused("hub", { endpoint: "up", url: "http://x" }, /url/);
    const bad = await meridian(["project", "proxy", "hub", "--endpoint", "up", "--freshness", "5 minutes"]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--freshness "5 minutes": want a duration/);
    const none = await meridian(["project", "proxy", "hub", "--off"]);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /project hub is not a proxy/);
    // Nothing refused was stored.
    const listed = (await (await admin("GET", "/proxies")).json()) as { proxies: unknown[] };
    assert.deepEqual(listed.proxies, []);
  });

  test("a miss is fetched, stored, replicated and served; the second pull is a hit; pushes are refused", async () => {
    const image = await pushUpstream("library/app", "1.0");
    await setProxy("hub", "up", ["--freshness", "1h"]);
    const shown = await meridian(["project", "proxy", "hub"]);
    assert.match(shown.stdout, /project hub proxies endpoint up: hub\/X → X, tags checked after 3600s/);
    // Nothing is cached before the first pull.
    assert.equal((await manifest(regionA, "hub/library/app", "1.0", "GET", true)).status, 404);
    const misses = await metric("meridian_node_pull_through_requests_total", 'result="miss"');

    assert.equal(await skopeoPull("hub/library/app:1.0"), image.digest);
    // Stored through the write path: this region answers from what it holds, and so does b once replicated.
    const cached = await manifest(regionA, "hub/library/app", "1.0", "GET", true);
    assert.equal(cached.status, 200);
    assert.equal(cached.headers.get("docker-content-digest"), image.digest);
    assert.ok((await metric("meridian_node_pull_through_requests_total", 'result="miss"')) > misses);
    await eventually(
      async () => (await manifest(regionB, "hub/library/app", image.digest, "GET", true)).status === 200,
      60_000,
      250,
    );
    const layerInB = await fetch(`${regionB}/v2/hub/library/app/blobs/${image.layer}`, {
      headers: { authorization: adminAuth, "cache-control": "only-if-cached" },
    });
    assert.equal(layerInB.status, 200);
    assert.equal(digestOf(Buffer.from(await layerInB.arrayBuffer())), image.layer);

    // A second pull is a hit, and HEAD answers like GET.
    const hits = await metric("meridian_node_pull_through_requests_total", 'kind="manifest",result="hit"');
    assert.equal(await skopeoPull("hub/library/app:1.0"), image.digest);
    const head = await manifest(regionA, "hub/library/app", "1.0", "HEAD");
    assert.equal(head.headers.get("docker-content-digest"), image.digest);
    assert.ok(
      (await metric("meridian_node_pull_through_requests_total", 'kind="manifest",result="hit"')) > hits,
    );

    // A tag upstream never had: MANIFEST_UNKNOWN, as from the upstream itself.
    const unknown = await manifest(regionA, "hub/library/app", "nope");
    assert.equal(unknown.status, 404);
    assert.match(await unknown.text(), /MANIFEST_UNKNOWN/);

    // Pushes are refused: a manifest PUT and an upload both 403 DENIED naming the upstream.
    const put = await fetch(`${regionA}/v2/hub/library/app/manifests/mine`, {
      method: "PUT",
      headers: { authorization: adminAuth, "content-type": OCI_MANIFEST },
      body: await (await manifest(regionA, "hub/library/app", "1.0")).arrayBuffer(),
    });
    assert.equal(put.status, 403);
    assert.match(await put.text(), /"DENIED".*pull-through cache of endpoint up/);
    const upload = await fetch(`${regionA}/v2/hub/library/mine/blobs/uploads/`, {
      method: "POST",
      headers: { authorization: adminAuth },
    });
    assert.equal(upload.status, 403);
    const push = await run(
      "skopeo",
      [
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        `admin:${adminPassword}`,
        "--dest-creds",
        `admin:${adminPassword}`,
        `docker://${host}/hub/library/app:1.0`,
        `docker://${host}/hub/library/copy:1`,
      ],
      { timeout: 60_000 },
    ).then(
      () => "pushed",
      (err: { stderr: string }) => err.stderr,
    );
    assert.match(push, /denied/i);
  });

  test("a multi-platform index, first asked with HEAD (as containerd does): its whole closure is cached", async () => {
    const index = await pushIndexUpstream("library/multi", "1");
    const head = await manifest(regionA, "hub/library/multi", "1", "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("docker-content-digest"), index.digest);
    assert.equal(head.headers.get("content-type"), OCI_INDEX);
    // Every platform's manifest and layer is here now: pulls of any of them need no upstream.
    for (const child of index.children) {
      assert.equal((await manifest(regionA, "hub/library/multi", child.digest, "GET", true)).status, 200);
      const layer = await fetch(`${regionA}/v2/hub/library/multi/blobs/${child.layer}`, {
        method: "HEAD",
        headers: { authorization: adminAuth, "cache-control": "only-if-cached" },
      });
      assert.equal(layer.status, 200);
    }
    // A child asked by a digest upstream never had: MANIFEST_UNKNOWN.
    const nope = await manifest(regionA, "hub/library/multi", digestOf("never pushed"));
    assert.equal(nope.status, 404);
  });

  test("a tag moved upstream is served moved once its freshness passed", async () => {
    const refreshed = await metric("meridian_node_pull_through_requests_total", 'result="refreshed"');
    const first = await pushUpstream("library/live", "stable");
    await setProxy("live", "up", ["--freshness", "1s"]);
    const got = await manifest(regionA, "live/library/live", "stable");
    assert.equal(got.headers.get("docker-content-digest"), first.digest);
    const moved = await pushUpstream("library/live", "stable");
    await sleep(1_100);
    await eventually(
      async () =>
        (await manifest(regionA, "live/library/live", "stable", "HEAD")).headers.get(
          "docker-content-digest",
        ) === moved.digest,
      20_000,
      250,
    );
    assert.equal(await skopeoPull("live/library/live:stable"), moved.digest);
    assert.ok((await metric("meridian_node_pull_through_requests_total", 'result="refreshed"')) > refreshed);
  });

  test("wrong upstream credentials: 503 naming the 401, no secret echoed", async () => {
    const refusals = await metric(
      "meridian_node_pull_through_upstream_errors_total",
      'reason="unauthorized"',
    );
    const wrong = join(mesh.dataDir, "wrong.creds");
    writeFileSync(wrong, "ci:not-the-password\n", { mode: 0o600 });
    const add = await meridian(["endpoint", "add", "wrong", "--url", dist.url, "--credentials-file", wrong]);
    assert.equal(add.code, 0, add.stderr);
    await setProxy("locked", "wrong");
    const r = await manifest(regionA, "locked/library/app", "1.0");
    const text = await r.text();
    assert.equal(r.status, 503, text);
    assert.match(text, /upstream refused this registry's credentials \(401\)/);
    assert.ok(!text.includes("not-the-password") && !text.includes(SECRET));
    assert.ok(
      (await metric("meridian_node_pull_through_upstream_errors_total", 'reason="unauthorized"')) > refusals,
    );
  });

  test("a blob whose upstream bytes are corrupted is refused and nothing of it is stored", async () => {
    const mismatches = await metric(
      "meridian_node_pull_through_upstream_errors_total",
      'reason="digest_mismatch"',
    );
    let corrupt: string | undefined;
    relayed.length = 0;
    const relay = await corruptingRelay(dist.url, () => corrupt, relayed);
    const creds = join(mesh.dataDir, "upstream.creds");
    const add = await meridian(["endpoint", "add", "relay", "--url", relay, "--credentials-file", creds]);
    assert.equal(add.code, 0, add.stderr);
    await setProxy("bad", "relay");
    const image = await pushUpstream("library/corrupt", "1");
    corrupt = image.layer;
    const blob = await fetch(`${regionA}/v2/bad/library/corrupt/blobs/${image.layer}`, {
      headers: { authorization: adminAuth },
    });
    assert.equal(blob.status, 503);
    assert.match(await blob.text(), /UNAVAILABLE/);
    const pulled = await manifest(regionA, "bad/library/corrupt", "1");
    assert.equal(pulled.status, 503);
    assert.equal((await manifest(regionA, "bad/library/corrupt", "1", "GET", true)).status, 404);
    const stored = await fetch(`${regionA}/v2/bad/library/corrupt/blobs/${image.layer}`, {
      headers: { authorization: adminAuth, "cache-control": "only-if-cached" },
    });
    assert.equal(stored.status, 404);
    assert.ok(
      (await metric("meridian_node_pull_through_upstream_errors_total", 'reason="digest_mismatch"')) >
        mismatches,
    );
    // The same relay serving true bytes again: the pull goes through.
    corrupt = undefined;
    const fixed = await manifest(regionA, "bad/library/corrupt", "1");
    assert.equal(fixed.status, 200);
    assert.equal(fixed.headers.get("docker-content-digest"), image.digest);
  });

  test("concurrent misses of one image share one upstream fetch of each part", async () => {
    const image = await pushUpstream("library/many", "1");
    relayed.length = 0;
    const manifests = Array.from({ length: 6 }, () => manifest(regionA, "bad/library/many", "1"));
    const blobs = Array.from({ length: 6 }, () =>
      fetch(`${regionA}/v2/bad/library/many/blobs/${image.layer}`, { headers: { authorization: adminAuth } }),
    );
    for (const r of await Promise.all(manifests)) {
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("docker-content-digest"), image.digest);
    }
    for (const r of await Promise.all(blobs)) {
      assert.equal(r.status, 200);
      assert.equal(digestOf(Buffer.from(await r.arrayBuffer())), image.layer);
    }
    const ok = (path: string) => relayed.filter((l) => l === `GET ${path} 200`).length;
    assert.equal(ok(`/v2/library/many/blobs/${image.layer}`), 1, relayed.join("\n"));
    assert.equal(ok("/v2/library/many/manifests/1"), 1, relayed.join("\n"));
  });

  test("upstream frozen, then gone: cached tags keep being served", async () => {
    // Another upstream, for a miss while this one is frozen.
    const add = await meridian(["endpoint", "add", "other", "--url", other.url]);
    assert.equal(add.code, 0, add.stderr);
    await setProxy("elsewhere", "other");
    const otherClient = new OciRegistryClient({ url: other.url });
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
    await otherClient.pushBlob(
      "library/app",
      { digest: digestOf(config), size: config.length },
      async () => config,
    );
    const otherManifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: {
          mediaType: "application/vnd.oci.image.config.v1+json",
          digest: digestOf(config),
          size: config.length,
        },
        layers: [],
      }),
    );
    await otherClient.putManifest("library/app", "1", {
      bytes: otherManifest,
      mediaType: OCI_MANIFEST,
      digest: digestOf(otherManifest),
    });
    const live = (await manifest(regionA, "live/library/live", "stable")).headers.get(
      "docker-content-digest",
    );
    await sleep(1_100); // past the 1 s freshness: the next pull asks upstream
    const stale = await metric("meridian_node_pull_through_requests_total", 'result="stale"');
    process.kill(dist.pid, "SIGSTOP");
    try {
      const r = await manifest(regionA, "live/library/live", "stable");
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("docker-content-digest"), live);
      assert.ok((await metric("meridian_node_pull_through_requests_total", 'result="stale"')) > stale);
      // Never cached: nothing to serve, a bounded failure.
      const never = await manifest(regionA, "live/library/never", "1");
      assert.equal(never.status, 503);
      // More misses than the node's turns for the frozen upstream wait on it; a miss on another
      // upstream does not wait for them: it is served while they are all still pending.
      const stuck = Array.from({ length: 10 }, (_, i) =>
        manifest(regionA, `live/library/stuck${i}`, "1").then((r) => r.status),
      );
      let settled = 0;
      for (const p of stuck) void p.then(() => settled++);
      const elsewhere = await manifest(regionA, "elsewhere/library/app", "1");
      assert.equal(elsewhere.status, 200);
      assert.equal(settled, 0, "the frozen upstream's misses are still waiting");
      assert.deepEqual(await Promise.all(stuck), Array(10).fill(503));
      // A project with a long freshness never asks: a hit.
      assert.equal((await manifest(regionA, "hub/library/app", "1.0")).status, 200);
    } finally {
      process.kill(dist.pid, "SIGCONT");
    }
    process.kill(dist.pid, "SIGKILL");
    await eventually(
      async () => {
        try {
          process.kill(dist.pid, 0);
          return false;
        } catch {
          return true;
        }
      },
      10_000,
      100,
    );
    assert.ok((await skopeoPull("hub/library/app:1.0")).startsWith("sha256:"));
    await sleep(1_100);
    const gone = await manifest(regionA, "live/library/live", "stable");
    assert.equal(gone.status, 200);
    assert.equal(gone.headers.get("docker-content-digest"), live);
    // What a cache stored is deleted like anything else (an operator evicting it): no refusal.
    const del = await fetch(`${regionA}/v2/live/library/live/manifests/stable`, {
      method: "DELETE",
      headers: { authorization: adminAuth },
    });
    assert.equal(del.status, 202);
  });

  test("--off makes the project ordinary again; what it cached stays", async () => {
    const off = await meridian(["project", "proxy", "hub", "--off"]);
    assert.equal(off.code, 0, off.stderr);
    assert.equal((await manifest(regionA, "hub/library/app", "1.0")).status, 200);
    const list = await meridian(["project", "proxies", "--json"]);
    const projects = (JSON.parse(list.stdout) as { proxies: { project: string }[] }).proxies.map(
      (p) => p.project,
    );
    assert.ok(!projects.includes("hub") && projects.includes("live"));
  });
});
