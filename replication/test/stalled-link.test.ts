/**
 * A stalled link is visible, and a frozen region catches up within seconds
 * (issue 11, finding 3). Regions as separate processes, the worker of a
 * reaching b through chaos/ TCP proxies.
 *
 * What made the catch-up after a long freeze take 75–120 s: every view of a
 * region's log (the node's, the peer's, the worker's) tails it through an
 * ordered consumer, an ephemeral one the server deletes after 5 minutes of
 * inactivity. A freeze of a region longer than that (the server's clock runs
 * on while it is stopped) has the server delete them the moment it resumes,
 * and the tail then waited for two missed 15-second idle heartbeats and a
 * reset before asking again: the replica was in a's log, the worker said 0
 * pending (rightly), and a's node did not serve it for over a minute. The
 * first test does what the server does — deletes the consumers of a frozen
 * node — without waiting 5 minutes.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { streamName } from "../../protocol/events.js";
import type { Mesh } from "../../protocol/mesh.js";
import { sleep } from "../../testing/faults.js";
import { cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../../testing/mesh.js";
import { OciClient } from "../../testing/oci-client.js";

let mesh: ProxiedMesh;
const cleanup = cleanupStack({ after });

/** Whether `region` itself holds repo:tag (no fetching elsewhere). */
async function holds(region: string, repo: string, tag: string): Promise<boolean> {
  const res = await new OciClient(mesh.regions.get(region)!.registry)
    .fetch(`/v2/${repo}/manifests/${tag}`, {
      method: "HEAD",
      headers: { "cache-control": "only-if-cached" },
      signal: AbortSignal.timeout(3_000),
    })
    .catch(() => undefined);
  return res?.status === 200;
}

/** Seconds from now until `region` holds repo:tag (gives up after `limitMs`). */
async function secondsUntilHeld(region: string, repo: string, tag: string, limitMs: number): Promise<number> {
  const started = Date.now();
  while (!(await holds(region, repo, tag))) {
    if (Date.now() - started > limitMs) return Number.POSITIVE_INFINITY;
    await sleep(100);
  }
  return (Date.now() - started) / 1000;
}

