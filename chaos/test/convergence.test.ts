/**
 * Seeded convergence on three real regions (chaos/convergence.ts): concurrent
 * tag sets and deletes from different regions with partitions opened and
 * healed at random; after the last heal every region shows the same tags and
 * the same summary. 50 seeds per CI run, starting from a random seed (or
 * MERIDIAN_SEED); MERIDIAN_CONVERGENCE_SEEDS changes the count. A failure
 * names its seed; replay it with `node dist/chaos/convergence.js --seed N`.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { runSeed as baseSeed } from "../../protocol/test/prng.js";
import { cleanupStack } from "../../testing/harness.js";
import { startProxiedMesh } from "../../testing/mesh.js";
import { CONVERGENCE_WORKER_ENV, MeshProbe, REGIONS, runSeed } from "../convergence.js";

const COUNT = Number(process.env.MERIDIAN_CONVERGENCE_SEEDS ?? 50);
const FIRST = baseSeed() % 1_000_000_000;

describe(`convergence: ${COUNT} seeds from ${FIRST}`, () => {
  const cleanup = cleanupStack({ after });
  let probe: MeshProbe;
  before(async () => {
    probe = new MeshProbe(await startProxiedMesh(cleanup, [...REGIONS], { worker: CONVERGENCE_WORKER_ENV }));
    cleanup(() => probe.close());
  });

  test(`every region agrees after the last heal (${COUNT} seeds)`, async () => {
    let partitions = 0;
    let maxConvergedMs = 0;
    for (let i = 0; i < COUNT; i++) {
      const seed = FIRST + i;
      const result = await runSeed(probe, seed).catch((err) => {
        process.stderr.write(
          `convergence failed at seed ${seed} (replay: node dist/chaos/convergence.js --seed ${seed})\n`,
        );
        throw err;
      });
      assert.ok(result.ops > 0);
      partitions += result.partitions;
      maxConvergedMs = Math.max(maxConvergedMs, result.convergedMs);
    }
    assert.ok(partitions > 0, "the seeds opened partitions");
    process.stderr.write(
      `convergence: ${COUNT} seeds, ${partitions} partitions, slowest ${maxConvergedMs} ms after heal\n`,
    );
  });
});
