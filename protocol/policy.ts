/**
 * Replication policies (DESIGN.md §"Replication"): which content goes from
 * which region to which, when, and how fast. A policy is an admin object,
 * replicated to every region inside events, so its normalized form (`Policy`)
 * is plain JSON and is itself valid input: `parsePolicy(parsePolicy(x))`
 * equals `parsePolicy(x)`.
 *
 * Parsing is strict and complete: unknown keys are refused (typo protection),
 * and every problem found is reported at once in one `PolicyInvalidError`
 * whose message lists them ("; "-separated) and whose `detail` is
 * `{ errors: string[] }`, each error naming the policy, the field and the
 * problem: `policy "prod": tags.include[1]: invalid regex: ...`.
 *
 * Matching is pure: no clock, no IO. Compiled globs, regexes and semver ranges
 * are memoized by pattern text, so a policy may be matched against many
 * repositories and tags cheaply. Globs and regexes run on ./linear-regex.ts's
 * automaton (polynomial time: the names matched are chosen by clients).
 *
 * Which policies apply to a link (source region → destination region), the
 * rule `effectivePolicies` implements (issue 11, finding 4: a `prod/**`
 * policy used to stop everything else on its link, silently):
 *  - every enabled policy naming both ends (or "*") covers it;
 *  - the default full mirror (DEFAULT_POLICY: everything, deletes included)
 *    stays on every link unless a policy naming that link says
 *    `exclusive: true`; adding a policy never takes anything away by itself.
 *    While the mirror is on, it carries everything any non-exclusive policy
 *    would select, so the link is governed by the mirror alone (a
 *    non-exclusive policy's filters, trigger and `deletes: false` narrow
 *    nothing; its bandwidth budget still applies to the link);
 *  - a link some policy names with `exclusive: true` carries only what its
 *    enabled covering policies select; everything else on it stops (and
 *    `meridian policy apply` / `policy plan` say so, link by link);
 *  - an exclusive policy that is disabled still keeps the mirror off its
 *    link: disabling pauses that traffic, it never widens it to everything;
 *  - a stored policy without `exclusive` (written before it existed) is not
 *    exclusive. Removing an exclusive policy (or making it non-exclusive)
 *    brings the mirror back, and the replication worker runs its catch-up
 *    at once (replication/worker.ts), not at the next periodic anti-entropy.
 */
import { Cron } from "croner";
import { LRUCache } from "lru-cache";
import picomatch from "picomatch";
import semver from "semver";
import { LineCounter, parseAllDocuments, stringify } from "yaml";
import { PolicyInvalidError } from "./errors.js";
import { parseRegion } from "./events.js";
import { linearRegex } from "./linear-regex.js";

export type EventKind = "push" | "tag" | "delete";
export type Trigger = { type: "on-push" } | { type: "schedule"; cron: string } | { type: "manual" };
export type TagMatcher =
  | { kind: "glob"; pattern: string }
  | { kind: "regex"; pattern: string }
  | { kind: "semver"; range: string };

export interface Policy {
  /** /^[a-z0-9][a-z0-9._-]{0,62}$/, unique within a mesh. */
  name: string;
  /** Region names, sorted and unique, or ["*"] for every region. */
  sources: string[];
  /** Region names, sorted and unique, or ["*"] for every region. */
  destinations: string[];
  /** picomatch globs over the full repository name; include is never empty (default ["**"]). */
  repositories: { include: string[]; exclude: string[] };
  /** An empty include selects every tag; an exclude always wins. */
  tags: { include: TagMatcher[]; exclude: TagMatcher[] };
  /** "os/arch" or "os/arch/variant", sorted and unique; empty selects every platform. */
  platforms: string[];
  /** Replicate only manifests that carry a signature referrer. */
  signedOnly: boolean;
  /** Event kinds replicated, sorted and unique; "delete" travels only when `deletes` is on too. */
  events: EventKind[];
  /** Deletions travel only when asked (default false). */
  deletes: boolean;
  /** A destination tag already pointing elsewhere may be moved (default true). */
  override: boolean;
  /** When replication runs (default on-push). */
  trigger: Trigger;
  /** Budget for the region link, shared by everything on it; undefined = unlimited. */
  bandwidthBytesPerSecond: number | undefined;
  /** Artifact types that must be present in the destination before a tag there moves; sorted, unique. */
  holdTagsForReferrers: string[];
  /** A disabled policy covers no link (an exclusive one still keeps the default mirror off it). */
  enabled: boolean;
  /**
   * Only what the link's policies select replicates on the links this policy
   * names: the default full mirror is off there (default false: the mirror
   * stays, and this policy narrows nothing).
   */
  exclusive: boolean;
}

