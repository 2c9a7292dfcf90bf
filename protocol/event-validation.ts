/**
 * Checking an event read from the log (or received from a peer): its
 * envelope and its body, field by field, before anything applies it. A
 * refused event throws EventInvalidError naming the first bad field.
 */
import { ACTIONS, ROLES, type RobotGrant, type Role } from "./access.js";
import { parseDigest } from "./digest.js";
import { ENDPOINT_NAME, endpointProblems } from "./endpoints.js";
import { EventInvalidError } from "./errors.js";
import { REGION_PATTERN } from "./event-subjects.js";
import {
  type ConflictSide,
  EVENT_SCHEMA_VERSION,
  EVENT_TYPES,
  type EventType,
  MAX_PULLS_PER_EVENT,
  PROJECT_NAME,
  REPO_TYPES,
  type RegistryEvent,
  ROBOT_NAME,
  USER_NAME,
} from "./event-types.js";
import { isHlc } from "./hlc.js";
import { RULE_NAME, ruleProblems } from "./immutable-tags.js";
import { parseRepository, parseTag } from "./names.js";
import { oidcEventProblems } from "./oidc.js";
import { checkGates, gateEventProblems, promotionProblems } from "./promotion.js";
import { proxyProblems } from "./proxy.js";
import { parsePullPolicy } from "./pull-policy.js";
import { parseRetentionRule, RETENTION_NAME } from "./retention.js";
import { TAG_MERGE_RULES, type TagMergeRule } from "./tag-merge.js";
import { parseWebhookSubscription, WEBHOOK_NAME, WEBHOOK_PROJECT } from "./webhook.js";

const REGION = new RegExp(REGION_PATTERN);

/**
 * A repository's durability: `async` (the default) acknowledges a push once
 * its own region's log holds it; `sync(k)` only once k other regions also
 * hold the manifest and everything it references. Returns k (0 for async);
 * undefined when the text is neither.
 */
export function parseDurability(text: string | undefined): number | undefined {
  if (text === undefined || text === "async") return 0;
  const m = /^sync\(([1-9][0-9]?)\)$/.exec(text);
  return m === null ? undefined : Number(m[1]);
}

export function encodeEvent(event: RegistryEvent): Uint8Array {
  return Buffer.from(JSON.stringify(event));
}

/** Decode and validate an event read from the log; throws EventInvalidError. */
export function decodeEvent(data: Uint8Array): RegistryEvent {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8"));
  } catch (err) {
    throw new EventInvalidError("event is not JSON", { cause: err });
  }
  return validateEvent(value);
}

