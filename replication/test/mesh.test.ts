/**
 * Three regions from `meridian up`, every part a real process: a push to one
 * region becomes pullable by tag in the others, with identical digests, and
 * never before its whole closure is there.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { cleanupStack, eventually } from "../../testing/harness.js";
import { natsIdentity, type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_INDEX, OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
let a: OciClient;
let b: OciClient;
let c: OciClient;

before(async () => {
  mesh = await startMesh(cleanup, ["a", "b", "c"]);
  a = new OciClient(mesh.regions.get("a")!.registry);
  b = new OciClient(mesh.regions.get("b")!.registry);
  c = new OciClient(mesh.regions.get("c")!.registry);
});

async function digestAt(client: OciClient, repo: string, ref: string): Promise<string | undefined> {
  const res = await client.fetch(`/v2/${repo}/manifests/${ref}`, {
    method: "HEAD",
    headers: { "cache-control": "only-if-cached" },
  });
  return res.status === 200 ? (res.headers.get("docker-content-digest") ?? undefined) : undefined;
}

test("an image pushed to a is pullable by tag in b and c, bytes and digests identical", async () => {
  const img = await a.pushRandomImage("mesh/app", "v1", 3, 200_000);
  for (const client of [b, c]) {
    await eventually(async () => (await digestAt(client, "mesh/app", "v1")) === img.digest, 30_000, 100);
    const manifest = await client.fetch("/v2/mesh/app/manifests/v1");
    assert.equal(sha256(Buffer.from(await manifest.arrayBuffer())), img.digest);
    for (const d of [img.config, ...img.layers]) {
      const blob = await client.fetch(`/v2/mesh/app/blobs/${d.digest}`);
      assert.equal(blob.status, 200);
      assert.equal(sha256(Buffer.from(await blob.arrayBuffer())), d.digest);
    }
  }
});

test("a tag is never visible in another region before everything it points to", async () => {
  const violations: string[] = [];
  let seen = 0;
  let stop = false;
  const watcher = (async () => {
    while (!stop) {
      for (let i = 0; i < 5; i++) {
        const res = await b.fetch(`/v2/mesh/closure/manifests/t${i}`);
        if (res.status !== 200) continue;
        seen++;
        const m = (await res.json()) as { config: { digest: string }; layers: Array<{ digest: string }> };
        for (const d of [m.config, ...m.layers]) {
          const blob = await b.fetch(`/v2/mesh/closure/blobs/${d.digest}`, {
            method: "HEAD",
            headers: { "cache-control": "only-if-cached" },
          });
          if (blob.status !== 200) violations.push(`t${i}: ${d.digest} answered ${blob.status}`);
        }
      }
    }
  })();
  const pushed: string[] = [];
  for (let i = 0; i < 5; i++)
    pushed.push((await a.pushRandomImage("mesh/closure", `t${i}`, 4, 300_000)).digest);
  for (let i = 0; i < 5; i++) {
    await eventually(async () => (await digestAt(b, "mesh/closure", `t${i}`)) === pushed[i], 30_000, 50);
  }
  stop = true;
  await watcher;
  assert.ok(seen >= 5, `the watcher saw the tags (${seen} sightings)`);
  assert.deepEqual(violations, []);
});

test("a multi-arch index replicates with its child manifests", async () => {
  const amd = await a.pushRandomImage("mesh/multi", "amd64", 1, 1000);
  const arm = await a.pushRandomImage("mesh/multi", "arm64", 1, 1000);
  const child = (img: { digest: string; manifest: unknown }, architecture: string) => ({
    mediaType: OCI_MANIFEST,
    digest: img.digest,
    size: Buffer.byteLength(JSON.stringify(img.manifest)),
    platform: { architecture, os: "linux" },
  });
  const index = await a.pushManifest(
    "mesh/multi",
    "latest",
    { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [child(amd, "amd64"), child(arm, "arm64")] },
    OCI_INDEX,
  );
  await eventually(async () => (await digestAt(c, "mesh/multi", "latest")) === index.digest, 30_000, 100);
  for (const d of [amd.digest, arm.digest]) assert.equal(await digestAt(c, "mesh/multi", d), d);
});

test("tag moves and deletions reach every region", async () => {
  await a.pushRandomImage("mesh/moves", "latest");
  const second = await a.pushRandomImage("mesh/moves", "latest");
  const gone = await a.pushRandomImage("mesh/moves", "gone");
  await eventually(async () => (await digestAt(b, "mesh/moves", "gone")) === gone.digest, 30_000, 100);
  assert.equal((await a.fetch("/v2/mesh/moves/manifests/gone", { method: "DELETE" })).status, 202);
  for (const client of [b, c]) {
    await eventually(
      async () => (await digestAt(client, "mesh/moves", "latest")) === second.digest,
      30_000,
      100,
    );
    await eventually(async () => (await digestAt(client, "mesh/moves", "gone")) === undefined, 30_000, 100);
  }
});

test("a push to b reaches a and c too (every region replicates from every other)", async () => {
  const img = await b.pushRandomImage("mesh/from-b", "v1", 1, 5000);
  for (const client of [a, c]) {
    await eventually(async () => (await digestAt(client, "mesh/from-b", "v1")) === img.digest, 30_000, 100);
  }
});

test("workers report replication lag and bytes on /metrics", async () => {
  const metrics = await (await fetch(`${mesh.regions.get("b")!.metrics!.worker}/metrics`)).text();
  const count = /meridian_replication_lag_seconds_count\{[^}]*src="a"[^}]*dst="b"[^}]*\} (\d+)/.exec(metrics);
  assert.ok(count && Number(count[1]) > 0, "lag observed for a → b");
  const bytes = /meridian_replication_bytes_total\{[^}]*src="a"[^}]*dst="b"[^}]*\} (\d+)/.exec(metrics);
  assert.ok(bytes && Number(bytes[1]) > 1_000_000, "bytes copied from a to b");
});

test("meridian status shows every region up, with replication lag and bytes", async () => {
  const { execFile } = await import("node:child_process");
  const { promisify } = await import("node:util");
  const { CLI_ENTRY } = await import("../../testing/harness.js");
  const run = promisify(execFile);
  const { stdout } = await run(process.execPath, [CLI_ENTRY, "status", "--data", mesh.dataDir, "--json"]);
  const report = JSON.parse(stdout) as {
    regions: Array<{
      region: string;
      up: boolean;
      rttMs: number;
      peers: Record<string, { up: boolean }>;
      replication: Record<string, { events?: number; bytes?: number; lagP99Ms?: number }>;
    }>;
  };
  assert.deepEqual(
    report.regions.map((r) => [r.region, r.up]),
    [
      ["a", true],
      ["b", true],
      ["c", true],
    ],
  );
  const b = report.regions.find((r) => r.region === "b")!;
  assert.ok(b.rttMs >= 0);
  assert.ok((b.replication.a?.events ?? 0) > 0, "events replicated a → b");
  assert.ok((b.replication.a?.bytes ?? 0) > 0, "bytes copied a → b");
  assert.ok(b.replication.a?.lagP99Ms !== undefined, "a lag figure");
  await eventually(
    async () => {
      const again = JSON.parse(
        (await run(process.execPath, [CLI_ENTRY, "status", "--data", mesh.dataDir, "--json"])).stdout,
      );
      return (
        Object.values(again.regions[0].peers as Record<string, { up: boolean }>).filter((p) => p.up)
          .length === 2
      );
    },
    10_000,
    250,
  );
  const table = (await run(process.execPath, [CLI_ENTRY, "status", "--data", mesh.dataDir])).stdout;
  assert.match(table, /^region\s+peer\s+rtt\s+applied\s+epoch/m);
  for (const r of ["a", "b", "c"]) assert.match(table, new RegExp(`^${r}\\s+up`, "m"));
  // All three hear each other and no failover happened: epoch 0, no region fenced.
  assert.doesNotMatch(table, /refuses home writes/);
  assert.deepEqual(
    JSON.parse(
      (await run(process.execPath, [CLI_ENTRY, "status", "--data", mesh.dataDir, "--json"])).stdout,
    ).regions.map((r: { epoch: number; fence: string }) => [r.epoch, r.fence]),
    [
      [0, ""],
      [0, ""],
      [0, ""],
    ],
  );
});

test("a peer's Status reports, per source region, the last sequence of its stream applied there", async () => {
  const { PeerClient, peerCredentials } = await import("../../mesh-client/peer-client.js");
  const { parseMesh } = await import("../../protocol/mesh.js");
  const { streamName, subjectFor } = await import("../../protocol/events.js");
  const { jetstreamManager } = await import("@nats-io/jetstream");
  const { connect } = await import("@nats-io/transport-node");
  const { natsConnectOptions } = await import("../../node/data/nats-connect.js");
  const { readFileSync } = await import("node:fs");
  const { join } = await import("node:path");
  const meshDoc = parseMesh(JSON.parse(readFileSync(join(mesh.dataDir, "mesh.json"), "utf8")));
  const latest = await a.pushRandomImage("mesh/status", "v1");
  // The push's last event (manifest + tag) and its sequence in a's stream.
  const nc = await connect({
    ...natsConnectOptions(natsIdentity(mesh, "operator")),
    servers: mesh.regions.get("a")!.nats,
  });
  const pushed = await (await jetstreamManager(nc)).streams.getMessage(streamName("a"), {
    last_by_subj: subjectFor("a", { type: "tag.set", repo: "mesh/status", tag: "v1" } as never),
  });
  await nc.close();
  assert.ok(pushed !== null);
  await eventually(async () => (await digestAt(b, "mesh/status", "v1")) === latest.digest, 30_000, 100);
  const client = new PeerClient("b", meshDoc.regions[1]!.grpc, peerCredentials(meshDoc, "a"));
  try {
    await eventually(async () => Number((await client.status("test")).applied.a) >= pushed!.seq, 10_000, 100);
    const s = await client.status("test");
    assert.equal(s.region, "b");
    assert.ok(Number(s.applied.b) > 0, "b's own stream position");
    // The control plane's view of the others, which orders copy sources.
    assert.deepEqual(s.peers.map((p) => p.region).sort(), ["a", "c"]);
    for (const p of s.peers) assert.ok(p.up && p.rttMs > 0, `b sees ${p.region} up with an RTT`);
  } finally {
    client.close();
  }
});