export const EVENT_KINDS: readonly EventKind[] = ["delete", "push", "tag"];

/** Artifact types of signatures: cosign (OCI 1.1 referrers) and notation. */
export const SIGNATURE_ARTIFACT_TYPES: readonly string[] = Object.freeze([
  "application/vnd.dev.cosign.artifact.sig.v1+json",
  "application/vnd.cncf.notary.signature",
]);

/**
 * The policy that applies to a link only when no configured policy names that
 * link: a mesh with no policies mirrors everything, deletes included, as
 * before policies existed. See `effectivePolicies`.
 */
export const DEFAULT_POLICY: Policy = deepFreeze({
  name: "default",
  sources: ["*"],
  destinations: ["*"],
  repositories: { include: ["**"], exclude: [] },
  tags: { include: [], exclude: [] },
  platforms: [],
  signedOnly: false,
  events: [...EVENT_KINDS],
  deletes: true,
  override: true,
  trigger: { type: "on-push" },
  bandwidthBytesPerSecond: undefined,
  holdTagsForReferrers: [],
  enabled: true,
  exclusive: false,
});

/** Longest glob, regex or semver range accepted (bounds compile time and regex backtracking). */
export const MAX_PATTERN_LENGTH = 256;

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const PLATFORM_PART = "[a-z0-9][a-z0-9._-]{0,31}";
const PLATFORM = new RegExp(`^${PLATFORM_PART}/${PLATFORM_PART}(?:/${PLATFORM_PART})?$`);
/** RFC 6838 type/subtype, as the OCI image spec restricts media types. */
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;
const RATE = /^(\d+(?:\.\d+)?)\s*([kKMGT]?)(iB|B|bit)\/s$/;
const PICOMATCH: picomatch.PicomatchOptions = { windows: false };

const KEYS = [
  "name",
  "source",
  "sources",
  "destination",
  "destinations",
  "repositories",
  "tags",
  "platforms",
  "signedOnly",
  "events",
  "deletes",
  "override",
  "trigger",
  "bandwidth",
  "bandwidthBytesPerSecond",
  "holdTagsForReferrers",
  "enabled",
  "exclusive",
];

// ---------------------------------------------------------------- parsing

/** Validate and normalize one policy (YAML/JSON object, or a normalized Policy); throws PolicyInvalidError. */
export function parsePolicy(value: unknown): Policy {
  const errors: string[] = [];
  const policy = readPolicy(value, "policy", errors);
  if (errors.length > 0) throw invalid(errors);
  return policy!;
}

/**
 * Every policy in one YAML text: one policy, a list of them, a mapping with a
 * `policies:` list, or several `---`-separated documents of any of these.
 * Empty documents are skipped; names must be unique across the text.
 */
export function parsePolicies(yamlText: string): Policy[] {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(yamlText, { lineCounter, prettyErrors: false });
  const syntax: string[] = [];
  for (const doc of docs) {
    for (const e of doc.errors) {
      const { line, col } = lineCounter.linePos(e.pos[0]);
      // A bare * (as in `source: *`) is YAML's alias marker: say so.
      const hint = e.code === "BAD_ALIAS" ? ' (quote "*" when you mean every region)' : "";
      syntax.push(`policy YAML: line ${line}, column ${col}: ${e.message}${hint}`);
    }
  }
  if (syntax.length > 0) throw invalid(syntax);

  const errors: string[] = [];
  const items: unknown[] = [];
  docs.forEach((doc, d) => {
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      errors.push(`policy YAML: document ${d + 1}: ${(err as Error).message}`);
      return;
    }
    if (value === null || value === undefined) return;
    if (Array.isArray(value)) items.push(...value);
    else if (isObject(value) && "policies" in value) {
      const extra = Object.keys(value).filter((k) => k !== "policies");
      if (extra.length > 0)
        errors.push(`policy YAML: document ${d + 1}: unknown keys next to policies: ${extra.join(", ")}`);
      if (Array.isArray(value.policies)) items.push(...value.policies);
      else if (value.policies !== null) errors.push(`policy YAML: document ${d + 1}: policies: want a list`);
    } else if (isObject(value)) items.push(value);
    else errors.push(`policy YAML: document ${d + 1}: want a policy, a list of policies, or policies: [...]`);
  });

  const policies: Policy[] = [];
  const seen = new Map<string, number>();
  items.forEach((item, i) => {
    const policy = readPolicy(item, `policy #${i + 1}`, errors);
    if (policy === undefined) return;
    const first = seen.get(policy.name);
    if (first !== undefined) errors.push(`policy "${policy.name}": name: duplicate (also policy #${first})`);
    else seen.set(policy.name, i + 1);
    policies.push(policy);
  });
  if (errors.length > 0) throw invalid(errors);
  return policies;
}

