/**
 * Webhooks as CloudEvents 1.0 (issue 17, item 5): what a subscription is,
 * which log events it announces and how, and how a body is signed. Pure: no
 * clock read (callers pass `nowSec`), no IO; the delivering loop is
 * replication/webhook-delivery.ts.
 *
 * Derived from the event log, so deliveries are replayable and at least
 * once with a stable id: the CloudEvent's `id` is the id of the log event it
 * announces (a redelivery, a retry or a replay carries the same id; a
 * receiver de-duplicates on it).
 *
 * Each region announces what ORIGINATED in it: an event in its own stream
 * without `cause`. A push is therefore announced once, by the region that
 * accepted it; its replica in another region is announced there as
 * `io.meridian.replicated`. A replica keeps its origin event's id, so the
 * two share an `id` with different `source`s: as the CloudEvents spec says,
 * (source, id) identifies an event, and a receiver de-duplicates on the
 * pair. Types:
 *
 *   log event                        CloudEvent type               kind (filter)
 *   manifest.pushed (no cause)       io.meridian.pushed            pushed
 *   manifest.pushed (replica)        io.meridian.replicated        replicated
 *   manifest.deleted (no cause)      io.meridian.deleted           deleted
 *   tag.set (no cause)               io.meridian.tag.moved         tag
 *   tag.deleted (no cause)           io.meridian.tag.deleted       tag
 *   tag.conflict (no cause)          io.meridian.conflict          conflict
 *   promotion.recorded passed        io.meridian.promotion.passed  promotion
 *   promotion.recorded failed        io.meridian.promotion.failed  promotion
 *     … failed by the vulnerabilities gate: io.meridian.scan-gate.refused, kind scan-gate
 *   failover.recorded (no cause)     io.meridian.failover          failover
 *   quota.exceeded (no cause)        io.meridian.quota.exceeded    quota
 *   (audit stream, SIEM only)        io.meridian.audit.<action>    (protocol/siem.ts)
 *
 * A promotion is announced to the SOURCE repository's project (the image's
 * owner), with the source tag and digest, by the region it was recorded in.
 * One CloudEvent per log event (its id is the log event's): a refusal the
 * vulnerabilities gate took part in is announced once, as scan-gate refused
 * (its `data.promotion` lists every gate), not twice.
 *
 * Failover is mesh-wide (no project). It goes to every subscription whose
 * kinds include `failover` (all, when it lists none), whatever its `repos`
 * filter: a failover changes where every project's writes are accepted.
 * What a project's subscription sees of it is cut to its project: `scopes`
 * lists only the re-homed scopes of that project (another project's
 * repository names never reach it). A subscription of project `*` (system
 * admins only: protocol/event-authority.ts, node/http/admin/webhooks.ts)
 * receives every project's events and the whole failover.
 *
 * Quota exceeded: `quota.exceeded` events are written by the node that
 * refused a push, at most one per (project, repository) per node per minute
 * (node/data/quota-refusals.ts), so a receiver hears of a refusing project
 * once a minute at most per repository and node, not once per retry.
 *
 * SIEM subscriptions (`siem: true`, project `*`, no filters) deliver the
 * region's audit records instead of its log events (protocol/siem.ts,
 * replication/webhook-delivery.ts).
 *
 * Announcements read the stream, not the view: a record is announced as
 * the stream holds it, so it is as trustworthy as the stream's append
 * rights (cli/nats-auth.ts). `failover.recorded` carries the mesh's proof
 * like the re-homing events before it (protocol/event-authority.ts); the
 * view's check of it guards the view, not the announcement.
 *
 * HTTP: structured mode (`Content-Type: application/cloudevents+json`, the
 * whole CloudEvent as the body), chosen so the signed body is the entire
 * event, attributes included. `X-Meridian-Timestamp: <unix seconds>` and
 * `X-Meridian-Signature: sha256=<hex>`, the HMAC-SHA256 by the
 * subscription's secret of `<timestamp>.<body>`: a receiver recomputes it
 * and refuses a timestamp older than its tolerance (stops replays of a
 * captured request).
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { projectOf } from "./access.js";
import type { RegistryEvent } from "./events.js";
import { globMatch } from "./policy-match.js";

export const WEBHOOK_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** A subscription's project: a project name, or `*` (every project; system admins only). */
export const WEBHOOK_PROJECT = /^(?:\*|[a-z0-9][a-z0-9._-]{0,62})$/;
/** The project of a subscription reaching every project. */
export const ALL_PROJECTS = "*";
export const WEBHOOK_KINDS = [
  "pushed",
  "replicated",
  "deleted",
  "tag",
  "conflict",
  "promotion",
  "scan-gate",
  "failover",
  "quota",
] as const;
export type WebhookKind = (typeof WEBHOOK_KINDS)[number];