/** Check an event's shape; returns it typed, or throws EventInvalidError naming the field. */
export function validateEvent(value: unknown): RegistryEvent {
  const e = value as Record<string, unknown>;
  if (typeof e !== "object" || e === null) throw new EventInvalidError("event is not an object");
  const need = (cond: boolean, field: string) => {
    if (!cond) throw new EventInvalidError(`event field invalid: ${field}`);
  };
  need(typeof e.id === "string" && e.id.length > 0 && e.id.length <= 64, "id");
  need(e.v === EVENT_SCHEMA_VERSION, "v");
  need(typeof e.origin === "string" && REGION.test(e.origin), "origin");
  need(isHlc(e.hlc), "hlc");
  need(typeof e.actor === "string", "actor");
  need(typeof e.at === "string" && !Number.isNaN(Date.parse(e.at)), "at");
  need(e.cause === undefined || typeof e.cause === "string", "cause");
  need(e.srcSeq === undefined || (Number.isSafeInteger(e.srcSeq) && (e.srcSeq as number) > 0), "srcSeq");
  need(e.epoch === undefined || (Number.isSafeInteger(e.epoch) && (e.epoch as number) >= 0), "epoch");
  need(e.proof === undefined || (typeof e.proof === "string" && e.proof.length <= 1024), "proof");
  need(EVENT_TYPES.includes(e.type as EventType), "type");
  const type = e.type as EventType;
  if (REPO_TYPES.has(type) || (type === "alert.raised" && e.repo !== undefined)) {
    need(typeof e.repo === "string", "repo");
    wrap("repo", () => parseRepository(e.repo as string));
  }
  const text = (field: string, max = 256) =>
    need(
      typeof e[field] === "string" && (e[field] as string).length > 0 && (e[field] as string).length <= max,
      field,
    );
  switch (type) {
    case "blob.pushed":
      wrap("digest", () => parseDigest(e.digest as string));
      need(Number.isSafeInteger(e.size) && (e.size as number) >= 0, "size");
      break;
    case "manifest.pushed":
      wrap("digest", () => parseDigest(e.digest as string));
      need(typeof e.mediaType === "string", "mediaType");
      need(Number.isSafeInteger(e.size) && (e.size as number) >= 0, "size");
      need(Array.isArray(e.blobs), "blobs");
      need(Array.isArray(e.manifests), "manifests");
      for (const d of [...(e.blobs as string[]), ...(e.manifests as string[])])
        wrap("references", () => parseDigest(d));
      if (e.subject !== undefined) wrap("subject", () => parseDigest(e.subject as string));
      need(e.artifactType === undefined || typeof e.artifactType === "string", "artifactType");
      need(e.annotations === undefined || isStringMap(e.annotations), "annotations");
      need(e.platforms === undefined || isStringMap(e.platforms), "platforms");
      if (e.tag !== undefined) wrap("tag", () => parseTag(e.tag as string));
      need(e.prev === undefined || (typeof e.prev === "string" && e.tag !== undefined), "prev");
      break;
    case "tag.set":
      wrap("tag", () => parseTag(e.tag as string));
      wrap("digest", () => parseDigest(e.digest as string));
      need(e.prev === undefined || typeof e.prev === "string", "prev");
      break;
    case "tag.deleted":
      wrap("tag", () => parseTag(e.tag as string));
      need(e.prev === undefined || typeof e.prev === "string", "prev");
      break;
    case "manifest.deleted":
    case "blob.deleted":
      wrap("digest", () => parseDigest(e.digest as string));
      break;
    case "repository.deleted":
      break;
    case "tag.conflict":
      wrap("tag", () => parseTag(e.tag as string));
      need(isConflictSide(e.winner), "winner");
      need(isConflictSide(e.loser), "loser");
      need(e.rule === undefined || (typeof e.rule === "string" && RULE_NAME.test(e.rule)), "rule");
      break;
    case "repository.configured":
      need(typeof e.scope === "string", "scope");
      wrap("scope", () => parseScope(e.scope as string));
      need(TAG_MERGE_RULES.includes(e.tagMerge as TagMergeRule), "tagMerge");
      need(e.home === undefined || (typeof e.home === "string" && REGION.test(e.home)), "home");
      need(e.tagMerge !== "home-region" || e.home !== undefined, "home");
      need(e.durability === undefined || parseDurability(e.durability as string) !== undefined, "durability");
      break;
    case "policy.set":
      text("name", 63);
      need(typeof e.policy === "object" && e.policy !== null && !Array.isArray(e.policy), "policy");
      need((e.policy as Record<string, unknown>).name === e.name, "policy.name");
      break;
    case "policy.deleted":
      text("name", 63);
      break;
    case "policy.run":
      text("name", 63);
      text("runId", 64);
      need(e.region === undefined || (typeof e.region === "string" && REGION.test(e.region)), "region");
      break;
    case "policy.run.finished":
      text("name", 63);
      text("runId", 64);
      need(typeof e.region === "string" && REGION.test(e.region), "region");
      need(["ok", "failed", "halted"].includes(e.outcome as string), "outcome");
      need(
        typeof e.stats === "object" &&
          e.stats !== null &&
          Object.values(e.stats).every((n) => typeof n === "number" && Number.isFinite(n)),
        "stats",
      );
      need(e.error === undefined || typeof e.error === "string", "error");
      break;
    case "alert.raised":
      text("kind", 64);
      text("message", 1024);
      need(e.policy === undefined || typeof e.policy === "string", "policy");
      need(e.detail === undefined || (typeof e.detail === "object" && e.detail !== null), "detail");
      break;
    case "breaker.reset":
      text("name", 63);
      break;
    case "gc.run":
    case "gc.collected":
    case "gc.finished":
      validateGcEvent(e, type, need, text);
      break;
    case "user.set":
      need(typeof e.name === "string" && USER_NAME.test(e.name), "name");
      need(typeof e.passwordHash === "string" && e.passwordHash.startsWith("scrypt$"), "passwordHash");
      need(typeof e.systemAdmin === "boolean", "systemAdmin");
      need(e.operator === undefined || typeof e.operator === "boolean", "operator");
      break;
    case "user.deleted":
      need(typeof e.name === "string" && USER_NAME.test(e.name), "name");
      break;
    case "robot.set":
      need(typeof e.name === "string" && ROBOT_NAME.test(e.name), "name");
      need(typeof e.secretHash === "string" && e.secretHash.startsWith("scrypt$"), "secretHash");
      need(typeof e.expiresAt === "string" && !Number.isNaN(Date.parse(e.expiresAt)), "expiresAt");
      need(Array.isArray(e.grants) && (e.grants as unknown[]).every(isRobotGrant), "grants");
      break;
    case "robot.deleted":
      need(typeof e.name === "string" && ROBOT_NAME.test(e.name), "name");
      break;
    case "tokens.revoked":
      need(typeof e.name === "string" && (USER_NAME.test(e.name) || ROBOT_NAME.test(e.name)), "name");
      need(typeof e.before === "string" && !Number.isNaN(Date.parse(e.before)), "before");
      break;
    case "project.set":
      need(typeof e.name === "string" && PROJECT_NAME.test(e.name), "name");
      need(typeof e.public === "boolean", "public");
      break;
    case "immutability.set":
      for (const field of ["name", "repositories", "tags"])
        need(!ruleProblems(e).some((p) => p.startsWith(`${field}:`)), field);
      break;
    case "immutability.deleted":
      need(typeof e.name === "string" && RULE_NAME.test(e.name), "name");
      break;
    case "member.set":
      need(typeof e.project === "string" && PROJECT_NAME.test(e.project), "project");
      need(typeof e.user === "string" && USER_NAME.test(e.user), "user");
      need(e.role === null || ROLES.includes(e.role as Role), "role");
      break;
    case "quota.set":
      need(typeof e.project === "string" && PROJECT_NAME.test(e.project), "project");
      need(
        e.limitBytes === null || (Number.isSafeInteger(e.limitBytes) && (e.limitBytes as number) >= 0),
        "limitBytes",
      );
      break;
    case "retention.set":
      need(typeof e.name === "string" && RETENTION_NAME.test(e.name), "name");
      wrap("rule", () => parseRetentionRule(e.rule));
      need((e.rule as Record<string, unknown>).name === e.name, "rule.name");
      break;
    case "retention.deleted":
      need(typeof e.name === "string" && RETENTION_NAME.test(e.name), "name");
      break;
    case "endpoint.set":
      for (const problem of endpointProblems(e)) need(false, problem.slice(0, problem.indexOf(":")));
      break;
    case "endpoint.deleted":
      need(typeof e.name === "string" && ENDPOINT_NAME.test(e.name), "name");
      break;
    case "gate.set":
      for (const problem of gateEventProblems(e)) need(false, problem);
      wrap("gates", () => checkGates(e.gates));
      break;
    case "gate.deleted":
      for (const problem of gateEventProblems(e)) need(false, problem);
      break;
    case "pull-policy.set":
      wrap("policy", () => {
        const p = e.policy as { project?: unknown; gates?: unknown; exempt?: unknown } | undefined;
        const parsed = parsePullPolicy(String(p?.project), { gates: p?.gates, exempt: p?.exempt });
        // Stored normalized: the same document parses to the same policy.
        if (JSON.stringify(parsed) !== JSON.stringify(p)) throw new Error("not normalized");
      });
      break;
    case "pull-policy.deleted":
      need(typeof e.project === "string" && PROJECT_NAME.test(e.project), "project");
      break;
    case "promotion.recorded":
      for (const problem of promotionProblems(e)) need(false, problem);
      break;
    case "proxy.set":
      for (const problem of proxyProblems(e)) need(false, problem.slice(0, problem.indexOf(":")));
      break;
    case "proxy.deleted":
      need(typeof e.project === "string" && PROJECT_NAME.test(e.project), "project");
      break;
    case "webhook.set":
      wrap("subscription", () => parseWebhookSubscription(e.subscription));
      break;
    case "webhook.deleted":
      need(typeof e.project === "string" && WEBHOOK_PROJECT.test(e.project), "project");
      need(typeof e.name === "string" && WEBHOOK_NAME.test(e.name), "name");
      break;
    case "webhook.replay":
      need(typeof e.project === "string" && WEBHOOK_PROJECT.test(e.project), "project");
      need(typeof e.name === "string" && WEBHOOK_NAME.test(e.name), "name");
      need(typeof e.region === "string" && REGION.test(e.region), "region");
      need(Number.isSafeInteger(e.fromSeq) && (e.fromSeq as number) >= 1, "fromSeq");
      break;
    case "failover.recorded":
      need(typeof e.from === "string" && REGION.test(e.from), "from");
      need(typeof e.to === "string" && REGION.test(e.to), "to");
      need(Array.isArray(e.scopes) && (e.scopes as unknown[]).every((x) => typeof x === "string"), "scopes");
      need(typeof e.force === "boolean", "force");
      break;
    case "quota.exceeded":
      need(typeof e.project === "string" && PROJECT_NAME.test(e.project), "project");
      need(typeof e.repo === "string", "repo");
      wrap("repo", () => parseRepository(e.repo as string));
      need(typeof e.region === "string" && REGION.test(e.region), "region");
      for (const f of ["limitBytes", "usedBytes", "requestedBytes"])
        need(Number.isSafeInteger(e[f]) && (e[f] as number) >= 0, f);
      break;
    case "oidc.user.set":
    case "oidc.secret.set":
      for (const field of oidcEventProblems(e, USER_NAME)) need(false, field);
      break;
    case "pulls.recorded":
      need(Array.isArray(e.pulls) && e.pulls.length > 0 && e.pulls.length <= MAX_PULLS_PER_EVENT, "pulls");
      for (const p of e.pulls as Array<Record<string, unknown>>) {
        need(typeof p === "object" && p !== null, "pulls");
        need(typeof p.repo === "string", "pulls.repo");
        wrap("pulls.repo", () => parseRepository(p.repo as string));
        wrap("pulls.digest", () => parseDigest(p.digest as string));
        need(typeof p.at === "string" && !Number.isNaN(Date.parse(p.at)), "pulls.at");
      }
      break;
  }
  return e as unknown as RegistryEvent;
}