/** YAML for one policy, in the input format; `parsePolicies(policyToYaml(p))` is `[p]`. */
export function policyToYaml(policy: Policy): string {
  const doc: Record<string, unknown> = { name: policy.name };
  if (policy.sources.length === 1) doc.source = policy.sources[0];
  else doc.sources = policy.sources;
  if (policy.destinations.length === 1) doc.destination = policy.destinations[0];
  else doc.destinations = policy.destinations;
  const { include, exclude } = policy.repositories;
  doc.repositories = exclude.length === 0 ? include : { include, exclude };
  if (policy.tags.include.length > 0 || policy.tags.exclude.length > 0) {
    doc.tags = {
      include: policy.tags.include.map(matcherText),
      exclude: policy.tags.exclude.map(matcherText),
    };
  }
  if (policy.platforms.length > 0) doc.platforms = policy.platforms;
  doc.signedOnly = policy.signedOnly;
  doc.events = policy.events;
  doc.deletes = policy.deletes;
  doc.override = policy.override;
  doc.trigger = policy.trigger.type === "schedule" ? { schedule: policy.trigger.cron } : policy.trigger.type;
  if (policy.bandwidthBytesPerSecond !== undefined) doc.bandwidth = rateText(policy.bandwidthBytesPerSecond);
  if (policy.holdTagsForReferrers.length > 0) doc.holdTagsForReferrers = policy.holdTagsForReferrers;
  doc.enabled = policy.enabled;
  doc.exclusive = policy.exclusive;
  // lineWidth 0: never fold a long pattern across lines.
  return stringify(doc, { lineWidth: 0 });
}

function invalid(errors: string[]): PolicyInvalidError {
  return new PolicyInvalidError(errors.join("; "), { detail: { errors } });
}

type Problem = (field: string, problem: string) => void;

/** One policy, or undefined when it has problems (each pushed onto `errors`). */
function readPolicy(value: unknown, fallbackLabel: string, errors: string[]): Policy | undefined {
  if (!isObject(value)) {
    errors.push(`${fallbackLabel}: want an object (mapping), got ${typeName(value)}`);
    return undefined;
  }
  const before = errors.length;
  const v = present(value);
  const label = typeof v.name === "string" ? `policy ${quote(v.name)}` : fallbackLabel;
  const bad: Problem = (field, problem) => errors.push(`${label}: ${field}: ${problem}`);

  for (const key of Object.keys(value)) {
    if (KEYS.includes(key)) continue;
    const near = KEYS.find((k) => editDistance(k.toLowerCase(), key.toLowerCase()) <= 2);
    bad(key, `unknown key${near === undefined ? "" : ` (did you mean "${near}"?)`}`);
  }

  let name = "";
  if (v.name === undefined) bad("name", "required");
  else if (typeof v.name !== "string" || !NAME.test(v.name))
    bad("name", `invalid name ${show(v.name)} (want /^[a-z0-9][a-z0-9._-]{0,62}$/)`);
  else name = v.name;

  const sources = regions(v, "source", "sources", bad);
  const destinations = regions(v, "destination", "destinations", bad);
  if (
    sources.length === 1 &&
    sources[0] !== "*" &&
    destinations.length === 1 &&
    destinations[0] === sources[0]
  )
    bad("destinations", "same as the only source (a region never replicates to itself)");

  const policy: Policy = {
    name,
    sources,
    destinations,
    repositories: repositories(v.repositories, bad),
    tags: tags(v.tags, bad),
    platforms: sortedUnique(
      valid(
        strings(v.platforms, "platforms", bad),
        (p) => PLATFORM.test(p),
        (p) => `invalid platform ${show(p)} (want os/arch or os/arch/variant)`,
        bad,
      ),
    ),
    signedOnly: bool(v.signedOnly, "signedOnly", false, bad),
    events: events(v.events, bad),
    deletes: bool(v.deletes, "deletes", false, bad),
    override: bool(v.override, "override", true, bad),
    trigger: trigger(v.trigger, bad),
    bandwidthBytesPerSecond: bandwidth(v, bad),
    holdTagsForReferrers: sortedUnique(
      valid(
        strings(v.holdTagsForReferrers, "holdTagsForReferrers", bad),
        (t) => MEDIA_TYPE.test(t),
        (t) => `invalid artifact type ${show(t)} (want a media type)`,
        bad,
      ),
    ),
    enabled: bool(v.enabled, "enabled", true, bad),
    exclusive: bool(v.exclusive, "exclusive", false, bad),
  };
  return errors.length === before ? policy : undefined;
}

