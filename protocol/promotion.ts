/**
 * Promotion (issue 17, item 2): what a promotion names, where its gates come
 * from, its stable id and the record the log keeps of it. Pure: no clock, no
 * IO (node/promotion.ts gathers the evidence, copies and commits).
 *
 * Gate scopes. A gate configuration (protocol/gates.ts) is an admin object
 * kept by `gate.set` / `gate.deleted` events, scoped to
 *   - `destination:NAME`: a region of the mesh or an external endpoint; a
 *     promotion to another repository of the same region uses the region's
 *     name (a promotion inside region a is judged by `destination:a`);
 *   - `project:NAME`: the project of the DESTINATION repository (`prod` for
 *     `prod/app`): whoever owns where the image lands says what may land there.
 * A promotion is judged by the union: every configuration that applies is
 * evaluated in full and all must pass (a gate set in both scopes is checked
 * twice, each result naming its scope). No configuration at all: nothing is
 * required, the promotion passes (the result list says so: empty).
 *
 * Destination text (`meridian promote SRC --to DEST[/REPO[:TAG]]`): the first
 * path segment is a destination name when it names a region or an endpoint
 * (regions first); otherwise the whole text is a repository of the source's
 * region. REPO and TAG default to the source's.
 *
 * Idempotency: the promotion id is a hash of (source region, repository, tag,
 * digest, destination kind, name, repository, tag), so the same request for
 * the same content has the same id; a retry after a pass finds the record and
 * answers it again without a second copy (once the destination still holds
 * the tag at that digest).
 */
import { createHash } from "node:crypto";
import { projectOf } from "./access.js";
import { type GateConfig, GateConfigSchema, type GateName, parseGateConfig } from "./gates.js";
import { parseRepository, parseTag } from "./names.js";

export const GATE_SCOPES = ["destination", "project"] as const;
export type GateScopeKind = (typeof GATE_SCOPES)[number];
/** A destination, endpoint or project name. */
export const GATE_SCOPE_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export interface GateScope {
  kind: GateScopeKind;
  name: string;
}

/** `destination:b` / `project:prod` → a scope; throws an Error saying what is wrong. */
export function parseGateScope(text: string): GateScope {
  const colon = text.indexOf(":");
  const kind = text.slice(0, colon);
  const name = text.slice(colon + 1);
  if (colon < 0 || !(GATE_SCOPES as readonly string[]).includes(kind))
    throw new Error(`gate scope ${JSON.stringify(text.slice(0, 80))}: want destination:NAME or project:NAME`);
  if (!GATE_SCOPE_NAME.test(name))
    throw new Error(`gate scope ${JSON.stringify(text.slice(0, 80))}: invalid name`);
  return { kind: kind as GateScopeKind, name };
}

export const scopeText = (s: GateScope) => `${s.kind}:${s.name}`;

export type DestinationKind = "region" | "endpoint" | "repository";

export interface PromotionSource {
  region: string;
  repository: string;
  tag: string;
  digest: string;
}

export interface PromotionDestination {
  kind: DestinationKind;
  /** The region or endpoint name (for `repository`: the source's region). */
  name: string;
  repository: string;
  tag: string;
}

export interface RecordedGate {
  gate: GateName;
  /** Which configuration asked for it: `destination:b`, `project:prod`. */
  scope: string;
  ok: boolean;
  reason: string;
}

/** The body of a `promotion.recorded` event. */
export interface PromotionRecord {
  /** Stable: `promotionId(source, destination)`. */
  promotionId: string;
  source: PromotionSource;
  destination: PromotionDestination;
  gates: RecordedGate[];
  outcome: "passed" | "failed";
}

/** `REPO:TAG` → its parts; throws an Error naming what is wrong. */
export function parseSourceReference(text: string): { repository: string; tag: string } {
  const colon = text.lastIndexOf(":");
  if (colon <= 0 || text.lastIndexOf("/") > colon || text.includes("@"))
    throw new Error(`source ${JSON.stringify(text.slice(0, 200))}: want REPO:TAG`);
  return { repository: parseRepository(text.slice(0, colon)), tag: parseTag(text.slice(colon + 1)) };
}

/**
 * The destination named by `text`, given the names of the mesh's regions and
 * the endpoints; throws an Error naming what is wrong.
 */
export function parseDestination(
  text: string,
  source: { region: string; repository: string; tag: string },
  regions: readonly string[],
  endpoints: readonly string[],
): PromotionDestination {
  if (text === "" || text.length > 512) throw new Error("destination: want DEST[/REPO[:TAG]]");
  const slash = text.indexOf("/");
  const first = slash < 0 ? text : text.slice(0, slash);
  const rest = slash < 0 ? "" : text.slice(slash + 1);
  const kind: DestinationKind | undefined = regions.includes(first)
    ? "region"
    : endpoints.includes(first)
      ? "endpoint"
      : undefined;
  if (kind === undefined) {
    if (slash < 0 && !text.includes(":") && !/^[a-z0-9]+([._-][a-z0-9]+)*$/.test(text))
      throw new Error(`destination ${JSON.stringify(text.slice(0, 80))}: no such region or endpoint`);
    const { repository, tag } = repoAndTag(text, source);
    if (repository === source.repository && tag === source.tag)
      throw new Error(
        `destination ${JSON.stringify(text.slice(0, 80))} is neither a region, an endpoint nor another repository (it is the source)`,
      );
    return { kind: "repository", name: source.region, repository, tag };
  }
  const { repository, tag } = rest === "" ? source : repoAndTag(rest, source);
  if (kind === "region" && first === source.region && repository === source.repository && tag === source.tag)
    throw new Error(`destination ${first}: the source is already there`);
  return { kind, name: first, repository, tag };
}