/** One subscription: where to deliver which events of one project. */
export interface WebhookSubscription {
  name: string;
  /** http(s) URL of the receiver. */
  url: string;
  /** Only repositories of this project (`team` for `team/app`); `*`: every project. */
  project: string;
  /**
   * Deliver the region's audit records (a SIEM), batched, instead of its log
   * events; only with project `*` and no `events`/`repos` filter.
   */
  siem?: boolean;
  /** Kinds to deliver; absent: all. */
  events?: WebhookKind[];
  /** picomatch globs over the full repository name; absent: every repository of the project. */
  repos?: string[];
  /**
   * Where each worker reads the HMAC key: an absolute path present on every
   * region's host (as TLS keys are). The key never enters the log, a GET
   * answer or a log line; absent: deliveries are unsigned.
   */
  secretFile?: string;
}

/** The CloudEvent (1.0, structured JSON) announcing one log event. */
export interface WebhookCloudEvent {
  specversion: "1.0";
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  datacontenttype: "application/json";
  data: {
    /** Absent for a failover (mesh-wide). */
    repository?: string;
    tag?: string;
    digest?: string;
    mediaType?: string;
    actor: string;
    region: string;
    origin: string;
    /** promotion.recorded: where to, the outcome and every gate's result. */
    promotion?: {
      id: string;
      outcome: "passed" | "failed";
      destination: { kind: string; name: string; repository: string; tag: string };
      gates: Array<{ gate: string; scope: string; ok: boolean; reason: string }>;
    };
    /** failover.recorded: from, to, epoch, force and the scopes the subscription may see. */
    failover?: { from: string; to: string; epoch: number; force: boolean; scopes: string[] };
    /** quota.exceeded: the project's quota and usage when the push was refused. */
    quota?: { project: string; limitBytes: number; usedBytes: number; requestedBytes: number };
  };
}

/** The kind and CloudEvent type of a log event in `region`'s stream; undefined: not announced there. */
export function webhookKindOf(event: RegistryEvent): { kind: WebhookKind; type: string } | undefined {
  const replica = event.cause !== undefined;
  switch (event.type) {
    case "manifest.pushed":
      return replica
        ? { kind: "replicated", type: "io.meridian.replicated" }
        : { kind: "pushed", type: "io.meridian.pushed" };
    case "manifest.deleted":
      return replica ? undefined : { kind: "deleted", type: "io.meridian.deleted" };
    case "tag.set":
      return replica ? undefined : { kind: "tag", type: "io.meridian.tag.moved" };
    case "tag.deleted":
      return replica ? undefined : { kind: "tag", type: "io.meridian.tag.deleted" };
    case "tag.conflict":
      return replica ? undefined : { kind: "conflict", type: "io.meridian.conflict" };
    case "promotion.recorded":
      if (replica) return undefined;
      if (event.outcome === "passed") return { kind: "promotion", type: "io.meridian.promotion.passed" };
      return event.gates.some((g) => g.gate === "vulnerabilities" && !g.ok)
        ? { kind: "scan-gate", type: "io.meridian.scan-gate.refused" }
        : { kind: "promotion", type: "io.meridian.promotion.failed" };
    case "failover.recorded":
      return replica ? undefined : { kind: "failover", type: "io.meridian.failover" };
    case "quota.exceeded":
      return replica ? undefined : { kind: "quota", type: "io.meridian.quota.exceeded" };
    default:
      return undefined;
  }
}