/** `single` (a string or list) or `plural` (a list or string): region names or "*". */
function regions(v: Record<string, unknown>, single: string, plural: string, bad: Problem): string[] {
  if (v[single] !== undefined && v[plural] !== undefined) {
    bad(plural, `give ${single} or ${plural}, not both`);
    return [];
  }
  const key = v[single] !== undefined ? single : plural;
  if (v[key] === undefined) {
    bad(single, "required");
    return [];
  }
  const list = strings(v[key], key, bad);
  if (list.length === 0 && (typeof v[key] === "string" || Array.isArray(v[key]))) bad(key, "empty");
  const names = valid(list, isRegionOrAll, (r) => `invalid region name ${show(r)}`, bad);
  return names.some(([r]) => r === "*") ? ["*"] : sortedUnique(names);
}

function repositories(value: unknown, bad: Problem): Policy["repositories"] {
  const parts = includeExclude(value, "repositories", (v, f) => strings(v, f, bad), bad);
  const globs = (entries: Entry[]) =>
    unique(entries.filter(([p, field]) => checkGlob(p, field, bad)).map(([p]) => p));
  if (parts.include !== undefined && parts.include.length === 0)
    bad(parts.includeField, "empty (omit it to select every repository)");
  return {
    include: parts.include === undefined ? ["**"] : globs(parts.include),
    exclude: globs(parts.exclude),
  };
}

function tags(value: unknown, bad: Problem): Policy["tags"] {
  const parts = includeExclude(value, "tags", (v, f) => anyList(v, f, bad), bad);
  const matchers = (entries: Entry<unknown>[]) => {
    const out = new Map<string, TagMatcher>();
    for (const [raw, field] of entries) {
      const m = tagMatcher(raw, field, bad);
      if (m !== undefined) out.set(matcherText(m), m);
    }
    return [...out.values()];
  };
  return { include: matchers(parts.include ?? []), exclude: matchers(parts.exclude) };
}

/** A string, a list, or `{include, exclude}`; a string or a list is the include list. */
function includeExclude<T>(
  value: unknown,
  field: string,
  items: (value: unknown, field: string) => Entry<T>[],
  bad: Problem,
): { include: Entry<T>[] | undefined; includeField: string; exclude: Entry<T>[] } {
  if (value === undefined) return { include: undefined, includeField: field, exclude: [] };
  // An object with `kind` is a single tag matcher in its normalized form, not {include, exclude}.
  if (!isObject(value) || "kind" in value)
    return { include: items(value, field), includeField: field, exclude: [] };
  const v = present(value);
  for (const key of Object.keys(v))
    if (key !== "include" && key !== "exclude")
      bad(`${field}.${key}`, "unknown key (want include or exclude)");
  return {
    include: v.include === undefined ? undefined : items(v.include, `${field}.include`),
    includeField: `${field}.include`,
    exclude: v.exclude === undefined ? [] : items(v.exclude, `${field}.exclude`),
  };
}

function tagMatcher(raw: unknown, field: string, bad: Problem): TagMatcher | undefined {
  let m: TagMatcher;
  if (typeof raw === "string") {
    if (raw.startsWith("regex:")) m = { kind: "regex", pattern: raw.slice(6) };
    else if (raw.startsWith("semver:")) m = { kind: "semver", range: raw.slice(7) };
    else m = { kind: "glob", pattern: raw.startsWith("glob:") ? raw.slice(5) : raw };
  } else if (isObject(raw)) {
    const o = present(raw);
    const textKey = o.kind === "semver" ? "range" : "pattern";
    const extra = Object.keys(o).filter((k) => k !== "kind" && k !== textKey);
    if (o.kind !== "glob" && o.kind !== "regex" && o.kind !== "semver") {
      bad(field, `unknown matcher kind ${show(o.kind)} (want glob, regex or semver)`);
      return undefined;
    }
    if (extra.length > 0 || typeof o[textKey] !== "string") {
      bad(field, `want {kind: ${o.kind}, ${textKey}: string}`);
      return undefined;
    }
    const text = o[textKey] as string;
    m = o.kind === "semver" ? { kind: "semver", range: text } : { kind: o.kind, pattern: text };
  } else {
    bad(field, `want a string, got ${typeName(raw)}`);
    return undefined;
  }
  const text = m.kind === "semver" ? m.range : m.pattern;
  if (!checkLength(text, field, bad)) return undefined;
  if (m.kind === "glob") return checkGlob(m.pattern, field, bad) ? m : undefined;
  if (m.kind === "regex") {
    try {
      new RegExp(m.pattern);
      return m;
    } catch (err) {
      bad(field, `invalid regex: ${(err as Error).message}`);
      return undefined;
    }
  }
  if (semver.validRange(m.range) === null) {
    bad(field, `invalid semver range ${show(m.range)}`);
    return undefined;
  }
  return m;
}

