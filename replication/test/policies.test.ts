/**
 * Policies against real processes: three regions (nats-server, node, peer,
 * worker each) with chaos/ proxies on every cross-region link. Admin events
 * are appended to a region's log the way the admin API does (one event each).
 *
 * One mesh for the file; steps run in order and each leaves the mesh healthy:
 * filters, deletes off, the delete breaker and its reset, a manual run,
 * backfill of content whose events the destination never received, and a
 * conflict recorded after concurrent tag writes under a partition.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { parseProm } from "../../mesh-client/mesh-status.js";
import { JetStreamLog } from "../../node/data/jetstream-log.js";
import { type EventBody, makeEvent } from "../../protocol/events.js";
import { parsePolicy } from "../../protocol/policy.js";
import { sleep } from "../../testing/faults.js";
import { type After, cleanupStack, eventually, spawnMeridian } from "../../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";
import { streamEvents as readStream, skipConsumerToEnd } from "../../testing/streams.js";

let mesh: ProxiedMesh;
let cleanup: After;
const logs = new Map<string, JetStreamLog>();
const client = (region: string) => new OciClient(mesh.regions.get(region)!.registry);

/** Append an admin event in `region` (what the admin API does). */
async function admin(region: string, body: EventBody): Promise<void> {
  const log = logs.get(region)!;
  const event = makeEvent(body, {
    id: randomUUID(),
    origin: region,
    hlc: { wall: Date.now(), logical: 0 },
    actor: "test",
  });
  await log.append(event);
}

/** Every policy here narrows its link, so each is exclusive (the default mirror would carry everything). */
async function setPolicy(region: string, raw: Record<string, unknown>): Promise<void> {
  const policy = parsePolicy({ exclusive: true, ...raw });
  unsettled.add(policy.name);
  await admin(region, {
    type: "policy.set",
    name: policy.name,
    policy: policy as unknown as Record<string, unknown>,
  });
}

async function digestAt(region: string, repo: string, ref: string): Promise<string | undefined> {
  const res = await client(region).fetch(`/v2/${repo}/manifests/${ref}`, {
    method: "HEAD",
    headers: { "cache-control": "only-if-cached" },
  });
  return res.status === 200 ? (res.headers.get("docker-content-digest") ?? undefined) : undefined;
}

/**
 * Wait until `region` shows `repo:ref` at `digest` (undefined: absent); on a
 * timeout the error carries the region's worker log, for the post-mortem.
 */
async function arrives(region: string, repo: string, ref: string, digest: string | undefined, ms = 30_000) {
  try {
    await eventually(async () => (await digestAt(region, repo, ref)) === digest, ms, 100);
  } catch (err) {
    const log = mesh.regions.get(region)!.worker.log().slice(-6_000);
    throw new Error(
      `${repo}:${ref} not ${digest ?? "absent"} in ${region}: ${(err as Error).message}\n${log}`,
    );
  }
}

/** A series of `region`'s worker metrics page (undefined: absent). */
async function workerMetric(region: string, name: string, labels: Record<string, string>) {
  const text = await (await fetch(`${mesh.regions.get(region)!.worker.info.metrics}/metrics`)).text();
  return parseProm(text).find(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  )?.value;
}

/** Every event in a region's stream. */
const streamEvents = (region: string) => readStream(mesh.regions.get(region)!.nats.url, region);

/** Wait until the policy has reached every worker's view (they read policies from their own view). */
/** Policies set since the last settle(). */
const unsettled = new Set<string>();

/**
 * Wait until every region's log holds the policies set since the last call
 * (their nodes list them), then a moment for the workers' own views, which
 * follow the same logs: an event that reaches a worker before the policy
 * selecting it is judged without it.
 */
async function settle(): Promise<void> {
  for (const region of mesh.regions.keys()) {
    await eventually(
      async () => {
        const res = await client(region).fetch("/admin/v1/policies");
        const { policies } = (await res.json()) as { policies: Array<{ name: string }> };
        const names = new Set(policies.map((p) => p.name));
        return [...unsettled].every((n) => names.has(n));
      },
      30_000,
      50,
    );
  }
  unsettled.clear();
  await sleep(500);
}