/** The fields of the garbage collector's records (protocol/event-types.ts GcRun …). */
function validateGcEvent(
  e: Record<string, unknown>,
  type: EventType,
  need: (cond: boolean, field: string) => void,
  text: (field: string, max?: number) => void,
): void {
  const ms = (field: string) => need(Number.isSafeInteger(e[field]) && (e[field] as number) >= 0, field);
  text("runId", 64);
  need(typeof e.region === "string" && REGION.test(e.region), "region");
  if (type === "gc.run") {
    need(typeof e.dryRun === "boolean", "dryRun");
    ms("graceMs");
    ms("undeleteWindowMs");
    text("trigger", 32);
  } else if (type === "gc.collected") {
    wrap("digest", () => parseDigest(e.digest as string));
    ms("size");
    text("reason", 64);
    need(Array.isArray(e.links) && (e.links as unknown[]).length <= 10_000, "links");
    for (const link of e.links as Array<{ repo: string; write: string }>) {
      need(typeof link === "object" && link !== null && typeof link.write === "string", "links");
      wrap("links", () => parseRepository(link.repo));
    }
  } else {
    need(["ok", "failed"].includes(e.outcome as string), "outcome");
    need(
      typeof e.stats === "object" &&
        e.stats !== null &&
        Object.values(e.stats).every((n) => typeof n === "number" && Number.isFinite(n)),
      "stats",
    );
    need(e.error === undefined || typeof e.error === "string", "error");
  }
}

