/**
 * Figures over interleaved rounds, as the side-by-side suites report them
 * (pushforms.ts, s3.ts; rest.ts takes the median): the median with its
 * spread (min–max), formatted for a markdown cell, and per-round ratios
 * (round i of each contestant ran seconds apart, so their ratio is the one
 * to take the median of).
 */

export function quantiles(values: number[]): { median: number; min: number; max: number } {
  const s = [...values].sort((a, b) => a - b);
  const n = s.length;
  const median = n % 2 === 1 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
  return { median, min: s[0]!, max: s[n - 1]! };
}

/** A figure with about three significant digits ("–" when not finite). */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return "–";
  if (Math.abs(x) >= 100) return Math.round(x).toLocaleString("en-US");
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

/** "median (min–max)", the median alone for one value, `empty` for none. */
export function cell(values: number[], empty = ""): string {
  if (values.length === 0) return empty;
  const q = quantiles(values);
  return values.length === 1 ? fmt(q.median) : `${fmt(q.median)} (${fmt(q.min)}–${fmt(q.max)})`;
}

/** a[i] / b[i] for the rounds both have. */
export function perRoundRatios(a: number[], b: number[]): number[] {
  return a.slice(0, Math.min(a.length, b.length)).map((x, i) => x / b[i]!);
}
