/**
 * Promotion throughput (issue 17): `meridian promote` of an image from a
 * region to an external endpoint (a real CNCF Distribution) against a plain
 * `skopeo copy` of the same image from the same region to the same kind of
 * Distribution. Both are whole commands (a process each), timed from start
 * to exit.
 *
 *   node dist/benchmarks/promote.js [--runs 5] [--layers 4] [--layer-mib 16] [--gate]
 *
 * One node process (filesystem store, fsync on, auth off) on its own
 * nats-server holds the image (`layers` random layers of `layer-mib` MiB,
 * pushed once). Each run starts fresh Distributions (so neither side
 * finds a blob already there, and skopeo's blob-info cache has no mount to
 * offer), then times the two copies in alternating order (promote first on
 * even runs). The endpoint is re-pointed at the run's Distribution before
 * the promotion (untimed). With `--gate` the image is signed and the
 * destination has a signature gate: the promotion then also verifies the
 * signature and copies it (one more small manifest and blob), so it moves a
 * little more than skopeo does.
 *
 * Also timed: the same promotion as one `POST /admin/v1/promotions` (the
 * server's part, without starting the CLI's Node process: a third fresh
 * Distribution, the endpoint re-pointed at it untimed). Its order in the run
 * rotates with the others.
 *
 * Reported: each run's seconds, the medians, MiB/s of each, and the ratios
 * promote / skopeo and POST / skopeo of the medians (below 1: faster).
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs, promisify } from "node:util";
import { cosignSign, generateCosignKey } from "../testing/cosign.js";
import { startDistribution } from "../testing/distribution.js";
import {
  type After,
  CLI_ENTRY,
  freePort,
  spawnMeridian,
  startTestNats,
  tempDir,
} from "../testing/harness.js";
import { type Descriptor, OCI_CONFIG, OCI_MANIFEST, OciClient, sha256 } from "../testing/oci-client.js";
import { median } from "./report.js";

const run = promisify(execFile);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: "string", default: "5" },
      layers: { type: "string", default: "4" },
      "layer-mib": { type: "string", default: "16" },
      gate: { type: "boolean", default: false },
    },
  });
  const runs = Number(values.runs);
  const layerCount = Number(values.layers);
  const layerBytes = Number(values["layer-mib"]) * 1024 * 1024;
  const hooks: Array<() => Promise<void> | void> = [];
  const after: After = (fn) => hooks.push(fn);
  try {
    const nats = await startTestNats(after);
    const dataDir = tempDir(after, "meridian-promote-bench-");
    const env: Record<string, string> = {
      MERIDIAN_REGION: "bench",
      MERIDIAN_DATA_DIR: dataDir,
      MERIDIAN_LISTEN_PORT: String(await freePort()),
      MERIDIAN_NATS_SERVERS: nats.url,
      MERIDIAN_LOG_LEVEL: "warn",
    };
    const key = generateCosignKey();
    if (values.gate) {
      writeFileSync(join(dataDir, "release.pub"), key.publicPem);
      env.MERIDIAN_VERIFICATION_KEYS = `release=${join(dataDir, "release.pub")}`;
    }
    const node = await spawnMeridian(after, "node/server.js", env);
    const base = node.info.registry!;
    const client = new OciClient(base);
    const repo = "bench/app";
    const config = await client.pushBlob(
      repo,
      Buffer.from('{"architecture":"amd64","os":"linux"}'),
      OCI_CONFIG,
    );
    const layers: Descriptor[] = [];
    for (let i = 0; i < layerCount; i++) layers.push(await client.pushBlob(repo, randomBytes(layerBytes)));
    const manifest = { schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers };
    const { digest } = await client.pushManifest(repo, "1.0", manifest);
    const admin = (method: string, path: string, body: unknown) =>
      fetch(`${base}/admin/v1${path}`, {
        method,
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    if (values.gate) {
      const size = Buffer.byteLength(JSON.stringify(manifest));
      const sig = cosignSign(key.privateKey, repo, digest);
      await client.pushBlob(repo, sig.payload, sig.layer.mediaType);
      await client.pushBlob(repo, sig.config, OCI_CONFIG);
      const m = sig.referrerManifest({ mediaType: OCI_MANIFEST, digest, size });
      await client.pushManifest(repo, sha256(m), m.toString());
      const gate = await admin("PUT", "/gates/destination:cloud", { signature: { keys: ["release"] } });
      if (!gate.ok) throw new Error(`gate: ${gate.status} ${await gate.text()}`);
    }
    const meshFile = join(dataDir, "mesh.json");
    writeFileSync(
      meshFile,
      JSON.stringify({
        regions: [{ name: "bench", registry: base, nats: nats.url, grpc: "127.0.0.1:1" }],
        insecure: true,
      }),
    );
    const mib = (layerCount * layerBytes + config.size) / (1024 * 1024);
    const host = (u: string) => u.replace(/^https?:\/\//, "");
    const promoteSec: number[] = [];
    const skopeoSec: number[] = [];
    const apiSec: number[] = [];
    const timed = async (f: () => Promise<unknown>) => {
      const t0 = process.hrtime.bigint();
      await f();
      return Number(process.hrtime.bigint() - t0) / 1e9;
    };
    for (let i = 0; i < runs; i++) {
      const runHooks: Array<() => Promise<void> | void> = [];
      const runAfter: After = (fn) => runHooks.push(fn);
      try {
        const forPromote = await startDistribution(runAfter);
        const forSkopeo = await startDistribution(runAfter);
        const forApi = await startDistribution(runAfter);
        const ep = await admin("PUT", "/endpoints/cloud", { url: forPromote.url });
        if (!ep.ok) throw new Error(`endpoint: ${ep.status} ${await ep.text()}`);
        const promote = () =>
          run(
            process.execPath,
            [CLI_ENTRY, "promote", `${repo}:1.0`, "--to", "cloud", "--mesh", meshFile, "--data", dataDir],
            { timeout: 300_000 },
          );
        const skopeo = () =>
          run(
            "skopeo",
            [
              "copy",
              "--src-tls-verify=false",
              "--dest-tls-verify=false",
              `docker://${host(base)}/${repo}@${digest}`,
              `docker://${forSkopeo.host}/${repo}:1.0`,
            ],
            { timeout: 300_000 },
          );
        const viaApi = async () => {
          const res = await admin("POST", "/promotions", { source: `${repo}:1.0`, to: "cloud" });
          if (!res.ok) throw new Error(`promotion: ${res.status} ${await res.text()}`);
        };
        const measures = [
          async () => promoteSec.push(await timed(promote)),
          async () => skopeoSec.push(await timed(skopeo)),
          async () => {
            // The same promotion over the admin API: the server's part, without the CLI process.
            const re = await admin("PUT", "/endpoints/cloud", { url: forApi.url });
            if (!re.ok) throw new Error(`endpoint: ${re.status}`);
            apiSec.push(await timed(viaApi));
          },
        ];
        for (const m of i % 2 === 0 ? measures : [...measures].reverse()) await m();
        process.stderr.write(
          `run ${i + 1}/${runs}: promote ${promoteSec.at(-1)!.toFixed(2)} s, skopeo copy ${skopeoSec.at(-1)!.toFixed(2)} s, POST /promotions ${apiSec.at(-1)!.toFixed(2)} s\n`,
        );
      } finally {
        for (const hook of runHooks.reverse()) await Promise.resolve(hook()).catch(() => undefined);
      }
    }
    const p = median(promoteSec);
    const s = median(skopeoSec);
    const a = median(apiSec);
    const fmt = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(", ");
    process.stdout.write(
      `promotion of ${layerCount} x ${values["layer-mib"]} MiB (${mib.toFixed(1)} MiB) to a Distribution endpoint${values.gate ? ", signature gate" : ""}, ${runs} runs interleaved\n` +
        `  meridian promote: median ${p.toFixed(2)} s (${(mib / p).toFixed(1)} MiB/s); runs ${fmt(promoteSec)}\n` +
        `  skopeo copy:      median ${s.toFixed(2)} s (${(mib / s).toFixed(1)} MiB/s); runs ${fmt(skopeoSec)}\n` +
        `  POST /promotions: median ${a.toFixed(2)} s (${(mib / a).toFixed(1)} MiB/s); runs ${fmt(apiSec)}\n` +
        `  promote / skopeo: ${(p / s).toFixed(2)}x the time; POST /promotions / skopeo: ${(a / s).toFixed(2)}x\n`,
    );
  } finally {
    for (const hook of hooks.reverse()) await Promise.resolve(hook()).catch(() => undefined);
  }
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
