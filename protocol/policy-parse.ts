/**
 * Parsing a replication policy: strict and complete. Unknown keys are
 * refused (typo protection), and every problem found is reported at once in
 * one `PolicyInvalidError` whose message lists them ("; "-separated) and
 * whose `detail` is `{ errors: string[] }`, each error naming the policy, the
 * field and the problem: `policy "prod": tags.include[1]: invalid regex: ...`.
 * The normalized form is itself valid input: `parsePolicy(parsePolicy(x))`
 * equals `parsePolicy(x)`.
 */
import picomatch from "picomatch";
import semver from "semver";
import { LineCounter, parseAllDocuments } from "yaml";
import { ENDPOINT_NAME } from "./endpoints.js";
import { PolicyInvalidError } from "./errors.js";
import {
  anyList,
  bool,
  type Entry,
  editDistance,
  isObject,
  isRegionOrAll,
  type Problem,
  present,
  quote,
  show,
  sortedUnique,
  strings,
  typeName,
  unique,
  valid,
} from "./policy-fields.js";
import {
  cronOf,
  ENDPOINT_PREFIX,
  EVENT_KINDS,
  type EventKind,
  endpointOf,
  MAX_PATTERN_LENGTH,
  matcherText,
  PICOMATCH,
  type Policy,
  type TagMatcher,
  type Trigger,
} from "./policy-types.js";

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const PLATFORM_PART = "[a-z0-9][a-z0-9._-]{0,31}";
const PLATFORM = new RegExp(`^${PLATFORM_PART}/${PLATFORM_PART}(?:/${PLATFORM_PART})?$`);
/** RFC 6838 type/subtype, as the OCI image spec restricts media types. */
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;
const RATE = /^(\d+(?:\.\d+)?)\s*([kKMGT]?)(iB|B|bit)\/s$/;

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

/** Validate and normalize one policy (YAML/JSON object, or a normalized Policy); throws PolicyInvalidError. */
export function parsePolicy(value: unknown): Policy {
  const errors: string[] = [];
  const policy = readPolicy(value, "policy", errors);
  if (errors.length > 0) throw invalid(errors);
  return policy!;
}

/**
 * The policies of the admin API's `GET /policies` answer that parse; an
 * invalid one is left out (it governs nothing in the workers either, and
 * `policy list` shows it as invalid).
 */
export function validPolicies(stored: ReadonlyArray<{ policy: unknown }>): Policy[] {
  const out: Policy[] = [];
  for (const { policy } of stored) {
    try {
      out.push(parsePolicy(policy));
    } catch {
      // left out, as above
    }
  }
  return out;
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

function invalid(errors: string[]): PolicyInvalidError {
  return new PolicyInvalidError(errors.join("; "), { detail: { errors } });
}

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
  // An invalid trigger reads as on-push: only a trigger that asked for on-push is judged.
  const onPush =
    v.trigger === undefined ||
    v.trigger === "on-push" ||
    (isObject(v.trigger) && present(v.trigger).type === "on-push");
  endpointRules(sources, destinations, onPush, v.trigger !== undefined, bad);
  return errors.length === before ? policy : undefined;
}

/**
 * The rules of external endpoints in a policy (./policy.ts's header):
 * never on both sides, and an import (an endpoint among the sources) is
 * never on-push: an external registry has no event stream to follow.
 */
function endpointRules(
  sources: string[],
  destinations: string[],
  onPush: boolean,
  triggerGiven: boolean,
  bad: Problem,
): void {
  const from = sources.filter((s) => endpointOf(s) !== undefined);
  const to = destinations.filter((d) => endpointOf(d) !== undefined);
  if (from.length > 0 && to.length > 0)
    bad(
      "destinations",
      `an endpoint on both sides (${[...from, ...to].join(", ")}): a policy imports from endpoints or exports to them, not both (Meridian never relays between two external registries)`,
    );
  if (from.length > 0 && onPush)
    bad(
      "trigger",
      `${triggerGiven ? "on-push" : "on-push (the default)"} cannot import from ${from.join(", ")}: an external registry has no event stream; use trigger: manual or {schedule: "<cron>"}`,
    );
}

/** `single` (a string or list) or `plural` (a list or string): region names, "*" or `endpoint:NAME`. */
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
  const names = valid(
    list,
    (r) => isRegionOrAll(r) || endpointOf(r) !== undefined,
    (r) =>
      r.startsWith(ENDPOINT_PREFIX)
        ? `invalid endpoint name ${show(r.slice(ENDPOINT_PREFIX.length))} (want ${ENDPOINT_NAME.source})`
        : `invalid region name ${show(r)} (or endpoint:NAME for an external endpoint)`,
    bad,
  );
  // "*" is every region and never an endpoint: endpoints named beside it are kept.
  if (!names.some(([r]) => r === "*")) return sortedUnique(names);
  return ["*", ...sortedUnique(names.filter(([r]) => endpointOf(r) !== undefined))];
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

/** A tag matcher as written (`v*`, `regex:…`, `semver:…`, or {kind, …}); problems through `bad`. */
export function tagMatcher(raw: unknown, field: string, bad: Problem): TagMatcher | undefined {
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

export function checkGlob(pattern: string, field: string, bad: Problem): boolean {
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
