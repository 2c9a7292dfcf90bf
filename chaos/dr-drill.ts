/**
 * The disaster-recovery drill: three real regions and the front door; pushes
 * flowing into region a (the home of the drill's repositories, one `sync(1)`
 * and one `async`) and pulls of already replicated images flowing through
 * the front door; then every process of a killed hard (SIGKILL: nats-server,
 * node, peer, worker). Measured:
 *
 * - read RTO: from the kill until pulls through the front door succeed again
 *   (0 when none failed);
 * - loss (RPO): pushes a acknowledged that no other region holds once a is
 *   gone, per durability (none is allowed for sync(1));
 * - write RTO: from the kill until a push started after it is acknowledged
 *   through the front door, with an operator's `failover --from a --to b` made
 *   as soon as it is allowed (the lease has lapsed);
 * then a is brought back and checked: every write it is offered as the old
 * home is refused (never acknowledged), and all regions converge on the
 * same tags, including a's acknowledged pushes that had not left it.
 *
 *   node dist/chaos/dr-drill.js [--runs 3] [--interval-ms 1000]
 *
 * prints one JSON line per run and one of medians; chaos/test/dr-drill.test.ts
 * runs it once with a short interval and checks what must hold.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { sleep } from "../testing/faults.js";
import { type After, cleanupStack, eventually, spawnMeridian } from "../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../testing/mesh.js";
import { OCI_MANIFEST, OciClient } from "../testing/oci-client.js";

export interface DrillOptions {
  /** Heartbeat interval of peers and front door (ms). */
  intervalMs: number;
  /** Images pushed and replicated before the kill, then pulled throughout. */
  seedImages: number;
  /** How long pushes and pulls flow before the kill (ms). */
  warmMs: number;
  /** How long pulls go on after the kill (ms). */
  observeMs: number;
}

export interface DrillResult {
  heartbeatIntervalMs: number;
  readRtoMs: number;
  /** Pulls through the front door succeeded again after the kill (and kept succeeding). */
  readsRecovered: boolean;
  readsAfterKill: number;
  readsFailedAfterKill: number;
  acked: { sync: number; async: number };
  lost: { sync: number; async: number };
  /** Of the lost ones, how many every region holds once a has returned. */
  recoveredOnReturn: number;
  failoverAllowedAfterMs: number;
  writeRtoMs: number;
  /** Writes offered to the returning old home; every one refused. */
  fencedRefusals: number;
  convergedAfterReturnMs: number;
}

const REPOS = { sync: "dr/sync/app", async: "dr/async/app" } as const;
type Kind = keyof typeof REPOS;

interface Ack {
  kind: Kind;
  tag: string;
  digest: string;
  /** When the push started, and when its acknowledgement arrived. */
  startedAt: number;
  at: number;
}

function digestOf(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** One small image: blobs, then the manifest by tag; the PUT's status and the manifest digest. */
async function pushImage(
  client: OciClient,
  repo: string,
  tag: string,
): Promise<{ status: number; digest: string }> {
  const signal = AbortSignal.timeout(10_000);
  const config = await client.pushBlob(
    repo,
    Buffer.from(JSON.stringify({ tag, nonce: randomBytes(8).toString("hex") })),
  );
  const layer = await client.pushBlob(repo, randomBytes(2048));
  const bytes = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] }),
  );
  const res = await client.fetch(`/v2/${repo}/manifests/${tag}`, {
    method: "PUT",
    headers: { "content-type": OCI_MANIFEST },
    body: bytes,
    signal,
  });
  await res.arrayBuffer();
  return { status: res.status, digest: digestOf(bytes) };
}

async function holds(client: OciClient, repo: string, digest: string): Promise<boolean> {
  const res = await client
    .fetch(`/v2/${repo}/manifests/${digest}`, {
      method: "HEAD",
      headers: { "cache-control": "only-if-cached" },
      signal: AbortSignal.timeout(5_000),
    })
    .catch(() => undefined);
  return res?.status === 200;
}

