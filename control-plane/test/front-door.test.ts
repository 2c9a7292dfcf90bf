/**
 * The front door as a real process in front of three regions that are real
 * processes too (startProxiedMesh): where reads, writes, upload sessions and
 * read-your-writes reads go, what it counts, skopeo through it, and what
 * happens when a region's node is killed. Behaviour only, never speed; the
 * tests run in order, the last one killing regions.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { PeerClient, peerCredentials } from "../../mesh-client/peer-client.js";
import { parseMesh } from "../../protocol/mesh.js";
import {
  cleanupStack,
  eventually,
  type MeridianProcess,
  spawnMeridian,
  tempDir,
} from "../../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../../testing/mesh.js";
import { errorCode, OCI_CONFIG, OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";
import { writeImageLayout } from "../../testing/oci-layout.js";

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
// Probes time out after one interval: shorter ones miss on a loaded 2-core machine and mark healthy regions down.
const INTERVAL_MS = 1000;
const HEADER = "meridian-client-region";

let mesh: ProxiedMesh;
let frontDoor: MeridianProcess;
let url: string;
let work: string;

interface Healthz {
  regions: Array<{ region: string; up: boolean; applied: Record<string, number>; lastError: string | null }>;
  homes: Array<{ scope: string; home: string; epoch: number }>;
}

before(async () => {
  mesh = await startProxiedMesh(cleanup, ["a", "b", "c"]);
  work = tempDir(cleanup, "meridian-fd-");
  frontDoor = await spawnMeridian(cleanup, "control-plane/front-door.js", {
    MERIDIAN_MESH: mesh.meshFile,
    // 127.0.0.1 is in both; the longest prefix (b) wins.
    MERIDIAN_CLIENT_REGIONS: "127.0.0.0/8=a,127.0.0.1/32=b",
    MERIDIAN_HEARTBEAT_INTERVAL_MS: String(INTERVAL_MS),
    MERIDIAN_RYW_WAIT_MS: "1000",
  });
  url = frontDoor.info.frontDoor!;
  await eventually(async () => (await healthz()).regions.every((r) => r.up), 30_000, 50);
});

async function healthz(): Promise<Healthz> {
  return (await (await fetch(`${url}/healthz`)).json()) as Healthz;
}

function regionState(h: Healthz, region: string) {
  return h.regions.find((r) => r.region === region)!;
}

/** The routing counter for one (client region, region, reason), 0 when never counted. */
async function routes(clientRegion: string, region: string, reason: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text
    .split("\n")
    .find((l) =>
      l.startsWith(
        `meridian_front_door_routes_total{client_region="${clientRegion}",region="${region}",reason="${reason}"}`,
      ),
    );
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

/** An OCI client of the front door that says which region it is in (or lets its address decide). */
class Client extends OciClient {
  constructor(readonly region?: string) {
    super(url);
  }
  override fetch(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(path.startsWith("http") ? path : this.url(path), {
      ...init,
      headers: {
        ...(init.headers as Record<string, string>),
        ...(this.region ? { [HEADER]: this.region } : {}),
      },
    });
  }
}

async function peerStatus(region: string) {
  const m = parseMesh(JSON.parse(readFileSync(mesh.meshFile, "utf8")));
  const r = m.regions.find((x) => x.name === region)!;
  const client = new PeerClient(region, r.grpc, peerCredentials(m, "front-door"));
  try {
    return await client.status("test");
  } finally {
    client.close();
  }
}

test("reads go to the region the client's address maps to, or the one its header names", async () => {
  const byAddress = await new Client().fetch("/v2/");
  assert.equal(byAddress.status, 200);
  assert.equal(byAddress.headers.get("meridian-region"), "b", "127.0.0.1/32 → b beats 127.0.0.0/8 → a");
  for (const region of ["a", "b", "c"]) {
    const res = await new Client(region).fetch("/v2/");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("meridian-region"), region);
  }
  const unknown = await new Client("nowhere").fetch("/v2/");
  assert.equal(unknown.headers.get("meridian-region"), "b", "a header naming no region is ignored");
  const manifest = await new Client("c").fetch("/v2/fd/none/manifests/v1");
  assert.equal(manifest.status, 404);
  assert.equal(manifest.headers.get("meridian-region"), "c");
  assert.equal(await errorCode(manifest), "MANIFEST_UNKNOWN");
});