describe("replication policies", () => {
  cleanup = cleanupStack({ after });
  before(async () => {
    mesh = await startProxiedMesh(cleanup, ["a", "b", "c"], {
      worker: {
        MERIDIAN_ANTI_ENTROPY_INTERVAL_MS: "0",
        MERIDIAN_DELETE_BREAKER_MIN_TAGS: "4",
        MERIDIAN_DELETE_BREAKER_SHARE: "0.5",
      },
    });
    for (const [name, r] of mesh.regions) {
      const log = JetStreamLog.open({
        servers: [r.nats.url],
        region: name,
        name: `test-admin-${name}`,
        logger: pino({ level: "silent" }),
      });
      await log.ready();
      logs.set(name, log);
      cleanup(() => log.close());
    }
  });

  test("repository and tag filters: a→b carries prod/** tags v*, a→c (no policy) mirrors everything", async () => {
    await setPolicy("a", {
      name: "prod-to-b",
      source: "a",
      destination: "b",
      repositories: ["prod/**"],
      tags: ["v*"],
    });
    await settle();
    const a = client("a");
    const v1 = await a.pushRandomImage("prod/app", "v1");
    const dev = await a.pushRandomImage("prod/app", "dev");
    const other = await a.pushRandomImage("misc/tool", "v1");
    for (const [repo, tag, img] of [
      ["prod/app", "v1", v1],
      ["prod/app", "dev", dev],
      ["misc/tool", "v1", other],
    ] as const) {
      await arrives("c", repo, tag, img.digest);
    }
    await arrives("b", "prod/app", "v1", v1.digest);
    // Every blob of the replicated image is pullable in b.
    for (const layer of v1.layers)
      assert.equal(
        (
          await client("b").fetch(`/v2/prod/app/blobs/${layer.digest}`, {
            method: "HEAD",
            headers: { "cache-control": "only-if-cached" },
          })
        ).status,
        200,
      );
    await sleep(1_000);
    assert.equal(await digestAt("b", "prod/app", "dev"), undefined, "dev is not selected");
    assert.equal(await digestAt("b", "misc/tool", "v1"), undefined, "misc/** is not selected");
    assert.equal(
      (
        await client("b").fetch(`/v2/prod/app/manifests/${dev.digest}`, {
          method: "HEAD",
          headers: { "cache-control": "only-if-cached" },
        })
      ).status,
      404,
    );
  });

  test("deletes travel only where a policy carries them", async () => {
    const a = client("a");
    const res = await a.fetch("/v2/prod/app/manifests/v1", { method: "DELETE" });
    assert.equal(res.status, 202);
    await arrives("c", "prod/app", "v1", undefined);
    await sleep(1_000);
    assert.ok((await digestAt("b", "prod/app", "v1")) !== undefined, "prod-to-b has deletes off");
  });

  test("the delete breaker holds a mass deletion until it is reset, and raises an alert", async () => {
    const a = client("a");
    const tags = ["t1", "t2", "t3", "t4", "t5", "t6"];
    const image = await a.pushRandomImage("brk/app", "t0", 1, 1000);
    const bytes = JSON.stringify(image.manifest);
    for (const tag of tags) await a.pushManifest("brk/app", tag, bytes);
    await arrives("c", "brk/app", "t6", image.digest);
    const link = { src: "a", dst: "c" };
    const tripsBefore = await workerMetric("c", "meridian_replication_delete_breaker_trips_total", link);
    assert.equal(await workerMetric("c", "meridian_replication_delete_breaker_tripped", link), 0);
    // 7 tags in c; deleting 5 passes the 50% share on the fourth.
    for (const tag of tags.slice(0, 5))
      assert.equal((await a.fetch(`/v2/brk/app/manifests/${tag}`, { method: "DELETE" })).status, 202);
    await eventually(
      async () =>
        (await streamEvents("c")).some(
          (e) => e.type === "alert.raised" && e.kind === "delete-breaker" && e.repo === "brk/app",
        ),
      30_000,
      200,
    );
    const shown = await Promise.all(tags.map((t) => digestAt("c", "brk/app", t)));
    assert.deepEqual(
      shown.map((d) => d !== undefined),
      [false, false, false, true, true, true],
      "three deletions passed, the fourth is held",
    );
    // What deploy/prometheus/rules.yml MeridianDeleteBreakerTripped reads: the link is held, one more trip.
    assert.equal(await workerMetric("c", "meridian_replication_delete_breaker_tripped", link), 1);
    assert.equal(
      await workerMetric("c", "meridian_replication_delete_breaker_tripped", { src: "b", dst: "c" }),
      0,
    );
    assert.ok(
      (await workerMetric("c", "meridian_replication_delete_breaker_trips_total", link))! >
        (tripsBefore ?? -1),
      "the trip is counted",
    );
    // The stream from a is held: a later push from a waits behind it.
    const later = await a.pushRandomImage("brk/other", "x", 1, 100);
    await sleep(1_500);
    assert.equal(await digestAt("c", "brk/other", "x"), undefined);
    await admin("c", { type: "breaker.reset", name: "default" });
    await arrives("c", "brk/app", "t5", undefined);
    await arrives("c", "brk/other", "x", later.digest);
    assert.equal(await digestAt("c", "brk/app", "t6"), image.digest);
    assert.equal(
      await workerMetric("c", "meridian_replication_delete_breaker_tripped", link),
      0,
      "reset: no longer held",
    );
  });

  test("a manual policy replicates nothing on push, and everything it selects on a run", async () => {
    await setPolicy("b", {
      name: "manual-to-b",
      source: "a",
      destination: "b",
      repositories: ["manual/**"],
      trigger: "manual",
    });
    await settle();
    const img = await client("a").pushRandomImage("manual/app", "v1");
    await arrives("c", "manual/app", "v1", img.digest);
    await sleep(1_000);
    assert.equal(await digestAt("b", "manual/app", "v1"), undefined);
    const runId = randomUUID();
    await admin("a", { type: "policy.run", name: "manual-to-b", runId });
    await arrives("b", "manual/app", "v1", img.digest);
    await eventually(
      async () =>
        (await streamEvents("b")).some(
          (e) =>
            e.type === "policy.run.finished" &&
            e.runId === runId &&
            e.outcome === "ok" &&
            (e.stats["set-tag"] ?? 0) >= 1,
        ),
      30_000,
      200,
    );
  });

  test("backfill: content whose events c never received arrives by anti-entropy when its worker starts", async () => {
    const c = mesh.regions.get("c")!;
    await c.worker.stop();
    const img = await client("a").pushRandomImage("late/app", "v1");
    // c's consumer on a's stream now starts after everything: the events are gone for c.
    await skipConsumerToEnd(mesh.regions.get("a")!.nats.url, "a", "c");
    c.worker = await spawnMeridian(cleanup, "replication/main.js", c.workerEnv);
    await arrives("c", "late/app", "v1", img.digest);
    const pulled = await client("c").fetch(`/v2/late/app/blobs/${img.layers[0]!.digest}`);
    assert.equal(pulled.status, 200);
  });

  test("concurrent tag writes under a partition converge, and the losing write is recorded", async () => {
    // prod/** tags v* is what prod-to-b carries from a to b.
    const first = await client("a").pushRandomImage("prod/conf", "v-base", 1, 100);
    const second = await client("b").pushRandomImage("prod/conf", "v-other", 1, 100);
    for (const r of ["a", "b", "c"]) {
      await arrives(r, "prod/conf", "v-base", first.digest);
      await arrives(r, "prod/conf", "v-other", second.digest);
    }
    mesh.partition("b");
    await client("a").pushManifest("prod/conf", "v-live", JSON.stringify(first.manifest));
    await sleep(5);
    await client("b").pushManifest("prod/conf", "v-live", JSON.stringify(second.manifest));
    mesh.heal("b");
    let agreed: string | undefined;
    await eventually(
      async () => {
        const seen = await Promise.all(["a", "b", "c"].map((r) => digestAt(r, "prod/conf", "v-live")));
        agreed = seen[0];
        return seen[0] !== undefined && seen.every((d) => d === seen[0]);
      },
      60_000,
      200,
    );
    assert.equal(agreed, second.digest, "the later write (b's) wins under lww");

    await eventually(
      async () =>
        (await streamEvents("b")).some(
          (e) =>
            e.type === "tag.conflict" &&
            e.tag === "v-live" &&
            e.loser.digest === first.digest &&
            e.winner.digest === second.digest,
        ),
      30_000,
      200,
    );
  });

  test("signed-only carries signed images with their signatures; a referrer hold waits for the SBOM; a platform filter copies only that child", async () => {
    await setPolicy("a", {
      name: "signed-to-b",
      source: "a",
      destination: "b",
      repositories: ["signed/**"],
      signedOnly: true,
    });
    await setPolicy("a", {
      name: "hold-to-b",
      source: "a",
      destination: "b",
      repositories: ["hold/**"],
      holdTagsForReferrers: ["application/vnd.example.sbom"],
    });
    await setPolicy("a", {
      name: "arm-to-b",
      source: "a",
      destination: "b",
      repositories: ["multi/**"],
      platforms: ["linux/arm64"],
    });
    await settle();
    const a = client("a");
    /** Push an artifact whose subject is `subject`, by digest (as cosign and oras do). */
    const referrer = async (
      repo: string,
      subject: { digest: string; size: number },
      artifactType: string,
    ) => {
      const config = await a.pushBlob(repo, Buffer.from("{}"), "application/vnd.oci.empty.v1+json");
      const layer = await a.pushBlob(repo, Buffer.from(`${artifactType} of ${subject.digest}`));
      const body = JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        artifactType,
        config,
        layers: [layer],
        subject: { mediaType: OCI_MANIFEST, ...subject },
      });
      return a.pushManifest(repo, sha256(Buffer.from(body)), body);
    };
    const size = (m: unknown) => Buffer.byteLength(JSON.stringify(m));

    // signed-only
    const unsigned = await a.pushRandomImage("signed/app", "v1", 1, 100);
    const signedImg = await a.pushRandomImage("signed/app", "v2", 1, 100);
    const sig = await referrer(
      "signed/app",
      { digest: signedImg.digest, size: size(signedImg.manifest) },
      "application/vnd.dev.cosign.artifact.sig.v1+json",
    );
    await arrives("b", "signed/app", "v2", signedImg.digest);
    const refs = await (await client("b").fetch(`/v2/signed/app/referrers/${signedImg.digest}`)).json();
    assert.deepEqual(
      (refs as { manifests: Array<{ digest: string }> }).manifests.map((m) => m.digest),
      [sig.digest],
      "the signature travelled with its subject",
    );
    assert.equal(await digestAt("b", "signed/app", "v1"), undefined, "unsigned v1 stays behind");
    assert.notEqual(unsigned.digest, signedImg.digest);

    // referrer hold
    const held = await a.pushRandomImage("hold/app", "v1", 1, 100);
    await arrives("c", "hold/app", "v1", held.digest);
    await sleep(1_000);
    assert.equal(await digestAt("b", "hold/app", "v1"), undefined, "held until its SBOM exists");
    await referrer(
      "hold/app",
      { digest: held.digest, size: size(held.manifest) },
      "application/vnd.example.sbom",
    );
    await arrives("b", "hold/app", "v1", held.digest);

    // platform filter on an index
    // Children pushed by digest only: the index's tag is what selects them.
    const untagged = async (arch: string) => {
      const config = await a.pushBlob(
        "multi/app",
        Buffer.from(`{"architecture":"${arch}"}`),
        "application/vnd.oci.image.config.v1+json",
      );
      const layer = await a.pushBlob("multi/app", Buffer.from(`layer for ${arch}`));
      const manifest = { schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] };
      const body = JSON.stringify(manifest);
      await a.pushManifest("multi/app", sha256(Buffer.from(body)), body);
      return { digest: sha256(Buffer.from(body)), manifest };
    };
    const amd = await untagged("amd64");
    const arm = await untagged("arm64");
    const index = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: amd.digest,
          size: size(amd.manifest),
          platform: { os: "linux", architecture: "amd64" },
        },
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: arm.digest,
          size: size(arm.manifest),
          platform: { os: "linux", architecture: "arm64", variant: "v8" },
        },
      ],
    };
    const pushed = await a.pushManifest(
      "multi/app",
      "v1",
      JSON.stringify(index),
      "application/vnd.oci.image.index.v1+json",
    );
    await arrives("b", "multi/app", "v1", pushed.digest);
    const head = (d: string) =>
      client("b")
        .fetch(`/v2/multi/app/manifests/${d}`, {
          method: "HEAD",
          headers: { "cache-control": "only-if-cached" },
        })
        .then((r) => r.status);
    assert.equal(await head(arm.digest), 200);
    assert.equal(await head(amd.digest), 404);
  });

  test("a link's bandwidth budget paces the copies on it", async () => {
    await setPolicy("a", {
      name: "bw-to-b",
      source: "a",
      destination: "b",
      repositories: ["bw/**"],
      bandwidth: "1MiB/s",
    });
    // The serving peer re-reads policies once its view applies the change (it used to poll every 2 s).
    await sleep(1_000);
    // c is cut off so b copies from a, over the budgeted link.
    mesh.partition("c");
    try {
      const started = Date.now();
      const img = await client("a").pushRandomImage("bw/app", "v1", 1, 3 * 1024 * 1024);
      await arrives("b", "bw/app", "v1", img.digest, 60_000);
      const took = Date.now() - started;
      // One second's worth goes at once, the other 2 MiB at 1 MiB/s.
      assert.ok(took >= 1_800, `3 MiB over a 1 MiB/s link took ${took} ms`);
    } finally {
      mesh.heal("c");
    }
  });

  test("a schedule policy copies on its cron, not on push", async () => {
    // Every 3 seconds (croner's six-field form, seconds first).
    await setPolicy("a", {
      name: "sched-to-b",
      source: "a",
      destination: "b",
      repositories: ["sched/**"],
      trigger: { schedule: "*/3 * * * * *" },
    });
    await settle();
    const img = await client("a").pushRandomImage("sched/app", "v1", 1, 100);
    await arrives("b", "sched/app", "v1", img.digest);
    const pushed = (await streamEvents("b")).filter((e) => "repo" in e && e.repo === "sched/app");
    assert.ok(
      pushed.length > 0 && pushed.every((e) => e.cause !== e.id),
      "replayed by a run (derived ids), not replicated event by event",
    );
  });
});
