/**
 * What the pull and push rate limits cost a small request (issue 18):
 * the small-request suite (suites.ts smallSuite: manifest GET and HEAD by
 * tag, blob HEAD, tag list) against one Meridian node with every rate limit
 * off and with every limit on but set too high to refuse anything (so each
 * request is counted in two buckets, the identity's, anonymous here, and
 * the address's, and shared with the region over NATS), alternating the
 * order run by run; medians of the runs, and the ratio on / off.
 *
 *   node dist/benchmarks/rate-limit-cost.js [--runs 5] [--duration 3] [--concurrency 16]
 */
import { parseArgs } from "node:util";
import { RATE_LIMITS_ON, startTarget, type Target } from "./servers.js";
import { FULL, type SmallPoint, smallSuite } from "./suites.js";

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: "string", default: "5" },
      duration: { type: "string", default: "3" },
      concurrency: { type: "string", default: "16" },
    },
  });
  const runs = Number(values.runs);
  const sizes = {
    ...FULL,
    smallDurationSec: Number(values.duration),
    warmupSec: 1,
    concurrency: [Number(values.concurrency)],
  };
  const results: Record<"off" | "on", SmallPoint[][]> = { off: [], on: [] };
  for (let run = 1; run <= runs; run++) {
    const order: Array<"off" | "on"> = run % 2 === 1 ? ["off", "on"] : ["on", "off"];
    for (const variant of order) {
      const target: Target = await startTarget("meridian", variant === "on" ? { env: RATE_LIMITS_ON } : {});
      try {
        const points = await smallSuite(target, sizes);
        results[variant].push(points);
        process.stderr.write(
          `run ${run} ${variant}: ${points.map((p) => `${p.endpoint} ${Math.round(p.rps)}/s`).join(", ")}\n`,
        );
      } finally {
        await target.stop();
      }
    }
  }
  const endpoints = results.off[0]!.map((p) => p.endpoint);
  const rows = [
    "| request | connections | off: req/s | on: req/s | on / off | off: CPU µs/req | on: CPU µs/req | on − off µs |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const [i, endpoint] of endpoints.entries()) {
    const of = (v: "off" | "on", f: (p: SmallPoint) => number) => median(results[v].map((pts) => f(pts[i]!)));
    const [rpsOff, rpsOn] = [of("off", (p) => p.rps), of("on", (p) => p.rps)];
    const [cpuOff, cpuOn] = [of("off", (p) => p.cpuUsPerReq), of("on", (p) => p.cpuUsPerReq)];
    rows.push(
      `| ${endpoint} | ${sizes.concurrency[0]} | ${Math.round(rpsOff)} | ${Math.round(rpsOn)} | ${(rpsOn / rpsOff).toFixed(2)} | ${cpuOff.toFixed(0)} | ${cpuOn.toFixed(0)} | ${(cpuOn - cpuOff).toFixed(0)} |`,
    );
  }
  process.stdout.write(`${rows.join("\n")}\n`);
}

main().catch((err) => {
  process.stderr.write(`rate-limit-cost: ${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
