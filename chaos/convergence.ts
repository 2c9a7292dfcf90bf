/**
 * Seeded convergence runs against three real regions (testing/mesh.ts's
 * proxied mesh: nats-server, node, peer and worker per region, chaos/ proxies
 * on every cross-region link).
 *
 * One seed: a repository of its own holding three images (pushed in one
 * region and replicated everywhere), then a seeded sequence of operations —
 * concurrent tag sets, tag deletes and manifest deletes from random regions,
 * with partitions of random regions opened and healed between them. After
 * the last heal, every region must reach the same tag → digest map and the
 * same repository summary (the peer's Summarize), within a deadline. A
 * failure names the seed: `node dist/chaos/convergence.js --seed N` replays
 * it (the operations, not the timing, are determined by the seed).
 *
 *   node dist/chaos/convergence.js --seeds 1000 [--first 1]
 *
 * runs many seeds on one mesh and stops at the first failure (exit 1).
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { PeerClient, peerCredentials } from "../mesh-client/peer-client.js";
import { parseMesh } from "../protocol/mesh.js";
import { makeRng, type Rng } from "../protocol/test/prng.js";
import { sleep } from "../testing/faults.js";
import { cleanupStack } from "../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../testing/mesh.js";
import { OCI_MANIFEST, OciClient } from "../testing/oci-client.js";

export const REGIONS = ["a", "b", "c"] as const;

export interface SeedResult {
  seed: number;
  ops: number;
  partitions: number;
  /** Time from the last heal until every region agreed, ms. */
  convergedMs: number;
  tags: Record<string, string>;
}

export class ConvergenceError extends Error {}

/** Clients for one mesh: OCI per region, and peers for summaries. */
export class MeshProbe {
  readonly oci = new Map<string, OciClient>();
  readonly peers = new Map<string, PeerClient>();

  constructor(readonly mesh: ProxiedMesh) {
    const file = parseMesh(JSON.parse(readFileSync(mesh.meshFile, "utf8")));
    for (const r of file.regions) {
      this.oci.set(r.name, new OciClient(r.registry));
      this.peers.set(r.name, new PeerClient(r.name, r.grpc, peerCredentials(file, r.name)));
    }
  }

  close(): void {
    for (const p of this.peers.values()) p.close();
  }

  /** The tag → digest map a region shows for `repo` (through the OCI API). */
  async tagMap(region: string, repo: string): Promise<Record<string, string>> {
    const oci = this.oci.get(region)!;
    const res = await oci.fetch(`/v2/${repo}/tags/list?n=1000`);
    if (res.status === 404) return {};
    if (res.status !== 200) throw new Error(`${region}: tags/list answered ${res.status}`);
    const { tags } = (await res.json()) as { tags: string[] | null };
    const out: Record<string, string> = {};
    for (const tag of (tags ?? []).sort()) {
      const head = await oci.fetch(`/v2/${repo}/manifests/${tag}`, {
        method: "HEAD",
        headers: { "cache-control": "only-if-cached" },
      });
      if (head.status === 200) out[tag] = head.headers.get("docker-content-digest")!;
    }
    return out;
  }

  /** A region's summary digest for `repo` ("" when it holds nothing visible). */
  async summary(region: string, repo: string): Promise<string> {
    const { repos } = await this.peers.get(region)!.summarize(repo);
    return repos.find((r) => r.repo === repo)?.digest ?? "";
  }
}

/** Run one seed on a healthy mesh; the mesh is healthy again when it returns (or throws). */
export async function runSeed(
  probe: MeshProbe,
  seed: number,
  options: { deadlineMs?: number } = {},
): Promise<SeedResult> {
  const rng = makeRng(seed);
  const mesh = probe.mesh;
  const repo = `conv/s${seed}`;
  const origin = rng.pick(REGIONS);
  // Three small images, present everywhere before the race starts.
  const manifests: string[] = [];
  const digests: string[] = [];
  const oci = probe.oci.get(origin)!;
  const config = await oci.pushBlob(
    repo,
    Buffer.from(`{"seed":${seed}}`),
    "application/vnd.oci.image.config.v1+json",
  );
  for (let i = 0; i < 3; i++) {
    const layer = await oci.pushBlob(repo, randomBytes(64));
    const body = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] });
    const { digest } = await oci.pushManifest(repo, `base${i}`, body);
    manifests.push(body);
    digests.push(digest);
  }
  await until(
    options.deadlineMs ?? 60_000,
    async () => {
      for (const r of REGIONS) {
        const map = await probe.tagMap(r, repo);
        if (digests.some((d, i) => map[`base${i}`] !== d)) return false;
      }
      return true;
    },
    `seed ${seed}: base images did not reach every region`,
  );

  const tags = ["t0", "t1", "t2", "t3"];
  const partitioned = new Set<string>();
  let partitions = 0;
  const count = rng.int(8, 20);
  try {
    for (let i = 0; i < count; i++) {
      if (rng.next() < 0.2) {
        const region = rng.pick(REGIONS);
        if (partitioned.has(region)) {
          mesh.heal(region);
          partitioned.delete(region);
        } else {
          mesh.partition(region);
          partitioned.add(region);
          partitions++;
        }
      }
      // One to three writes at once, from different regions.
      const writers = rng.shuffle(REGIONS).slice(0, rng.int(1, 3));
      await Promise.all(
        writers.map((region) => randomWrite(rng, probe.oci.get(region)!, repo, tags, manifests, digests)),
      );
      await sleep(rng.int(0, 40));
    }
  } finally {
    for (const region of partitioned) mesh.heal(region);
  }
  const healed = Date.now();
  let agreed: Record<string, string> = {};
  await until(
    options.deadlineMs ?? 60_000,
    async () => {
      const maps = await Promise.all(REGIONS.map((r) => probe.tagMap(r, repo)));
      const summaries = await Promise.all(REGIONS.map((r) => probe.summary(r, repo)));
      agreed = maps[0]!;
      const same = (x: unknown) => JSON.stringify(x) === JSON.stringify(maps[0]);
      return maps.every(same) && summaries.every((s) => s === summaries[0]);
    },
    `seed ${seed}: regions did not converge`,
    async () => {
      const maps = await Promise.all(REGIONS.map(async (r) => [r, await probe.tagMap(r, repo)] as const));
      return JSON.stringify(Object.fromEntries(maps));
    },
  );
  return { seed, ops: count, partitions, convergedMs: Date.now() - healed, tags: agreed };
}

