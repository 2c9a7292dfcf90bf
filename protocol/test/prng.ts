/**
 * A seeded PRNG for the property tests (mulberry32), and a runner that names
 * the seed and the case when a property fails. Re-run a failure with
 * `MERIDIAN_SEED=<seed> node scripts/run-tests.mjs protocol/test`.
 */

export interface Rng {
  readonly seed: number;
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [min, max] (inclusive). */
  int(min: number, max: number): number;
  pick<T>(items: readonly T[]): T;
  shuffle<T>(items: readonly T[]): T[];
}

export function makeRng(seed: number): Rng {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (min: number, max: number) => min + Math.floor(next() * (max - min + 1));
  return {
    seed,
    next,
    int,
    pick: (items) => {
      if (items.length === 0) throw new Error("pick from empty list");
      return items[int(0, items.length - 1)]!;
    },
    shuffle: (items) => {
      const out = [...items];
      for (let i = out.length - 1; i > 0; i--) {
        const j = int(0, i);
        [out[i], out[j]] = [out[j]!, out[i]!];
      }
      return out;
    },
  };
}

/** The seed for this run: MERIDIAN_SEED when set, else random. */
export function runSeed(): number {
  const fromEnv = process.env.MERIDIAN_SEED;
  if (fromEnv !== undefined && fromEnv !== "") return Number.parseInt(fromEnv, 10) >>> 0;
  return Math.floor(Math.random() * 2 ** 32) >>> 0;
}

/**
 * Run `check` for `cases` cases, each with its own RNG derived from one seed.
 * A failure is re-thrown with the seed and case number in its message.
 */
export function forAll(name: string, cases: number, check: (rng: Rng, index: number) => void): void {
  const seed = runSeed();
  const master = makeRng(seed);
  for (let i = 0; i < cases; i++) {
    const rng = makeRng(master.int(0, 2 ** 32 - 1));
    try {
      check(rng, i);
    } catch (err) {
      const message = `property "${name}" failed at case ${i} (MERIDIAN_SEED=${seed}, case seed ${rng.seed})`;
      process.stderr.write(`${message}\n`);
      throw new Error(`${message}: ${(err as Error).message}`, { cause: err });
    }
  }
}