/**
 * The CloudEvent `sub` receives for `event` read from `region`'s stream;
 * undefined when the subscription's project or filters leave it out.
 */
export function cloudEventFor(
  sub: WebhookSubscription,
  event: RegistryEvent,
  region: string,
): WebhookCloudEvent | undefined {
  if (sub.siem === true) return undefined;
  const kind = webhookKindOf(event);
  if (kind === undefined) return undefined;
  if (sub.events !== undefined && !sub.events.includes(kind.kind)) return undefined;
  if (event.type === "failover.recorded") return failoverEventFor(sub, event, region);
  // A promotion is announced to the source repository's project, with the source tag and digest.
  const promoted = event.type === "promotion.recorded" ? event : undefined;
  const repo = promoted?.source.repository ?? (event as { repo?: string }).repo;
  if (repo === undefined) return undefined;
  if (sub.project !== ALL_PROJECTS && projectOf(repo) !== sub.project) return undefined;
  if (sub.repos !== undefined && !sub.repos.some((glob) => globMatch(glob, repo))) return undefined;
  const tag =
    promoted?.source.tag ?? ("tag" in event && typeof event.tag === "string" ? event.tag : undefined);
  const digest = promoted
    ? promoted.source.digest
    : event.type === "tag.conflict"
      ? (event.winner.digest ?? undefined)
      : "digest" in event
        ? event.digest
        : undefined;
  const data: WebhookCloudEvent["data"] = {
    repository: repo,
    actor: event.actor,
    region,
    origin: event.origin,
  };
  if (tag !== undefined) data.tag = tag;
  if (digest !== undefined) data.digest = digest;
  if (event.type === "manifest.pushed") data.mediaType = event.mediaType;
  if (promoted !== undefined)
    data.promotion = {
      id: promoted.promotionId,
      outcome: promoted.outcome,
      destination: promoted.destination,
      gates: promoted.gates,
    };
  if (event.type === "quota.exceeded")
    data.quota = {
      project: event.project,
      limitBytes: event.limitBytes,
      usedBytes: event.usedBytes,
      requestedBytes: event.requestedBytes,
    };
  return {
    specversion: "1.0",
    id: event.id,
    source: `meridian/${region}`,
    type: kind.type,
    subject: tag !== undefined ? `${repo}:${tag}` : `${repo}@${digest ?? ""}`,
    time: event.at,
    datacontenttype: "application/json",
    data,
  };
}

/** A failover as `sub` sees it: its project's scopes only, unless it is `*`. */
function failoverEventFor(
  sub: WebhookSubscription,
  event: Extract<RegistryEvent, { type: "failover.recorded" }>,
  region: string,
): WebhookCloudEvent {
  const scopes =
    sub.project === ALL_PROJECTS
      ? [...event.scopes]
      : // "" is the scope of every repository: every project's.
        event.scopes.filter((s) => s === "" || projectOf(s) === sub.project);
  return {
    specversion: "1.0",
    id: event.id,
    source: `meridian/${region}`,
    type: "io.meridian.failover",
    subject: `${event.from}->${event.to}`,
    time: event.at,
    datacontenttype: "application/json",
    data: {
      actor: event.actor,
      region,
      origin: event.origin,
      failover: { from: event.from, to: event.to, epoch: event.epoch ?? 0, force: event.force, scopes },
    },
  };
}

/** The `X-Meridian-Signature` value of `body` sent at `timestampSec` (see the header). */
export function signWebhook(secret: string | Buffer, timestampSec: number, body: string): string {
  const mac = createHmac("sha256", secret).update(`${timestampSec}.`).update(body).digest("hex");
  return `sha256=${mac}`;
}

/**
 * A receiver's check: the signature matches and the timestamp is within
 * `toleranceSec` of `nowSec`. Constant-time comparison.
 */
export function verifyWebhook(
  secret: string | Buffer,
  timestampHeader: string | undefined,
  signatureHeader: string | undefined,
  body: string,
  nowSec: number,
  toleranceSec = 300,
): boolean {
  if (timestampHeader === undefined || signatureHeader === undefined) return false;
  if (!/^\d{1,12}$/.test(timestampHeader)) return false;
  const ts = Number(timestampHeader);
  if (Math.abs(nowSec - ts) > toleranceSec) return false;
  const want = Buffer.from(signWebhook(secret, ts, body));
  const got = Buffer.from(signatureHeader);
  return want.length === got.length && timingSafeEqual(want, got);
}