test("an upload session sticks to the region that opened it, whatever the header says later", async () => {
  const bytes = randomBytes(300_000);
  const digest = sha256(bytes);
  const a = new Client("a");
  const start = await a.fetch("/v2/fd/upload/blobs/uploads/", { method: "POST" });
  assert.equal(start.status, 202);
  assert.equal(start.headers.get("meridian-region"), "a");
  let location = start.headers.get("location")!;
  assert.match(
    location,
    /^\/v2\/fd\/upload\/blobs\/uploads\/[^/?]+\?_region=a$/,
    "relative, with its region",
  );
  const before = await routes("c", "a", "upload-session");
  const patch = await new Client("c").fetch(location, {
    method: "PATCH",
    headers: { "content-type": "application/octet-stream", "content-range": `0-${199_999}` },
    body: bytes.subarray(0, 200_000),
  });
  assert.equal(patch.status, 202, await patch.clone().text());
  assert.equal(patch.headers.get("meridian-region"), "a");
  location = patch.headers.get("location")!;
  assert.match(location, /_region=a$/);
  const put = await new Client("b").fetch(`${location}&digest=${digest}`, {
    method: "PUT",
    headers: { "content-type": "application/octet-stream", "content-range": `200000-${bytes.length - 1}` },
    body: bytes.subarray(200_000),
  });
  assert.equal(put.status, 201, await put.clone().text());
  assert.equal(put.headers.get("meridian-region"), "a");
  assert.equal(put.headers.get("location"), `/v2/fd/upload/blobs/${digest}`, "not an upload: no _region");
  assert.equal(await routes("c", "a", "upload-session"), before + 1);
  const blob = await a.fetch(`/v2/fd/upload/blobs/${digest}`);
  assert.equal(blob.status, 200);
  assert.equal(sha256(Buffer.from(await blob.arrayBuffer())), digest);

  const lost = await a.fetch("/v2/fd/upload/blobs/uploads/x?_region=nowhere", { method: "PATCH" });
  assert.equal(lost.status, 404);
  assert.equal(await errorCode(lost), "BLOB_UPLOAD_UNKNOWN");
});

test("writes go to the repository's home region; reads stay near", async () => {
  const rule = await new Client("c").fetch("/admin/v1/rules", {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ scope: "homed/", tagMerge: "home-region", home: "c" }),
  });
  assert.equal(rule.status, 200, await rule.clone().text());
  assert.equal(rule.headers.get("meridian-region"), "c");
  await eventually(async () => (await healthz()).homes.some((h) => h.scope === "homed/" && h.home === "c"));

  const before = await routes("a", "c", "home");
  const a = new Client("a");
  const config = await a.pushBlob(
    "homed/app",
    Buffer.from('{"architecture":"amd64","os":"linux"}'),
    OCI_CONFIG,
  );
  const layer = await a.pushBlob("homed/app", randomBytes(5000));
  const pushed = await a.pushManifest("homed/app", "v1", {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config,
    layers: [layer],
  });
  assert.equal(pushed.response.headers.get("meridian-region"), "c");
  assert.equal(await routes("a", "c", "home"), before + 3, "two blobs and a manifest, each sent home");
  const atHome = await fetch(`${mesh.regions.get("c")!.registry}/v2/homed/app/manifests/v1`, {
    method: "HEAD",
  });
  assert.equal(atHome.headers.get("docker-content-digest"), pushed.digest);
  const read = await a.fetch(`/v2/homed/app/blobs/${layer.digest}`, { method: "HEAD" });
  assert.equal(read.headers.get("meridian-region"), "a", "reads are not sent home");
});

test("read-your-writes: a token sends the read to a region that has applied it", async () => {
  mesh.partition("c");
  try {
    const a = new Client("a");
    const config = await a.pushBlob(
      "ryw/app",
      Buffer.from('{"architecture":"arm64","os":"linux"}'),
      OCI_CONFIG,
    );
    const pushed = await a.pushManifest("ryw/app", "v1", {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config,
      layers: [],
    });
    assert.equal(pushed.response.headers.get("meridian-region"), "a");
    const token = pushed.response.headers.get("meridian-seq") ?? `a:${(await peerStatus("a")).applied.a}`;
    const seq = Number(token.split(":")[1]);
    assert.match(token, /^a:\d+$/);
    assert.ok(((await peerStatus("c")).applied.a ?? 0) < seq, "c, cut off, has not applied the push");

    const before = await routes("c", "c", "read-your-writes");
    const res = await new Client("c").fetch("/v2/ryw/app/manifests/v1", {
      headers: { accept: OCI_MANIFEST, "meridian-seq": token },
    });
    assert.equal(res.status, 200);
    assert.notEqual(res.headers.get("meridian-region"), "c");
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), pushed.digest);
    assert.equal(await routes("c", "c", "read-your-writes"), before, "never to c");
    assert.ok((await routes("c", res.headers.get("meridian-region")!, "read-your-writes")) >= 1);
    const plain = await new Client("c").fetch("/v2/ryw/app/manifests/v1", { method: "HEAD" });
    assert.equal(plain.headers.get("meridian-region"), "c", "without the token: the client's own region");

    mesh.heal("c");
    await eventually(async () => (regionState(await healthz(), "c").applied.a ?? 0) >= seq, 30_000, 50);
    const healed = await new Client("c").fetch("/v2/ryw/app/manifests/v1", {
      headers: { accept: OCI_MANIFEST, "meridian-seq": token },
    });
    assert.equal(healed.status, 200);
    assert.equal(healed.headers.get("meridian-region"), "c", "once c has applied it, c is nearest");
  } finally {
    mesh.heal("c");
  }
});

test("malformed Meridian-Seq tokens are refused", async () => {
  for (const bad of ["a", "a:x", "a:-1", "zz:1", "a:1,", "a:1;b:2"]) {
    const res = await new Client("a").fetch("/v2/", { headers: { "meridian-seq": bad } });
    assert.equal(res.status, 400, bad);
    assert.equal(await errorCode(res), "UNSUPPORTED");
  }
});