function checkLength(text: string, field: string, bad: Problem): boolean {
  if (text.length === 0) bad(field, "empty pattern");
  else if (text.length > MAX_PATTERN_LENGTH)
    bad(field, `pattern longer than ${MAX_PATTERN_LENGTH} characters (${text.length})`);
  else return true;
  return false;
}

function checkGlob(pattern: string, field: string, bad: Problem): boolean {
  if (!checkLength(pattern, field, bad)) return false;
  try {
    // picomatch compiles a malformed glob ("a{", "[z-a]") to a regex that never matches.
    if (picomatch.makeRe(pattern, PICOMATCH).source !== "$^") return true;
  } catch {}
  bad(field, `invalid glob ${show(pattern)}`);
  return false;
}

function events(value: unknown, bad: Problem): EventKind[] {
  if (value === undefined) return [...EVENT_KINDS];
  const list = strings(value, "events", bad);
  if (list.length === 0 && Array.isArray(value)) bad("events", "empty (omit it to select every kind)");
  const kinds = valid(
    list,
    (k) => EVENT_KINDS.includes(k as EventKind),
    (k) => `unknown event kind ${show(k)} (want push, tag or delete)`,
    bad,
  );
  return sortedUnique(kinds) as EventKind[];
}

function trigger(value: unknown, bad: Problem): Trigger {
  const def: Trigger = { type: "on-push" };
  if (value === undefined || value === "on-push") return def;
  if (value === "manual") return { type: "manual" };
  if (value === "schedule") {
    bad("trigger", 'schedule needs a cron expression: {schedule: "*/15 * * * *"}');
    return def;
  }
  if (isObject(value)) {
    const o = present(value);
    const keys = Object.keys(o).sort().join(",");
    if (keys === "schedule") return schedule(o.schedule, "trigger.schedule", bad);
    if (keys === "type" && (o.type === "on-push" || o.type === "manual")) return { type: o.type };
    if (keys === "cron,type" && o.type === "schedule") return schedule(o.cron, "trigger.cron", bad);
  }
  bad("trigger", `invalid trigger ${show(value)} (want on-push, manual or {schedule: "<cron>"})`);
  return def;
}

function schedule(cron: unknown, field: string, bad: Problem): Trigger {
  const def: Trigger = { type: "on-push" };
  if (typeof cron !== "string") {
    bad(field, `want a cron expression, got ${typeName(cron)}`);
    return def;
  }
  const parts = cron.trim().split(/\s+/);
  if (parts.length !== 5 && parts.length !== 6) {
    bad(field, `invalid cron ${show(cron)}: want 5 fields (or 6 with seconds first)`);
    return def;
  }
  const normalized = parts.join(" ");
  try {
    cronOf(normalized);
  } catch (err) {
    bad(field, `invalid cron ${show(cron)}: ${(err as Error).message}`);
    return def;
  }
  return { type: "schedule", cron: normalized };
}

/** A croner job that never runs by itself (no callback): used only to compute times. */
function cronOf(pattern: string): Cron {
  return new Cron(pattern, { timezone: "UTC", mode: "5-or-6-parts" });
}

function bandwidth(v: Record<string, unknown>, bad: Problem): number | undefined {
  if (v.bandwidth !== undefined && v.bandwidthBytesPerSecond !== undefined) {
    bad("bandwidth", "give bandwidth or bandwidthBytesPerSecond, not both");
    return undefined;
  }
  const field = v.bandwidth !== undefined ? "bandwidth" : "bandwidthBytesPerSecond";
  const value = v[field];
  if (value === undefined) return undefined;
  const rate = parseRate(value);
  if (typeof rate === "string") bad(field, rate);
  return typeof rate === "number" ? rate : undefined;
}

