/**
 * Reading a policy's fields: the small readers ./policy-parse.ts builds a
 * policy from. Each reports a problem through `bad(field, problem)` and
 * returns what it could read, so one parse lists every problem at once.
 */
import { parseRegion } from "./event-subjects.js";

/** Report one problem with one field (the field path as written: `tags.include[1]`). */
export type Problem = (field: string, problem: string) => void;

/** A value paired with the field path it was read from (for messages). */
export type Entry<T = string> = [T, string];

/** A string or a list of strings, each with its field path. */
export function strings(value: unknown, field: string, bad: Problem): Entry[] {
  const out: Entry[] = [];
  for (const [x, f] of anyList(value, field, bad)) {
    if (typeof x === "string") out.push([x, f]);
    else bad(f, `want a string, got ${typeName(x)}`);
  }
  return out;
}

/** The entries `ok` accepts; the others reported with `problem`. */
export function valid(
  entries: Entry[],
  ok: (s: string) => boolean,
  problem: (s: string) => string,
  bad: Problem,
) {
  return entries.filter(([s, field]) => {
    if (ok(s)) return true;
    bad(field, problem(s));
    return false;
  });
}

export function isRegionOrAll(r: string): boolean {
  if (r === "*") return true;
  try {
    parseRegion(r);
    return true;
  } catch {
    return false;
  }
}

export function anyList(value: unknown, field: string, bad: Problem): Entry<unknown>[] {
  if (value === undefined) return [];
  if (Array.isArray(value)) return value.map((x, i) => [x, `${field}[${i}]`]);
  if (typeof value === "string" || isObject(value)) return [[value, field]];
  bad(field, `want a string or a list, got ${typeName(value)}`);
  return [];
}

export function bool(value: unknown, field: string, def: boolean, bad: Problem): boolean {
  if (value === undefined) return def;
  if (typeof value === "boolean") return value;
  if (typeof value === "string") {
    const s = value.toLowerCase();
    if (s === "true" || s === "on" || s === "yes") return true;
    if (s === "false" || s === "off" || s === "no") return false;
  }
  bad(field, `want a boolean (true/false, on/off, yes/no), got ${show(value)}`);
  return def;
}

/** The object's own keys whose value is not null (YAML `key:` with nothing after it means absent). */
export function present(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, x]) => x !== null && x !== undefined));
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function typeName(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "a list" : typeof v === "object" ? "an object" : typeof v;
}

export function quote(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}

export function show(v: unknown): string {
  return typeof v === "string" ? quote(v) : typeof v === "object" && v !== null ? typeName(v) : String(v);
}

export function unique<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

export function sortedUnique(entries: Entry[]): string[] {
  return unique(entries.map(([x]) => x)).sort(cmp);
}

export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}
