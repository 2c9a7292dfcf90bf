/**
 * Replication under faults, against real processes with chaos/ TCP proxies on
 * every cross-region link: a 30-second partition of a region while pushes go
 * on elsewhere, and a worker killed with SIGKILL in the middle of a copy.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { sleep } from "../../testing/faults.js";
import { cleanupStack, eventually, spawnMeridian } from "../../testing/harness.js";
import { startProxiedMesh } from "../../testing/mesh.js";
import { OciClient, sha256 } from "../../testing/oci-client.js";
import { streamEvents } from "../../testing/streams.js";

async function digestAt(client: OciClient, repo: string, ref: string): Promise<string | undefined> {
  const res = await client.fetch(`/v2/${repo}/manifests/${ref}`, {
    method: "HEAD",
    headers: { "cache-control": "only-if-cached" },
  });
  return res.status === 200 ? (res.headers.get("docker-content-digest") ?? undefined) : undefined;
}

test("a 30-second partition of b: a keeps accepting; after the heal b has every event exactly once", async (t) => {
  const after = cleanupStack(t);
  const mesh = await startProxiedMesh(after, ["a", "b", "c"]);
  const a = new OciClient(mesh.regions.get("a")!.registry);
  const b = new OciClient(mesh.regions.get("b")!.registry);
  const first = await a.pushRandomImage("part/app", "v0");
  await eventually(async () => (await digestAt(b, "part/app", "v0")) === first.digest, 30_000, 100);

  mesh.partition("b");
  const started = Date.now();
  const pushed: Array<[string, string]> = [];
  let i = 1;
  while (Date.now() - started < 30_000) {
    const img = await a.pushRandomImage("part/app", `v${i}`, 2, 50_000); // throws unless every write is 201
    pushed.push([`v${i}`, img.digest]);
    i++;
    await sleep(1_500);
  }
  t.diagnostic(`${pushed.length} images pushed into a during the partition`);
  assert.ok(pushed.length >= 10);
  // The partition is real: b has none of them, c (not partitioned) has them.
  const c = new OciClient(mesh.regions.get("c")!.registry);
  await eventually(
    async () => (await digestAt(c, "part/app", pushed.at(-1)![0])) === pushed.at(-1)![1],
    30_000,
    100,
  );
  for (const [tag] of pushed)
    assert.equal(await digestAt(b, "part/app", tag), undefined, `${tag} reached b through the partition`);

  mesh.heal("b");
  for (const [tag, digest] of pushed) {
    await eventually(async () => (await digestAt(b, "part/app", tag)) === digest, 60_000, 100);
  }
  // Exactly once: every event that originated in a appears once in b's stream.
  const fromA = (await streamEvents(mesh.regions.get("a")!.nats.url, "a")).filter((e) => e.origin === "a");
  await eventually(
    async () => {
      const atB = (await streamEvents(mesh.regions.get("b")!.nats.url, "b")).filter((e) => e.origin === "a");
      return atB.length >= fromA.length;
    },
    30_000,
    250,
  );
  const atB = (await streamEvents(mesh.regions.get("b")!.nats.url, "b")).filter((e) => e.origin === "a");
  const counts = new Map<string, number>();
  for (const e of atB) counts.set(e.id, (counts.get(e.id) ?? 0) + 1);
  assert.deepEqual(
    [...counts.values()].filter((n) => n !== 1),
    [],
    "an event replicated more than once",
  );
  assert.deepEqual(
    [...counts.keys()].sort(),
    fromA.map((e) => e.id).sort(),
    "b's replicas are exactly a's events",
  );
  for (const e of atB) assert.equal(e.cause, e.id);
});

test("kill -9 of b's worker in the middle of a large copy: the copy resumes from its offset and verifies", async (t) => {
  const after = cleanupStack(t);
  const mesh = await startProxiedMesh(after, ["a", "b"]);
  const a = new OciClient(mesh.regions.get("a")!.registry);
  const b = new OciClient(mesh.regions.get("b")!.registry);
  const regionB = mesh.regions.get("b")!;
  // Slow the a → b blob link so the copy is long enough to interrupt.
  mesh.proxies.get("b")!.get("a")!.grpc.setDelay(15);
  const big = randomBytes(24 << 20);
  const layer = await a.pushBlob("big/app", big);
  const config = await a.pushBlob(
    "big/app",
    Buffer.from('{"os":"linux"}'),
    "application/vnd.oci.image.config.v1+json",
  );
  const { digest } = await a.pushManifest("big/app", "v1", {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config,
    layers: [layer],
  });

  // Wait until part of the layer is on b's disk, then kill the worker.
  const partials = join(regionB.dir, "replication", "partials");
  const marker = join(partials, `sha256-${layer.digest.slice(7)}`);
  let copied = 0;
  await eventually(
    () => {
      try {
        const id = readFileSync(marker, "utf8").trim();
        copied = statSync(join(regionB.dir, "store", "uploads", id, "data")).size;
      } catch {
        return false;
      }
      return copied >= 2 << 20;
    },
    60_000,
    20,
  );
  await regionB.worker.kill();
  const id = readFileSync(marker, "utf8").trim();
  const onDisk = statSync(join(regionB.dir, "store", "uploads", id, "data")).size;
  t.diagnostic(`killed with ${onDisk} of ${big.length} bytes copied`);
  assert.ok(onDisk > 0 && onDisk < big.length, "the worker died mid-copy");
  assert.equal(await digestAt(b, "big/app", "v1"), undefined, "nothing visible before the copy completes");
  assert.equal(
    (
      await b.fetch(`/v2/big/app/blobs/${layer.digest}`, {
        method: "HEAD",
        headers: { "cache-control": "only-if-cached" },
      })
    ).status,
    404,
  );

  mesh.proxies.get("b")!.get("a")!.grpc.setDelay(0);
  const worker = await spawnMeridian(after, "replication/main.js", regionB.workerEnv);
  await eventually(async () => (await digestAt(b, "big/app", "v1")) === digest, 60_000, 100);
  const blob = Buffer.from(await (await b.fetch(`/v2/big/app/blobs/${layer.digest}`)).arrayBuffer());
  assert.equal(sha256(blob), layer.digest);
  const resumed = worker
    .log()
    .split("\n")
    .filter((l) => l.includes('"blob copy resumed"'))
    .map((l) => JSON.parse(l) as { offset: number; digest: string });
  assert.ok(
    resumed.some((r) => r.digest === layer.digest && r.offset >= onDisk),
    "the copy resumed from its offset",
  );
  const metrics = await (await fetch(`${worker.info.metrics}/metrics`)).text();
  const bytes = Number(
    /meridian_replication_bytes_total\{[^}]*src="a"[^}]*\} (\d+)/.exec(metrics)?.[1] ?? "0",
  );
  assert.ok(bytes < big.length, `the restarted worker fetched only the rest (${bytes} bytes)`);
  // The resumed copy's marker goes as the copy commits; give a concurrent cleanup a moment.
  await eventually(() => readdirSync(partials).length === 0, 10_000, 50).catch(() => {
    assert.deepEqual(readdirSync(partials), [], "no partial copy left behind");
  });
});