async function randomWrite(
  rng: Rng,
  oci: OciClient,
  repo: string,
  tags: string[],
  manifests: string[],
  digests: string[],
): Promise<void> {
  const roll = rng.next();
  const tag = rng.pick(tags);
  const which = rng.int(0, manifests.length - 1);
  if (roll < 0.6) {
    // Set (or move) a tag: the manifest is re-pushed if this region deleted it.
    await oci.pushManifest(repo, tag, manifests[which]!);
  } else if (roll < 0.9) {
    const res = await oci.fetch(`/v2/${repo}/manifests/${tag}`, { method: "DELETE" });
    if (res.status !== 202 && res.status !== 404) throw new Error(`tag delete answered ${res.status}`);
  } else {
    const res = await oci.fetch(`/v2/${repo}/manifests/${digests[which]}`, { method: "DELETE" });
    if (res.status !== 202 && res.status !== 404) throw new Error(`manifest delete answered ${res.status}`);
  }
}

async function until(
  ms: number,
  check: () => Promise<boolean>,
  message: string,
  describe?: () => Promise<string>,
) {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err; // a region mid-restart or a link mid-heal: try again
    }
    await sleep(150);
  }
  const state = describe === undefined ? "" : ` — ${await describe().catch((e) => String(e))}`;
  throw new ConvergenceError(`${message}${state}${last === undefined ? "" : ` (last error: ${last})`}`);
}

/**
 * Worker settings for convergence runs: no periodic anti-entropy (the streams
 * alone must converge), and no delete breaker (random deletes of most of a
 * small repository's tags are the point here; the breaker has its own tests).
 */
export const CONVERGENCE_WORKER_ENV: Record<string, string> = {
  MERIDIAN_ANTI_ENTROPY_INTERVAL_MS: "0",
  MERIDIAN_DELETE_BREAKER_SHARE: "1",
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seeds: { type: "string", default: "1000" },
      first: { type: "string", default: "1" },
      seed: { type: "string" },
    },
  });
  const seeds =
    values.seed !== undefined
      ? [Number(values.seed)]
      : Array.from({ length: Number(values.seeds) }, (_, i) => Number(values.first) + i);
  const hooks: Array<() => Promise<void> | void> = [];
  const after = cleanupStack({ after: (fn) => hooks.push(fn) });
  const started = Date.now();
  let failed: unknown;
  let probe: MeshProbe | undefined;
  const times: number[] = [];
  try {
    const mesh = await startProxiedMesh(after, [...REGIONS], { worker: CONVERGENCE_WORKER_ENV });
    probe = new MeshProbe(mesh);
    for (const [i, seed] of seeds.entries()) {
      const result = await runSeed(probe, seed);
      times.push(result.convergedMs);
      process.stdout.write(
        `${JSON.stringify({ seed, n: i + 1, of: seeds.length, ops: result.ops, partitions: result.partitions, convergedMs: result.convergedMs, elapsedS: Math.round((Date.now() - started) / 1000) })}\n`,
      );
    }
  } catch (err) {
    failed = err;
    process.stderr.write(`FAILED: ${(err as Error).message}\n`);
  } finally {
    probe?.close();
    for (const hook of hooks.reverse()) await hook();
  }
  times.sort((x, y) => x - y);
  const q = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))] ?? 0;
  process.stdout.write(
    `${JSON.stringify({ done: true, passed: times.length, failed: failed !== undefined, convergedMsP50: q(0.5), convergedMsP99: q(0.99), elapsedS: Math.round((Date.now() - started) / 1000) })}\n`,
  );
  process.exit(failed === undefined ? 0 : 1);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
