/**
 * The metric names a PromQL expression reads, and the names a set of real
 * /metrics pages export: what prometheus-live.test.ts compares for the
 * Grafana board and the alert rules. Pure.
 *
 * Not a PromQL parser: strings, label matchers, ranges, label lists (by,
 * without, on, ignoring, group_left, group_right), Grafana variables and
 * numbers (durations too) are taken out; every identifier left that is not
 * a call (followed by "(") or a keyword is a metric name. That is all
 * PromQL allows there, for the expressions Meridian ships (its cases are
 * tested beside the use).
 */
const KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "inf", "nan"]);

/** The metric names `expr` selects, in order, without repeats. */
export function metricNames(expr: string): string[] {
  const s = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, " ")
    .replace(/#[^\n]*/g, " ")
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/gi, " ")
    .replace(/\b(?:group_left|group_right)\b/gi, " ")
    .replace(/\$\{[^}]*\}|\$\w+/g, " ");
  const names: string[] = [];
  for (const m of s.matchAll(/(\d+(?:\.\d+)?(?:e[+-]?\d+)?[a-z]*)|([a-zA-Z_:][\w:]*)/gi)) {
    const word = m[2];
    if (word === undefined || KEYWORDS.has(word.toLowerCase())) continue;
    if (/^\s*\(/.test(s.slice(m.index! + word.length))) continue;
    if (!names.includes(word)) names.push(word);
  }
  return names;
}

/**
 * Every name a Prometheus text page can be queried by: each `# TYPE`'d
 * metric, with `_bucket`, `_sum` and `_count` of histograms and `_sum`,
 * `_count` of summaries (the names exist whether or not a series has a sample yet).
 */
export function exportedNames(pages: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const page of pages)
    for (const m of page.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      const [, name, type] = m as unknown as [string, string, string];
      out.add(name);
      if (type === "histogram") for (const s of ["_bucket", "_sum", "_count"]) out.add(name + s);
      if (type === "summary") for (const s of ["_sum", "_count"]) out.add(name + s);
    }
  return out;
}
