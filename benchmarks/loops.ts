/**
 * The two loops the mesh benchmarks (convergence.ts, scale.ts) drive their
 * writes and wait for agreement with.
 */
import { sleep } from "../testing/faults.js";

/** Run `n` tasks with at most `width` in flight. */
export async function pool(n: number, width: number, task: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await task(next++);
    }),
  );
}

/**
 * Ask `check` every 50 ms until it says yes (a failed ask counts as no: a
 * link mid-heal); the ms it took, or an error after `ms`.
 */
export async function until(ms: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < ms) {
    try {
      if (await check()) return Date.now() - start;
    } catch {
      // a link mid-heal: ask again
    }
    await sleep(50);
  }
  throw new Error(`not converged within ${ms} ms`);
}