/** A configuration scope: a repository name, or a prefix of names ending in "/" ("" = every repository). */
export function parseScope(scope: string): string {
  if (scope === "") return scope;
  parseRepository(scope.endsWith("/") ? scope.slice(0, -1) : scope);
  return scope;
}

function isConflictSide(value: unknown): boolean {
  const v = value as ConflictSide;
  return (
    typeof v === "object" &&
    v !== null &&
    typeof v.id === "string" &&
    typeof v.origin === "string" &&
    REGION.test(v.origin) &&
    (v.digest === null || (typeof v.digest === "string" && isDigest(v.digest))) &&
    isHlc(v.hlc)
  );
}

function isDigest(value: string): boolean {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

function isStringMap(value: unknown): boolean {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    Object.values(value).every((v) => typeof v === "string")
  );
}

function wrap(field: string, check: () => unknown): void {
  try {
    check();
  } catch (err) {
    throw new EventInvalidError(`event field invalid: ${field}`, { cause: err });
  }
}

function isRobotGrant(value: unknown): boolean {
  const g = value as Partial<RobotGrant>;
  return (
    typeof g === "object" &&
    g !== null &&
    typeof g.project === "string" &&
    PROJECT_NAME.test(g.project) &&
    typeof g.repositories === "string" &&
    g.repositories.length > 0 &&
    g.repositories.length <= 255 &&
    Array.isArray(g.actions) &&
    g.actions.length > 0 &&
    g.actions.every((a) => ACTIONS.includes(a))
  );
}