/**
 * May a delivery go to `host` (a literal address the receiver's name
 * resolved to)? Link-local (169.254/16, fe80::/10: cloud metadata
 * services), unspecified and multicast addresses never (SSRF); loopback
 * only with `allowLoopback` (tests, single-host labs). Private ranges are
 * allowed: receivers inside the network are the usual case.
 */
export function receiverAddressAllowed(address: string, allowLoopback: boolean): boolean {
  const a = address.toLowerCase().replace(/^::ffff:/, "");
  if (a === "0.0.0.0" || a === "::") return false;
  if (/^169\.254\./.test(a) || /^fe[89ab][0-9a-f]:/.test(a)) return false;
  if (/^(22[4-9]|23\d)\./.test(a) || a.startsWith("ff")) return false;
  if (/^127\./.test(a) || a === "::1") return allowLoopback;
  return true;
}

/** Backoff before retry `n` (0-based): doubling from 1 s, capped at 5 min, with up to 50% jitter (`random` in [0,1)). */
export function webhookBackoffMs(n: number, random: number): number {
  const base = Math.min(300_000, 1_000 * 2 ** Math.min(n, 20));
  return Math.round(base * (0.5 + random / 2));
}

/** Read a subscription (admin API body or stored event), listing every problem. */
export function parseWebhookSubscription(value: unknown): WebhookSubscription {
  const problems: string[] = [];
  const v = (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>;
  if (typeof v.name !== "string" || !WEBHOOK_NAME.test(v.name)) problems.push("name: want [a-z0-9._-], 1-63");
  let url: URL | undefined;
  try {
    url = new URL(String(v.url));
  } catch {
    problems.push("url: want an http(s) URL");
  }
  if (url !== undefined && url.protocol !== "http:" && url.protocol !== "https:")
    problems.push("url: want an http(s) URL");
  if (url !== undefined && (url.username !== "" || url.password !== ""))
    problems.push("url: credentials in a URL are refused (use the secret)");
  if (typeof v.project !== "string" || !WEBHOOK_PROJECT.test(v.project))
    problems.push("project: want a project name or *");
  if (v.siem !== undefined && typeof v.siem !== "boolean") problems.push("siem: want true or false");
  if (v.siem === true && v.project !== ALL_PROJECTS) problems.push("siem: wants project *");
  if (v.siem === true && (v.events !== undefined || v.repos !== undefined))
    problems.push("siem: takes no events or repos filter (it streams every audit record)");
  const events = v.events;
  if (
    events !== undefined &&
    (!Array.isArray(events) ||
      events.length === 0 ||
      !events.every((e) => (WEBHOOK_KINDS as readonly unknown[]).includes(e)))
  )
    problems.push(`events: want some of ${WEBHOOK_KINDS.join(", ")}`);
  const repos = v.repos;
  if (
    repos !== undefined &&
    (!Array.isArray(repos) ||
      repos.length === 0 ||
      repos.length > 64 ||
      !repos.every((r) => typeof r === "string" && r.length > 0))
  )
    problems.push("repos: want 1-64 globs");
  const secretFile = v.secretFile;
  if (
    secretFile !== undefined &&
    (typeof secretFile !== "string" || !secretFile.startsWith("/") || secretFile.length > 4096)
  )
    problems.push("secretFile: want an absolute path");
  if (problems.length > 0) throw new TypeError(`invalid webhook: ${problems.join("; ")}`);
  const sub: WebhookSubscription = {
    name: v.name as string,
    url: String(v.url),
    project: v.project as string,
  };
  if (v.siem === true) sub.siem = true;
  if (events !== undefined) sub.events = [...(events as WebhookKind[])];
  if (repos !== undefined) sub.repos = [...(repos as string[])];
  if (secretFile !== undefined) sub.secretFile = secretFile as string;
  return sub;
}