/** One gauge of a's worker for the link b → a (undefined: not exported). */
async function linkGauge(name: string): Promise<number | undefined> {
  const text = await (
    await fetch(`${mesh.regions.get("a")!.worker.info.metrics}/metrics`, {
      signal: AbortSignal.timeout(3_000),
    })
  ).text();
  const line = text
    .split("\n")
    .find((l) => l.startsWith(`${name}{`) && l.includes('src="b"') && l.includes('dst="a"'));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** Freeze (SIGSTOP) processes, run `during`, and always resume them. */
async function frozen<T>(pids: number[], during: () => Promise<T>): Promise<T> {
  for (const pid of pids) process.kill(pid, "SIGSTOP");
  try {
    return await during();
  } finally {
    for (const pid of pids) process.kill(pid, "SIGCONT");
  }
}

describe("a stalled link", () => {
  before(async () => {
    mesh = await startProxiedMesh(cleanup, ["a", "b"]);
    // Resumed whatever happens (a failed assertion inside `frozen` resumes too).
    cleanup(() => {
      for (const r of mesh.regions.values())
        for (const p of [r.node, r.peer, r.worker])
          if (p.child.pid !== undefined && p.child.exitCode === null) process.kill(p.child.pid, "SIGCONT");
    });
    const b = new OciClient(mesh.regions.get("b")!.registry);
    await b.pushRandomImage("stall/app", "v0");
    await eventually(() => holds("a", "stall/app", "v0"), 30_000, 100);
  });

  test("a frozen region whose log consumers the server dropped serves what b pushed within seconds of SIGCONT", async (t) => {
    const a = mesh.regions.get("a")!;
    const b = new OciClient(mesh.regions.get("b")!.registry);
    const pids = [a.node, a.peer, a.worker].map((p) => p.child.pid!);
    await frozen(pids, async () => {
      // What a's server does to a frozen client's ordered consumers once their
      // inactive threshold (5 min) has passed.
      const nc = await connect({ servers: a.nats.url, name: "stalled-link-test" });
      try {
        const jsm = await jetstreamManager(nc);
        let dropped = 0;
        for await (const c of jsm.consumers.list(streamName("a"))) {
          if (c.config.durable_name !== undefined) continue; // b's worker's durable
          await jsm.consumers.delete(streamName("a"), c.name);
          dropped++;
        }
        assert.ok(dropped >= 3, `the views' consumers (node, peer, worker): ${dropped}`);
      } finally {
        await nc.close();
      }
      await b.pushRandomImage("stall/app", "v1");
      await sleep(1_000);
    });
    // Before the fix: 30 s and more (two missed 15-second heartbeats, then a reset).
    const took = await secondsUntilHeld("a", "stall/app", "v1", 60_000);
    t.diagnostic(`a served v1 ${took} s after SIGCONT`);
    assert.ok(took < 15, `a served v1 ${took} s after SIGCONT`);
  });

  test("a link whose copies stall reads pending > 0 and a growing age, never 0; after the heal it is 0 and last success moves", async (t) => {
    const link = mesh.proxies.get("a")!.get("b")!;
    const b = new OciClient(mesh.regions.get("b")!.registry);
    await eventually(
      async () => (await linkGauge("meridian_replication_oldest_pending_age_seconds")) === 0,
      15_000,
      200,
    );
    const successBefore = (await linkGauge("meridian_replication_last_success_timestamp_seconds"))!;
    assert.ok(successBefore > 0, "the link has replicated before");
    // The worker still hears of b's events (NATS); it cannot copy their content (gRPC blackholed).
    link.grpc.blackhole();
    try {
      await b.pushRandomImage("stall/app", "v2");
      const samples: Array<{ pending?: number; age?: number }> = [];
      for (let i = 0; i < 8; i++) {
        await sleep(1_000);
        samples.push({
          pending: await linkGauge("meridian_replication_pending_events"),
          age: await linkGauge("meridian_replication_oldest_pending_age_seconds"),
        });
      }
      assert.equal(await holds("a", "stall/app", "v2"), false, "the blackhole holds v2 back");
      // From the first second the event is known: never 0 while it waits.
      for (const s of samples.slice(1)) {
        assert.ok((s.pending ?? 0) > 0, `pending ${JSON.stringify(samples)}`);
        assert.ok((s.age ?? 0) > 0, `age ${JSON.stringify(samples)}`);
      }
      assert.ok(samples.at(-1)!.age! >= samples[1]!.age! + 5, `the age grows: ${JSON.stringify(samples)}`);
    } finally {
      link.grpc.heal();
    }
    const took = await secondsUntilHeld("a", "stall/app", "v2", 60_000);
    t.diagnostic(`a held v2 ${took} s after the heal`);
    assert.ok(took < 15, `a held v2 ${took} s after the heal`);
    await eventually(
      async () =>
        (await linkGauge("meridian_replication_pending_events")) === 0 &&
        (await linkGauge("meridian_replication_oldest_pending_age_seconds")) === 0,
      10_000,
      200,
    );
    assert.ok((await linkGauge("meridian_replication_last_success_timestamp_seconds"))! > successBefore);
    assert.ok((await linkGauge("meridian_replication_recent_lag_seconds")) !== undefined);
  });

  test("a link cut off entirely is not read as caught up: its age grows while the source is silent", async (t) => {
    const link = mesh.proxies.get("a")!.get("b")!;
    const b = new OciClient(mesh.regions.get("b")!.registry);
    link.nats.blackhole();
    link.grpc.blackhole();
    try {
      await b.pushRandomImage("stall/app", "v3");
      // Silent for longer than the bound (10 s): the link can no longer be called caught up.
      await eventually(
        async () => ((await linkGauge("meridian_replication_oldest_pending_age_seconds")) ?? 0) > 10,
        25_000,
        500,
      );
      const checked = (await linkGauge("meridian_replication_source_checked_timestamp_seconds"))!;
      assert.ok(Date.now() / 1000 - checked > 10, "the source has not answered for over 10 s");
    } finally {
      link.nats.heal();
      link.grpc.heal();
    }
    const took = await secondsUntilHeld("a", "stall/app", "v3", 60_000);
    t.diagnostic(`a held v3 ${took} s after the heal`);
    assert.ok(took < 15, `a held v3 ${took} s after the heal`);
    await eventually(
      async () => (await linkGauge("meridian_replication_oldest_pending_age_seconds")) === 0,
      10_000,
      200,
    );
  });

  test("meridian status shows each link's recent lag, pending and oldest pending age", async (t) => {
    // The proxied mesh's file has no metrics endpoints; status reads them from a copy that has.
    const file: Mesh = JSON.parse(
      await import("node:fs/promises").then((fs) => fs.readFile(mesh.meshFile, "utf8")),
    );
    for (const r of file.regions) {
      const p = mesh.regions.get(r.name)!;
      r.metrics = { peer: p.peer.info.metrics!, worker: p.worker.info.metrics! };
    }
    const meshFile = join(tempDir(cleanup), "mesh.json");
    writeFileSync(meshFile, JSON.stringify(file));
    const json = await runCli(["status", "--mesh", meshFile, "--json"], 30_000);
    assert.equal(json.code, 0, json.stderr);
    const link = (
      JSON.parse(json.stdout) as {
        regions: Array<{ region: string; replication: Record<string, Record<string, unknown>> }>;
      }
    ).regions.find((r) => r.region === "a")!.replication.b!;
    t.diagnostic(JSON.stringify(link));
    assert.equal(link.windowSeconds, 300);
    assert.equal(typeof link.lagP50Ms, "number");
    assert.equal(typeof link.lagP99Ms, "number");
    assert.ok((link.lagP99Ms as number) < 60_000, "only recent replications count");
    assert.equal(link.pending, 0);
    assert.equal(link.oldestPendingMs, 0);
    assert.equal(typeof link.lastSuccessAt, "string");
    assert.equal(link.sourceLastSeq, link.appliedSeq);
    // The same, as the worker's JSON (replication/main.ts /links).
    const links = (await (await fetch(`${mesh.regions.get("a")!.worker.info.metrics}/links`)).json()) as {
      links: Array<{ src: string; pending: number; oldestPendingAgeSeconds: number; recentCount: number }>;
    };
    const fromB = links.links.find((l) => l.src === "b")!;
    assert.deepEqual([fromB.pending, fromB.oldestPendingAgeSeconds], [0, 0]);
    assert.ok(fromB.recentCount > 0);

    // A stalled link, as the table shows it.
    const proxy = mesh.proxies.get("a")!.get("b")!;
    proxy.grpc.blackhole();
    try {
      await new OciClient(mesh.regions.get("b")!.registry).pushRandomImage("stall/app", "v4");
      await sleep(3_000);
      const table = await runCli(["status", "--mesh", meshFile], 30_000);
      assert.equal(table.code, 0, table.stderr);
      const lines = table.stdout.split("\n");
      const header = lines[0]!;
      for (const column of ["lag p50 5m", "lag p99 5m", "pending", "oldest", "last ok"])
        assert.ok(header.includes(column), `column ${column}: ${header}`);
      const row = lines.find((l) => /^a\s/.test(l))!;
      // Columns are padded to their widest cell: a cell starts where its header does.
      const at = (column: string) => {
        const start = header.indexOf(column);
        const next = header.slice(start + column.length).search(/\S/);
        return row.slice(start, next < 0 ? undefined : start + column.length + next).trim();
      };
      t.diagnostic(`${header}\n${row}`);
      assert.notEqual(at("pending"), "0", row);
      assert.match(at("oldest"), /^[1-9]\d*s$/, row);
    } finally {
      proxy.grpc.heal();
    }
    await eventually(() => holds("a", "stall/app", "v4"), 30_000, 100);
  });
});
