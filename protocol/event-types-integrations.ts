/**
 * Admin objects about the registries and receivers around Meridian (issue
 * 17): external endpoints, promotion gates and records, pull-through cache
 * projects, webhook subscriptions. Part of ./event-types.ts (which
 * re-exports this file), kept apart for its size.
 */
import type { Envelope } from "./event-types.js";
import type { GateConfig } from "./gates.js";
import type { GateScopeKind, PromotionRecord } from "./promotion.js";

/** An external endpoint created or replaced (protocol/endpoints.ts; never a secret, only file paths). */
export interface EndpointSet extends Envelope {
  type: "endpoint.set";
  name: string;
  url: string;
  credentialsFile?: string;
  caFile?: string;
  insecure: boolean;
}
export interface EndpointDeleted extends Envelope {
  type: "endpoint.deleted";
  name: string;
}
/** A promotion gate configuration set or replaced for a scope (protocol/promotion.ts, protocol/gates.ts). */
export interface GateSet extends Envelope {
  type: "gate.set";
  scope: GateScopeKind;
  name: string;
  gates: GateConfig;
}
export interface GateDeleted extends Envelope {
  type: "gate.deleted";
  scope: GateScopeKind;
  name: string;
}
/** A promotion judged (and, when passed, carried out): protocol/promotion.ts PromotionRecord. */
export interface PromotionRecorded extends Envelope, PromotionRecord {
  type: "promotion.recorded";
}
/**
 * A project made (or re-made) a pull-through cache of an upstream registry
 * named by an external endpoint (protocol/proxy.ts), or turned back into an
 * ordinary project (`proxy.deleted`; what it cached stays).
 */
export interface ProxySet extends Envelope {
  type: "proxy.set";
  project: string;
  endpoint: string;
  upstreamPrefix?: string;
  freshnessSeconds: number;
}
export interface ProxyDeleted extends Envelope {
  type: "proxy.deleted";
  project: string;
}
/**
 * A webhook subscription (issue 17, item 5; protocol/webhook.ts), keyed by
 * project and name: `subscription` is the normalized WebhookSubscription
 * (its `secretFile` is a path on every worker's host, never the secret).
 */
export interface WebhookSet extends Envelope {
  type: "webhook.set";
  subscription: Record<string, unknown>;
}
export interface WebhookDeleted extends Envelope {
  type: "webhook.deleted";
  project: string;
  name: string;
}
/**
 * Deliver subscription `name` again from sequence `fromSeq` of `region`'s
 * stream (a request the worker of `region` carries out, with the same
 * CloudEvent ids; replication/webhooks-follow.ts).
 */
export interface WebhookReplay extends Envelope {
  type: "webhook.replay";
  project: string;
  name: string;
  region: string;
  fromSeq: number;
}
