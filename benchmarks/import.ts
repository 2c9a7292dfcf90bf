/**
 * `meridian import` against a user's script of `skopeo copy` (issue 17, item
 * 4): the same images, from the same CNCF Distribution, into a fresh
 * single-region Meridian (`meridian up --regions a`, authentication off, the
 * defaults: fsync on) for every contestant of every round.
 *
 *   node dist/benchmarks/import.js [--rounds 3] [--images 8] [--layers 4] [--layer-mib 4]
 *
 * Contestants, in an order that alternates from round to round:
 *   import     `meridian import --from dist` (4 tags at a time, the default), the
 *              whole command timed, its Node start included; its own `seconds`
 *              (--json: the plan and the copies) reported beside
 *   import-c1  the same with `--concurrency 1` (one tag at a time, as skopeo below)
 *   skopeo     one `skopeo copy docker://dist/R:T docker://meridian/R:T` per image,
 *              one after another, as a migration script would run them
 * The content: `--images` images, each `--layers` gzip'd random layers of
 * `--layer-mib` MiB, pushed into the Distribution once with skopeo from OCI
 * layouts (not timed). Every figure is the median of the rounds; ratios are
 * taken per round (the contestants of a round ran minutes apart at most)
 * and their median reported.
 */
import { execFile } from "node:child_process";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startDistribution } from "../testing/distribution.js";
import { type After, runCli, tempDir } from "../testing/harness.js";
import { startMesh } from "../testing/mesh.js";
import { writeImageLayout } from "../testing/oci-layout.js";
import { cell, perRoundRatios, quantiles } from "./spread.js";

type Contestant = "import" | "import-c1" | "skopeo";
const CONTESTANTS: Contestant[] = ["import", "import-c1", "skopeo"];

function exec(cmd: string, args: string[], timeoutMs = 600_000): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(" ")}: ${err.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: "string", default: "3" },
      images: { type: "string", default: "8" },
      layers: { type: "string", default: "4" },
      "layer-mib": { type: "string", default: "4" },
    },
  });
  const rounds = Number(values.rounds);
  const images = Number(values.images);
  const layers = Number(values.layers);
  const layerMib = Number(values["layer-mib"]);
  const hooks: Array<() => Promise<void> | void> = [];
  const after: After = (fn) => hooks.push(fn);
  const say = (s: string) => process.stderr.write(`${s}\n`);
  try {
    const dist = await startDistribution(after);
    const work = tempDir(after, "meridian-import-bench-");
    const refs: string[] = [];
    let bytes = 0;
    for (let i = 0; i < images; i++) {
      const layout = join(work, `img${i}`);
      writeImageLayout(
        layout,
        "v1",
        Array.from({ length: layers }, () => layerMib * 1024 * 1024),
      );
      const ref = `bench/img${i}:v1`;
      await exec("skopeo", [
        "copy",
        "--dest-tls-verify=false",
        `oci:${layout}:v1`,
        `docker://${dist.host}/${ref}`,
      ]);
      refs.push(ref);
      bytes += layers * layerMib * 1024 * 1024;
    }
    say(`content: ${images} images × ${layers} layers × ${layerMib} MiB in ${dist.url}`);

    const seconds: Record<Contestant, number[]> = { import: [], "import-c1": [], skopeo: [] };
    /** The import's own seconds (its --json `seconds`: plan and copies, without the CLI's start). */
    const inside: Record<Contestant, number[]> = { import: [], "import-c1": [], skopeo: [] };
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? CONTESTANTS : [...CONTESTANTS].reverse();
      for (const who of order) {
        const meshHooks: Array<() => Promise<void> | void> = [];
        const meshAfter: After = (fn) => meshHooks.push(fn);
        try {
          const mesh = await startMesh(meshAfter, ["a"]);
          const registry = mesh.regions.get("a")!.registry;
          const add = await runCli(["endpoint", "add", "dist", "--url", dist.url, "--data", mesh.dataDir]);
          if (add.code !== 0) throw new Error(`endpoint add: ${add.stderr}`);
          const started = performance.now();
          if (who === "skopeo") {
            const host = registry.replace(/^https?:\/\//, "");
            for (const ref of refs)
              await exec("skopeo", [
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                `docker://${dist.host}/${ref}`,
                `docker://${host}/${ref}`,
              ]);
          } else {
            const r = await runCli(
              [
                "import",
                "--from",
                "dist",
                "--data",
                mesh.dataDir,
                "--checkpoint",
                join(mesh.dataDir, "import.checkpoint.json"),
                "--json",
                ...(who === "import-c1" ? ["--concurrency", "1"] : []),
              ],
              600_000,
            );
            if (r.code !== 0) throw new Error(`import exited ${r.code}: ${r.stdout}${r.stderr}`);
            const report = JSON.parse(r.stdout) as { seconds: number; copied: unknown[] };
            if (report.copied.length !== refs.length)
              throw new Error(`import copied ${report.copied.length}`);
            inside[who].push(report.seconds);
          }
          const s = (performance.now() - started) / 1000;
          seconds[who].push(s);
          say(`round ${round + 1} ${who}: ${s.toFixed(2)} s (${(bytes / 1024 / 1024 / s).toFixed(1)} MiB/s)`);
        } finally {
          for (const hook of meshHooks.reverse()) await Promise.resolve(hook()).catch(() => undefined);
        }
      }
    }
    const mibs = (xs: number[]) => xs.map((s) => bytes / 1024 / 1024 / s);
    const lines = [
      `import vs skopeo copy: ${images} images × ${layers} layers × ${layerMib} MiB (${(bytes / 1024 / 1024).toFixed(0)} MiB), ${rounds} rounds, ${cpus().length} cores, load average ${loadavg()[0]!.toFixed(1)} at the end`,
      "",
      "| contestant | seconds | MiB/s | time / skopeo's | the import's own seconds (no CLI start) | its MiB/s |",
      "|---|---|---|---|---|---|",
      ...CONTESTANTS.map(
        (c) =>
          `| ${c} | ${cell(seconds[c])} | ${cell(mibs(seconds[c]))} | ${c === "skopeo" ? "1" : cell(perRoundRatios(seconds[c], seconds.skopeo))} | ${cell(inside[c], "–")} | ${cell(mibs(inside[c]), "–")} |`,
      ),
      "",
      `median ratio import / skopeo (time): ${quantiles(perRoundRatios(seconds.import, seconds.skopeo)).median.toFixed(2)}`,
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  } finally {
    for (const hook of hooks.reverse()) await Promise.resolve(hook()).catch(() => undefined);
  }
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