test("metrics count every routing decision by client region, region and reason", async () => {
  const local = await routes("b", "b", "local");
  await new Client().fetch("/v2/");
  await new Client("b").fetch("/v2/");
  assert.equal(await routes("b", "b", "local"), local + 2);
  const text = await (await fetch(`${url}/metrics`)).text();
  for (const r of ["a", "b", "c"])
    assert.match(text, new RegExp(`meridian_front_door_region_up\\{region="${r}"\\} 1`));
});

/** An OCI image layout on disk with one image of gzip'd random layers, tagged v1. */
function layout(dir: string): { dir: string; digest: string } {
  return { dir, digest: writeImageLayout(dir, "v1") };
}

test("skopeo copies an image in and out through the front door", async () => {
  const host = url.replace(/^http:\/\//, "");
  const src = layout(join(work, "src"));
  await run("skopeo", [
    "copy",
    "--dest-tls-verify=false",
    `oci:${src.dir}:v1`,
    `docker://${host}/fd/skopeo:v1`,
  ]);
  const { stdout } = await run("skopeo", [
    "inspect",
    "--raw",
    "--tls-verify=false",
    `docker://${host}/fd/skopeo:v1`,
  ]);
  assert.equal(sha256(Buffer.from(stdout)), src.digest);
  const out = join(work, "out");
  await run("skopeo", ["copy", "--src-tls-verify=false", `docker://${host}/fd/skopeo:v1`, `oci:${out}:v1`]);
  const names = (dir: string) => readdirSync(join(dir, "blobs", "sha256")).sort();
  assert.deepEqual(names(out), names(src.dir));
  assert.ok((await routes("b", "b", "upload-session")) >= 2, "skopeo's uploads went back to their region");
});

test("a region whose node dies stops getting traffic: reads retry at once, probes mark it down, its home refuses writes", async () => {
  // An upload session in b, to be lost with it.
  const session = await new Client("b").fetch("/v2/fd/lost/blobs/uploads/", { method: "POST" });
  assert.equal(session.headers.get("meridian-region"), "b");

  // c's node dies with no traffic sent its way: the probes alone take it down.
  await mesh.regions.get("c")!.node.kill();
  const killedAt = Date.now();
  await eventually(async () => !regionState(await healthz(), "c").up, 10_000, 10);
  const elapsed = Date.now() - killedAt;
  assert.ok(
    elapsed <= 3 * INTERVAL_MS + 500,
    `c down ${elapsed} ms after it went dark (3 intervals: ${3 * INTERVAL_MS})`,
  );
  const fromC = await new Client("c").fetch("/v2/");
  assert.equal(fromC.status, 200);
  assert.notEqual(fromC.headers.get("meridian-region"), "c", "c's clients go to the nearest up region");
  assert.ok((await routes("c", "c", "local")) >= 1, "c was theirs before");

  // b's node dies and its clients' next read is the one that finds out: retried elsewhere at once.
  const triedB = await routes("b", "b", "local");
  const retried = await routes("b", "a", "nearest");
  await mesh.regions.get("b")!.node.kill();
  const read = await new Client().fetch("/v2/");
  assert.equal(read.status, 200);
  assert.equal(read.headers.get("meridian-region"), "a");
  assert.ok((await routes("b", "b", "local")) > triedB, "b was tried first");
  assert.equal(await routes("b", "a", "nearest"), retried + 1, "then a, in the same request");
  assert.equal(regionState(await healthz(), "b").up, false, "b is down at once");

  // The session opened in b died with it.
  const patch = await new Client("a").fetch(session.headers.get("location")!, {
    method: "PATCH",
    headers: { "content-type": "application/octet-stream" },
    body: randomBytes(10),
  });
  assert.equal(patch.status, 404);
  assert.equal(await errorCode(patch), "BLOB_UPLOAD_UNKNOWN");

  // homed/ lives in c: its writes are refused, naming the home and the way out.
  const write = await new Client("a").fetch("/v2/homed/app/blobs/uploads/", { method: "POST" });
  assert.equal(write.status, 503);
  const body = (await write.json()) as { errors: Array<{ code: string; message: string }> };
  assert.equal(body.errors[0]!.code, "UNAVAILABLE");
  assert.match(body.errors[0]!.message, /home region c\b.*meridian failover --from c --to a/);
  assert.ok((await routes("a", "none", "home")) >= 1);
  const other = await new Client("a").fetch("/v2/fd/other/blobs/uploads/", { method: "POST" });
  assert.equal(other.status, 202, "repositories without a home still take writes");

  // A token only c could satisfy: no region that is up has applied it, so a 503 after the wait.
  const ryw = await new Client("a").fetch("/v2/", { headers: { "meridian-seq": "c:999999999" } });
  assert.equal(ryw.status, 503);
  assert.equal(await errorCode(ryw), "UNAVAILABLE");
  assert.ok((await routes("a", "none", "read-your-writes")) >= 1);
});