/** Bytes per second (rounded to a whole byte) from a number or "<n>[KMG]i?B/s" / "<n>[kMG]bit/s"; else a problem. */
function parseRate(value: unknown): number | string {
  const want = 'want bytes per second, or "<n>[KMG]i?B/s" / "<n>[kMG]bit/s" (e.g. 50MiB/s, 100Mbit/s)';
  let bytes: number;
  if (typeof value === "number") bytes = value;
  else if (typeof value === "string") {
    const m = RATE.exec(value.trim());
    if (m === null) return `invalid bandwidth ${show(value)}: ${want}`;
    const [, n, prefix = "", unit] = m;
    if (unit === "iB" && prefix === "") return `invalid bandwidth ${show(value)}: ${want}`;
    const power = " kMGT".indexOf(prefix === "K" ? "k" : prefix || " ");
    const base = unit === "iB" ? 1024 : 1000;
    bytes = (Number(n) * base ** power) / (unit === "bit" ? 8 : 1);
  } else return `invalid bandwidth ${show(value)}: ${want}`;
  if (!Number.isFinite(bytes) || bytes <= 0) return `invalid bandwidth ${show(value)}: must be > 0`;
  const rounded = Math.round(bytes);
  if (rounded < 1) return `invalid bandwidth ${show(value)}: less than 1 B/s`;
  if (rounded > Number.MAX_SAFE_INTEGER) return `invalid bandwidth ${show(value)}: too large`;
  return rounded;
}