function repoAndTag(text: string, source: { tag: string }): { repository: string; tag: string } {
  const colon = text.lastIndexOf(":");
  const hasTag = colon > 0 && text.lastIndexOf("/") < colon;
  try {
    return hasTag
      ? { repository: parseRepository(text.slice(0, colon)), tag: parseTag(text.slice(colon + 1)) }
      : { repository: parseRepository(text), tag: source.tag };
  } catch (err) {
    throw new Error(`destination ${JSON.stringify(text.slice(0, 200))}: ${(err as Error).message}`);
  }
}

/** The scopes whose gates judge a promotion to `d` (see the header). */
export function scopesFor(d: PromotionDestination): GateScope[] {
  return [
    { kind: "destination", name: d.name },
    { kind: "project", name: projectOf(d.repository) },
  ];
}

/** The stable id of promoting `s` to `d`. */
export function promotionId(s: PromotionSource, d: PromotionDestination): string {
  const key = [s.region, s.repository, s.tag, s.digest, d.kind, d.name, d.repository, d.tag].join("\n");
  return `pr-${createHash("sha256").update(key).digest("hex").slice(0, 24)}`;
}

export const PROMOTION_ID = /^pr-[0-9a-f]{24}$/;
/** The longest gate reason a record keeps. */
export const MAX_REASON = 2000;

/** Every problem of a stored gate configuration event's fields. */
export function gateEventProblems(e: Record<string, unknown>): string[] {
  const problems: string[] = [];
  if (!(GATE_SCOPES as readonly unknown[]).includes(e.scope)) problems.push("scope");
  if (typeof e.name !== "string" || !GATE_SCOPE_NAME.test(e.name)) problems.push("name");
  return problems;
}

/** Check a `gates` value of a gate.set event; throws listing every problem. */
export function checkGates(value: unknown): GateConfig {
  return parseGateConfig(value);
}

/** Every problem of a promotion.recorded body (field names). */
export function promotionProblems(e: Record<string, unknown>): string[] {
  const problems: string[] = [];
  if (typeof e.promotionId !== "string" || !PROMOTION_ID.test(e.promotionId)) problems.push("promotionId");
  const s = (e.source ?? {}) as Record<string, unknown>;
  const d = (e.destination ?? {}) as Record<string, unknown>;
  const name = (v: unknown) => typeof v === "string" && GATE_SCOPE_NAME.test(v);
  const repo = (v: unknown) => typeof v === "string" && ok(() => parseRepository(v));
  const tag = (v: unknown) => typeof v === "string" && ok(() => parseTag(v));
  if (!name(s.region)) problems.push("source.region");
  if (!repo(s.repository)) problems.push("source.repository");
  if (!tag(s.tag)) problems.push("source.tag");
  if (typeof s.digest !== "string" || !/^sha(256:[0-9a-f]{64}|512:[0-9a-f]{128})$/.test(s.digest))
    problems.push("source.digest");
  if (!["region", "endpoint", "repository"].includes(d.kind as string)) problems.push("destination.kind");
  if (!name(d.name)) problems.push("destination.name");
  if (!repo(d.repository)) problems.push("destination.repository");
  if (!tag(d.tag)) problems.push("destination.tag");
  if (!Array.isArray(e.gates) || e.gates.length > 32) problems.push("gates");
  else
    for (const g of e.gates as Array<Record<string, unknown>>) {
      if (
        typeof g !== "object" ||
        g === null ||
        !Object.hasOwn(GateConfigSchema.properties, String(g.gate)) ||
        typeof g.ok !== "boolean" ||
        typeof g.reason !== "string" ||
        g.reason.length > MAX_REASON ||
        typeof g.scope !== "string" ||
        g.scope.length > 80
      ) {
        problems.push("gates");
        break;
      }
    }
  if (e.outcome !== "passed" && e.outcome !== "failed") problems.push("outcome");
  else if (Array.isArray(e.gates) && (e.outcome === "passed") !== e.gates.every((g) => g?.ok === true))
    problems.push("outcome");
  return problems;
}

function ok(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch {
    return false;
  }
}

/** One line for a list (activity feed, tag history). */
export function promotionSummary(p: PromotionRecord): string {
  const d = p.destination;
  const where = d.kind === "repository" ? `${d.repository}:${d.tag}` : `${d.name}/${d.repository}:${d.tag}`;
  const failed = p.gates.filter((g) => !g.ok).map((g) => g.gate);
  return `${p.source.repository}:${p.source.tag} (${p.source.digest.slice(0, 19)}) promoted to ${where}: ${p.outcome}${failed.length > 0 ? ` (${[...new Set(failed)].join(", ")})` : ""}`;
}