async function tagMap(client: OciClient, repo: string): Promise<Record<string, string> | undefined> {
  const list = await client
    .fetch(`/v2/${repo}/tags/list`, { signal: AbortSignal.timeout(5_000) })
    .catch(() => undefined);
  if (list?.status !== 200) return undefined;
  const { tags } = (await list.json()) as { tags: string[] };
  const out: Record<string, string> = {};
  for (const tag of tags.sort()) {
    const res = await client.fetch(`/v2/${repo}/manifests/${tag}`, {
      method: "HEAD",
      headers: { "cache-control": "only-if-cached" },
    });
    out[tag] = res.headers.get("docker-content-digest") ?? "";
  }
  return out;
}

async function admin(base: string, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${base}/admin/v1${path}`, {
    method,
    signal: AbortSignal.timeout(10_000),
    ...(body === undefined
      ? {}
      : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
  });
}

export async function runDrill(after: After, options: DrillOptions): Promise<DrillResult> {
  const interval = String(options.intervalMs);
  const mesh: ProxiedMesh = await startProxiedMesh(after, ["a", "b", "c"], {
    peer: { MERIDIAN_HEARTBEAT_INTERVAL_MS: interval },
  });
  const registry = (r: string) => mesh.regions.get(r)!.registry;
  const door = await spawnMeridian(after, "control-plane/front-door.js", {
    MERIDIAN_MESH: mesh.meshFile,
    MERIDIAN_CLIENT_REGIONS: "127.0.0.1/32=a",
    MERIDIAN_HEARTBEAT_INTERVAL_MS: interval,
    MERIDIAN_LOG_LEVEL: "warn",
  });
  const front = new OciClient(door.info.frontDoor!);
  await eventually(
    async () => {
      const h = (await (await fetch(`${door.info.frontDoor}/healthz`)).json()) as {
        regions: Array<{ up: boolean }>;
      };
      return h.regions.every((r) => r.up);
    },
    30_000,
    50,
  );

  // ---- a is home of both repositories; one is sync(1)
  for (const [scope, durability] of [
    ["dr/sync/", "sync(1)"],
    ["dr/async/", "async"],
  ] as const) {
    const res = await admin(registry("a"), "PUT", "/rules", {
      scope,
      tagMerge: "home-region",
      home: "a",
      durability,
    });
    if (res.status !== 200) throw new Error(`rule ${scope}: ${res.status} ${await res.text()}`);
  }
  // ---- images replicated everywhere before anything fails
  const seeded: Array<{ repo: string; digest: string; layer: string }> = [];
  for (let i = 0; i < options.seedImages; i++) {
    const image = await front.pushRandomImage(`dr/seed/img${i}`, "v1", 1, 4096);
    seeded.push({ repo: `dr/seed/img${i}`, digest: image.digest, layer: image.layers[0]!.digest });
  }
  for (const r of ["b", "c"]) {
    const c = new OciClient(registry(r));
    await eventually(
      async () => (await Promise.all(seeded.map((s) => holds(c, s.repo, s.digest)))).every(Boolean),
      30_000,
      50,
    );
  }

  // ---- traffic: pushes into a's repositories, pulls of the seeded images, all through the front door
  let stopping = false;
  let killedAt = Number.POSITIVE_INFINITY;
  const acks: Ack[] = [];
  const writer = async (kind: Kind) => {
    for (let n = 0; !stopping; n++) {
      const tag = `w${n}`;
      const startedAt = Date.now();
      const r = await pushImage(front, REPOS[kind], tag).catch(() => ({ status: 0, digest: "" }));
      if (r.status === 201) acks.push({ kind, tag, digest: r.digest, startedAt, at: Date.now() });
      else await sleep(20);
    }
  };
  const reads: Array<{ at: number; ok: boolean }> = [];
  const reader = async () => {
    for (let n = 0; !stopping; n++) {
      const s = seeded[n % seeded.length]!;
      let ok = false;
      try {
        const m = await front.fetch(`/v2/${s.repo}/manifests/v1`, { signal: AbortSignal.timeout(5_000) });
        const blob = await front.fetch(`/v2/${s.repo}/blobs/${s.layer}`, {
          signal: AbortSignal.timeout(5_000),
        });
        ok =
          m.status === 200 &&
          blob.status === 200 &&
          digestOf(Buffer.from(await blob.arrayBuffer())) === s.layer;
        if (m.status === 200) await m.arrayBuffer();
      } catch {
        ok = false;
      }
      reads.push({ at: Date.now(), ok });
      await sleep(5);
    }
  };
  const traffic = Promise.all([writer("sync"), writer("async"), reader()]);
  await sleep(options.warmMs);
  // On a loaded machine a sync(1) push can take longer than the warm-up: have one of each first.
  await eventually(
    () => acks.some((a) => a.kind === "sync") && acks.some((a) => a.kind === "async"),
    30_000,
    20,
  );

  // ---- the disaster
  killedAt = Date.now();
  await mesh.killRegion("a");
  // Pushes under way at the kill were answered by a (or failed): they count as a's.
  const ackedBeforeKill = () => acks.filter((a) => a.startedAt < killedAt);

  // ---- an operator fails a over to b as soon as b allows it
  let failoverAt = 0;
  for (;;) {
    const res = await admin(registry("b"), "POST", "/failover", { from: "a", to: "b" }).catch(
      () => undefined,
    );
    if (res?.status === 200) {
      failoverAt = Date.now();
      break;
    }
    if (Date.now() - killedAt > 60_000)
      throw new Error(`failover never allowed: ${res?.status} ${await res?.text()}`);
    await sleep(50);
  }
  const remaining = killedAt + options.observeMs - Date.now();
  if (remaining > 0) await sleep(remaining);
  await eventually(() => acks.some((a) => a.startedAt > killedAt), 30_000, 50);
  stopping = true;
  await traffic;

  // ---- reads: from the kill until they succeed for good
  const afterKill = reads.filter((r) => r.at > killedAt);
  const lastFailure = afterKill.filter((r) => !r.ok).at(-1);
  const firstGood = afterKill.find((r) => r.ok && (lastFailure === undefined || r.at > lastFailure.at));
  const readRtoMs = lastFailure === undefined ? 0 : (firstGood?.at ?? Date.now()) - killedAt;

  // ---- loss: acknowledged by a before it died, held by neither b nor c
  const others = [new OciClient(registry("b")), new OciClient(registry("c"))];
  const lostAcks: Ack[] = [];
  const byA = ackedBeforeKill();
  for (const ack of byA) {
    const held = await Promise.all(others.map((c) => holds(c, REPOS[ack.kind], ack.digest)));
    if (!held.some(Boolean)) lostAcks.push(ack);
  }

  // ---- a returns: fenced, then converged
  const returnedAt = Date.now();
  await mesh.restartRegion("a");
  const direct = new OciClient(registry("a"));
  let fencedRefusals = 0;
  for (;;) {
    const r = await pushImage(direct, REPOS.async, `fenced${fencedRefusals}`).catch(() => ({
      status: 0,
      digest: "",
    }));
    if (r.status === 201)
      throw new Error("the returning old home acknowledged a home write after the failover");
    if (r.status !== 0) fencedRefusals++;
    if (r.status === 403) break; // it knows the new home now
    if (Date.now() - returnedAt > 60_000)
      throw new Error(`a never learned of the failover (last ${r.status})`);
    await sleep(50);
  }
  const clients = ["a", "b", "c"].map((r) => new OciClient(registry(r)));
  let differing = "";
  try {
    await eventually(
      async () => {
        for (const repo of Object.values(REPOS)) {
          const maps = await Promise.all(clients.map((c) => tagMap(c, repo)));
          const first = JSON.stringify(maps[0]);
          if (maps[0] === undefined || maps.some((m) => JSON.stringify(m) !== first)) {
            differing = `${repo}: ${["a", "b", "c"].map((r, i) => `${r} ${JSON.stringify(maps[i])}`).join("; ")}`;
            return false;
          }
        }
        return true;
      },
      60_000,
      100,
    );
  } catch {
    // Keep every process's log for the post-mortem.
    const dir = mkdtempSync(join(tmpdir(), "meridian-dr-drill-"));
    for (const [name, r] of mesh.regions)
      for (const kind of ["node", "peer", "worker"] as const)
        writeFileSync(join(dir, `${name}-${kind}.log`), r[kind].log());
    throw new Error(`regions did not converge within 60 s of a's return (logs in ${dir}); ${differing}`);
  }
  const convergedAfterReturnMs = Date.now() - returnedAt;
  let recoveredOnReturn = 0;
  for (const ack of lostAcks) {
    const held = await Promise.all(clients.map((c) => holds(c, REPOS[ack.kind], ack.digest)));
    if (held.every(Boolean)) recoveredOnReturn++;
  }
  const firstWriteAfter = acks.find((a) => a.startedAt > killedAt)!;
  return {
    heartbeatIntervalMs: options.intervalMs,
    readRtoMs,
    readsRecovered: afterKill.length > 0 && afterKill.at(-1)!.ok,
    readsAfterKill: afterKill.length,
    readsFailedAfterKill: afterKill.filter((r) => !r.ok).length,
    acked: {
      sync: byA.filter((a) => a.kind === "sync").length,
      async: byA.filter((a) => a.kind === "async").length,
    },
    lost: {
      sync: lostAcks.filter((a) => a.kind === "sync").length,
      async: lostAcks.filter((a) => a.kind === "async").length,
    },
    recoveredOnReturn,
    failoverAllowedAfterMs: failoverAt - killedAt,
    writeRtoMs: firstWriteAfter.at - killedAt,
    fencedRefusals,
    convergedAfterReturnMs,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: "string", default: "3" },
      "interval-ms": { type: "string", default: "1000" },
    },
  });
  const runs = Number(values.runs);
  const intervalMs = Number(values["interval-ms"]);
  const results: DrillResult[] = [];
  for (let run = 1; run <= runs; run++) {
    const hooks: Array<() => Promise<void> | void> = [];
    const after = cleanupStack({ after: (fn) => hooks.push(fn) });
    try {
      const r = await runDrill(after, {
        intervalMs,
        seedImages: 5,
        warmMs: 3_000,
        observeMs: 4 * intervalMs + 2_000,
      });
      results.push(r);
      process.stdout.write(`${JSON.stringify({ run, ...r })}\n`);
    } finally {
      for (const hook of hooks.reverse()) await hook();
    }
  }
  const median = (f: (r: DrillResult) => number) => {
    const xs = results.map(f).sort((x, y) => x - y);
    return xs[Math.floor((xs.length - 1) / 2)] ?? 0;
  };
  process.stdout.write(
    `${JSON.stringify({
      done: true,
      runs: results.length,
      heartbeatIntervalMs: intervalMs,
      readRtoMsMedian: median((r) => r.readRtoMs),
      readRtoTargetMs: 3 * intervalMs,
      writeRtoMsMedian: median((r) => r.writeRtoMs),
      failoverAllowedAfterMsMedian: median((r) => r.failoverAllowedAfterMs),
      lostSyncTotal: results.reduce((n, r) => n + r.lost.sync, 0),
      lostAsyncMedian: median((r) => r.lost.async),
      ackedAsyncMedian: median((r) => r.acked.async),
      ackedSyncMedian: median((r) => r.acked.sync),
      recoveredOnReturnTotal: results.reduce((n, r) => n + r.recoveredOnReturn, 0),
      convergedAfterReturnMsMedian: median((r) => r.convergedAfterReturnMs),
    })}\n`,
  );
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