function bool(value: unknown, field: string, def: boolean, bad: Problem): boolean {
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

/** A value paired with the field path it was read from (for messages). */
type Entry<T = string> = [T, string];

/** A string or a list of strings, each with its field path. */
function strings(value: unknown, field: string, bad: Problem): Entry[] {
  const out: Entry[] = [];
  for (const [x, f] of anyList(value, field, bad)) {
    if (typeof x === "string") out.push([x, f]);
    else bad(f, `want a string, got ${typeName(x)}`);
  }
  return out;
}

/** The entries `ok` accepts; the others reported with `problem`. */
function valid(entries: Entry[], ok: (s: string) => boolean, problem: (s: string) => string, bad: Problem) {
  return entries.filter(([s, field]) => {
    if (ok(s)) return true;
    bad(field, problem(s));
    return false;
  });
}

function isRegionOrAll(r: string): boolean {
  if (r === "*") return true;
  try {
    parseRegion(r);
    return true;
  } catch {
    return false;
  }
}

function anyList(value: unknown, field: string, bad: Problem): Entry<unknown>[] {
  if (value === undefined) return [];
  if (Array.isArray(value)) return value.map((x, i) => [x, `${field}[${i}]`]);
  if (typeof value === "string" || isObject(value)) return [[value, field]];
  bad(field, `want a string or a list, got ${typeName(value)}`);
  return [];
}

// ---------------------------------------------------------------- matching

/** The policy carries traffic from `source` to `destination`: enabled, distinct ends, both named (or "*"). */
export function coversLink(policy: Policy, source: string, destination: string): boolean {
  return policy.enabled && namesLink(policy, source, destination);
}

/** Both ends are named by the policy (or "*"), enabled or not. */
export function namesLink(policy: Policy, source: string, destination: string): boolean {
  return (
    source !== destination &&
    (policy.sources.includes("*") || policy.sources.includes(source)) &&
    (policy.destinations.includes("*") || policy.destinations.includes(destination))
  );
}

export function selectsRepository(policy: Policy, repo: string): boolean {
  const { include, exclude } = policy.repositories;
  return include.some((g) => globMatch(g, repo)) && !exclude.some((g) => globMatch(g, repo));
}

/**
 * Any include matches (or there is none) and no exclude does. A semver
 * matcher matches only a tag that is a strict semver, with an optional
 * leading "v", satisfying the range; as npm ranges do, a pre-release
 * (1.3.0-rc.1) satisfies a range only when the range names a pre-release of
 * the same major.minor.patch.
 */
export function selectsTag(policy: Policy, tag: string): boolean {
  const { include, exclude } = policy.tags;
  return (
    (include.length === 0 || include.some((m) => tagMatches(m, tag))) &&
    !exclude.some((m) => tagMatches(m, tag))
  );
}

/**
 * Platform filter for a manifest (a child of an index): an empty list selects
 * every platform and a manifest without a platform is always selected.
 * "linux/arm64" matches every variant of linux/arm64; "linux/arm64/v8" only
 * that variant (a manifest that states no variant does not match it).
 */
export function selectsPlatform(
  policy: Policy,
  platform: { os: string; architecture: string; variant?: string } | undefined,
): boolean {
  if (policy.platforms.length === 0 || platform === undefined) return true;
  return policy.platforms.some((p) => {
    const [os, arch, variant] = p.split("/");
    return (
      os === platform.os &&
      arch === platform.architecture &&
      (variant === undefined || variant === platform.variant)
    );
  });
}

/** The kind is listed in `events`; a delete travels only when `deletes` is on as well. */
export function selectsKind(policy: Policy, kind: EventKind): boolean {
  return policy.events.includes(kind) && (kind !== "delete" || policy.deletes);
}

/**
 * The policy narrows content beyond repositories and event kinds, so it
 * cannot replicate event by event: it reconciles repositories instead.
 */
export function isFiltered(policy: Policy): boolean {
  return (
    policy.tags.include.length > 0 ||
    policy.tags.exclude.length > 0 ||
    policy.platforms.length > 0 ||
    policy.signedOnly ||
    !policy.override ||
    policy.holdTagsForReferrers.length > 0
  );
}

/** The configured policies covering a link, sorted by name. */
export function policiesForLink(policies: readonly Policy[], source: string, destination: string): Policy[] {
  return policies.filter((p) => coversLink(p, source, destination)).sort((a, b) => cmp(a.name, b.name));
}

/**
 * The policies that govern a link: the covering ones when some policy naming
 * the link (enabled or not) is exclusive; else DEFAULT_POLICY alone (the full
 * mirror carries everything a non-exclusive policy would). See the header.
 */
export function effectivePolicies(
  policies: readonly Policy[],
  source: string,
  destination: string,
): Policy[] {
  if (source === destination) return [];
  if (!isExclusiveLink(policies, source, destination)) return [DEFAULT_POLICY];
  return policiesForLink(policies, source, destination);
}

/** Some policy naming the link (enabled or not) is exclusive: the default mirror is off it. */
export function isExclusiveLink(policies: readonly Policy[], source: string, destination: string): boolean {
  return policies.some((p) => p.exclusive && namesLink(p, source, destination));
}

/**
 * For `meridian policy apply` / `policy plan`: what the policies mean for one
 * link, in words. Exclusive: "replication of everything else stops
 * (exclusive)", naming what still flows; else the full mirror stays.
 */
export function linkEffect(policies: readonly Policy[], source: string, destination: string): string {
  if (source === destination) return "";
  const link = `${source}→${destination}`;
  if (!isExclusiveLink(policies, source, destination))
    return `${link}: the full mirror stays (no exclusive policy on this link); everything still replicates`;
  const covering = policiesForLink(policies, source, destination);
  const by = policies
    .filter((p) => p.exclusive && namesLink(p, source, destination))
    .map((p) => p.name)
    .sort(cmp);
  const selected = (p: Policy) =>
    `${p.name} (${[...p.repositories.include, ...p.repositories.exclude.map((g) => `!${g}`)].join(", ")})`;
  const only =
    covering.length === 0
      ? "nothing replicates (its policies are disabled)"
      : `only ${covering.map(selected).join(", ")} replicates`;
  return `${link}: replication of everything else stops (exclusive: ${by.join(", ")}); ${only}`;
}

/** Repositories (of `repos`) that no policy governing the link selects: what does not replicate on it. */
export function unselectedRepositories(
  policies: readonly Policy[],
  source: string,
  destination: string,
  repos: readonly string[],
): string[] {
  const effective = effectivePolicies(policies, source, destination);
  return repos.filter((r) => !effective.some((p) => selectsRepository(p, r)));
}

/** The link's budget: the smallest among the policies covering it; undefined when none sets one. */
export function linkBandwidth(
  policies: readonly Policy[],
  source: string,
  destination: string,
): number | undefined {
  let min: number | undefined;
  for (const p of policiesForLink(policies, source, destination)) {
    const b = p.bandwidthBytesPerSecond;
    if (b !== undefined && (min === undefined || b < min)) min = b;
  }
  return min;
}

/**
 * The next scheduled run strictly after `after` (cron in UTC), or undefined
 * for a policy that is not scheduled, is disabled, or whose cron never fires again.
 */
export function nextRun(policy: Policy, after: Date): Date | undefined {
  if (!policy.enabled || policy.trigger.type !== "schedule") return undefined;
  return cronOf(policy.trigger.cron).nextRun(after) ?? undefined;
}

/** For display: "50 MiB/s", "1.5 GiB/s", "800 B/s". */
export function formatBytesPerSecond(n: number): string {
  for (const [unit, size] of BINARY_UNITS) {
    if (n >= size) return `${Number((n / size).toFixed(2))} ${unit}/s`;
  }
  return `${Number(n.toFixed(2))} B/s`;
}

/**
 * A referrer is a signature: its artifact type (the manifest's artifactType,
 * else its config media type) or, when that is absent, its own media type is
 * one of SIGNATURE_ARTIFACT_TYPES.
 */
export function isSignatureReferrer(artifactType: string | undefined, mediaType: string): boolean {
  return SIGNATURE_ARTIFACT_TYPES.includes(artifactType ?? mediaType);
}

// ---------------------------------------------------------------- helpers

const BINARY_UNITS: readonly [string, number][] = [
  ["TiB", 2 ** 40],
  ["GiB", 2 ** 30],
  ["MiB", 2 ** 20],
  ["KiB", 2 ** 10],
];

/** "50MiB/s" when exact in a binary unit, else the plain number (so YAML round-trips exactly). */
function rateText(n: number): string | number {
  for (const [unit, size] of BINARY_UNITS) if (n % size === 0) return `${n / size}${unit}/s`;
  return n;
}

function matcherText(m: TagMatcher): string {
  if (m.kind === "regex") return `regex:${m.pattern}`;
  if (m.kind === "semver") return `semver:${m.range}`;
  return /^(?:glob|regex|semver):/.test(m.pattern) ? `glob:${m.pattern}` : m.pattern;
}

type Test = (s: string) => boolean;
const MAX_COMPILED = 4096;
/** Least recently used matchers go first once MAX_COMPILED are held. */
const COMPILED = new LRUCache<string, Test>({ max: MAX_COMPILED });

/** Memoized by key: compiling is the cost, matching is cheap. */
function compiled(key: string, build: () => Test): Test {
  let t = COMPILED.get(key);
  if (t === undefined) {
    t = build();
    COMPILED.set(key, t);
  }
  return t;
}

/**
 * Globs and regexes are matched against names a client chose (a pushed
 * repository or tag), so they run on ./linear-regex.ts's automaton, not
 * V8's backtracking (issue 10, finding 9): picomatch's regex for
 * `*a*a*a*a*a*a*a*a*b` took 5 s against 48 characters. The answers are
 * picomatch's and RegExp's; a source the automaton does not support keeps
 * the RegExp (its length is capped by MAX_PATTERN_LENGTH).
 */
function globMatch(pattern: string, s: string): boolean {
  return compiled(`glob:${pattern}`, () => {
    const re = picomatch.makeRe(pattern, PICOMATCH);
    const linear = linearRegex(re.source, re.flags);
    // picomatch's own test: never the empty string; the glob itself always; else its regex.
    if (linear !== undefined) return (s) => s !== "" && (s === pattern || linear(s));
    return picomatch(pattern, PICOMATCH);
  })(s);
}

function tagMatches(m: TagMatcher, tag: string): boolean {
  if (m.kind === "glob") return globMatch(m.pattern, tag);
  if (m.kind === "regex") {
    return compiled(`regex:${m.pattern}`, () => {
      const linear = linearRegex(m.pattern);
      if (linear !== undefined) return linear;
      const re = new RegExp(m.pattern);
      return (s) => re.test(s);
    })(tag);
  }
  return compiled(`semver:${m.range}`, () => {
    const range = new semver.Range(m.range);
    return (s) => {
      // Strict semver with at most one leading "v" (semver.parse allows exactly that).
      const v = semver.parse(s);
      return v !== null && range.test(v);
    };
  })(tag);
}

/** The object's own keys whose value is not null (YAML `key:` with nothing after it means absent). */
function present(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, x]) => x !== null && x !== undefined));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "a list" : typeof v === "object" ? "an object" : typeof v;
}

function quote(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}

function show(v: unknown): string {
  return typeof v === "string" ? quote(v) : typeof v === "object" && v !== null ? typeName(v) : String(v);
}

function unique<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

function sortedUnique(entries: Entry[]): string[] {
  return unique(entries.map(([x]) => x)).sort(cmp);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function editDistance(a: string, b: string): number {
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

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
