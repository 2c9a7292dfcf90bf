/**
 * Garbage collection of a region holding 10,000 blobs of which half are
 * garbage (issue 15): wall time, blobs per second, and what a run does to
 * concurrent pull latency (p50/p99 of blob GETs with and without GC).
 *
 *   node dist/benchmarks/gc.js [--blobs 10000]
 *
 * One node process (filesystem store, fsync off, settle 1 s) on its own
 * nats-server. Live: images of 50 × 1 KiB layers pushed over HTTP. Garbage:
 * half of it images pushed the same way and deleted (their links, configs
 * and manifests), half bytes written into the store with no event (orphans
 * of pushes that never committed). The run is `now: true` (grace and
 * undelete window 0). Pulls: one client, GETs of random live layers in
 * sequence, for 5 s before the run, then for the whole run.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type After, freePort, spawnMeridian, startTestNats, tempDir } from "../testing/harness.js";
import { type Descriptor, OCI_CONFIG, OCI_MANIFEST, OciClient, sha256 } from "../testing/oci-client.js";

const LAYERS_PER_IMAGE = 50;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { blobs: { type: "string", default: "10000" } } });
  const total = Number(values.blobs);
  const hooks: Array<() => Promise<void> | void> = [];
  const after: After = (fn) => hooks.push(fn);
  try {
    const nats = await startTestNats(after);
    const dataDir = tempDir(after, "meridian-gc-bench-");
    const node = await spawnMeridian(after, "node/server.js", {
      MERIDIAN_REGION: "bench",
      MERIDIAN_DATA_DIR: dataDir,
      MERIDIAN_LISTEN_PORT: String(await freePort()),
      MERIDIAN_NATS_SERVERS: nats.url,
      MERIDIAN_STORAGE_FSYNC: "false",
      MERIDIAN_GC_SETTLE_MS: "1000",
      MERIDIAN_LOG_LEVEL: "warn",
    });
    const base = node.info.registry!;
    const client = new OciClient(base);
    const imagesOf = (blobs: number) => Math.max(1, Math.round(blobs / (LAYERS_PER_IMAGE + 2)));
    const live: Descriptor[] = [];
    const pushImages = async (
      prefix: string,
      count: number,
    ): Promise<Array<{ repo: string; digest: string }>> => {
      const out: Array<{ repo: string; digest: string }> = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (next < count) {
            const i = next++;
            const repo = `${prefix}/img${i}`;
            const config = await client.pushBlob(repo, Buffer.from(`{"i":${i},"p":"${prefix}"}`), OCI_CONFIG);
            const layers: Descriptor[] = [];
            for (let l = 0; l < LAYERS_PER_IMAGE; l++)
              layers.push(await client.pushBlob(repo, randomBytes(1024)));
            const { digest } = await client.pushManifest(repo, "v1", {
              schemaVersion: 2,
              mediaType: OCI_MANIFEST,
              config,
              layers,
            });
            if (prefix === "live") live.push(...layers.map((d) => ({ ...d, repo }) as Descriptor));
            out.push({ repo, digest });
          }
        }),
      );
      return out;
    };
    const t0 = Date.now();
    await pushImages("live", imagesOf(total / 2));
    const doomed = await pushImages("doomed", imagesOf(total / 4));
    for (const { repo, digest } of doomed)
      await client.fetch(`/v2/${repo}/manifests/${digest}`, { method: "DELETE" });
    const orphans = Math.round(total / 4);
    for (let i = 0; i < orphans; i++) {
      const bytes = randomBytes(1024);
      const hex = sha256(bytes).slice(7);
      mkdirSync(join(dataDir, "store", "blobs", "sha256", hex.slice(0, 2)), { recursive: true });
      writeFileSync(join(dataDir, "store", "blobs", "sha256", hex.slice(0, 2), hex), bytes);
    }
    process.stdout.write(`populated in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);

    const pulls = async (until: () => boolean): Promise<number[]> => {
      const times: number[] = [];
      while (!until()) {
        const d = live[Math.floor(Math.random() * live.length)]! as Descriptor & { repo: string };
        const start = process.hrtime.bigint();
        const res = await client.fetch(`/v2/${d.repo}/blobs/${d.digest}`);
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`pull ${res.status}`);
        times.push(Number(process.hrtime.bigint() - start) / 1e6);
      }
      return times;
    };
    const quiet = Date.now() + 5_000;
    const without = await pulls(() => Date.now() > quiet);
    let done = false;
    const during = pulls(() => done);
    const started = Date.now();
    const res = await fetch(`${base}/admin/v1/gc/runs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ now: true }),
    });
    const { runId } = (await res.json()) as { runId: string };
    let state: { state: string; result?: { scanned: number; collected: number; collectedBytes: number } };
    for (;;) {
      state = (await (await fetch(`${base}/admin/v1/gc/runs/${runId}`)).json()) as typeof state;
      if (state.state !== "running") break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const wall = (Date.now() - started) / 1000;
    done = true;
    const withGc = await during;
    const r = state.result!;
    const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)]!;
    process.stdout.write(
      `gc ${state.state}: ${r.scanned} blobs scanned, ${r.collected} collected (${r.collectedBytes} bytes) in ${wall.toFixed(1)} s` +
        ` (incl. 1 s settle): ${Math.round(r.scanned / wall)} blobs/s scanned, ${Math.round(r.collected / wall)} collected/s\n` +
        `pull latency without gc: p50 ${q(without, 0.5).toFixed(2)} ms, p99 ${q(without, 0.99).toFixed(2)} ms (${without.length} GETs)\n` +
        `pull latency during gc:  p50 ${q(withGc, 0.5).toFixed(2)} ms, p99 ${q(withGc, 0.99).toFixed(2)} ms (${withGc.length} GETs)\n`,
    );
  } finally {
    for (const hook of hooks.reverse()) await Promise.resolve(hook()).catch(() => undefined);
  }
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
