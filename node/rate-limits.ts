/**
 * Pull and push rate limits (issue 18, item 4), shared by a region's nodes.
 *
 * Keys: a user or robot by name (`id:<name>`), and the client's address
 * (`ip:<address>`, node/http/forwarded.ts's `clientAddress`). An anonymous
 * request is limited by its address under the per-identity rate; every
 * request is also limited by its address under the per-address rate when
 * one is set. Reads (`pull`: GET/HEAD of manifests, blobs, tags, referrers,
 * `/v2/`, the catalog) and writes (`push`: uploads, manifest puts, deletes)
 * have separate buckets. Services (the front door, peers, workers: service
 * tokens) are never limited; the front door forwards its clients'
 * addresses, so clients behind it are limited one by one.
 *
 * Sharing (not per process): each node keeps the buckets (protocol/rate-
 * limit.ts) and, every `shareIntervalMs`, publishes on core NATS subject
 * `meridian-limits.<region>` what it let through since its last message
 * (`{node, pull: [[key, n]…], push: […]}`); every node drains what the others
 * took from its own buckets. The region's limit therefore holds within one
 * interval's slack per node, without a round trip on the request path. A
 * node cut off from NATS keeps limiting on its own (its share is then
 * per node until the link returns); a message is bounded (MAX_KEYS_PER_MESSAGE
 * keys, the rest next time) and so is the bucket table (MAX_BUCKETS, least
 * recently used first).
 */
import { randomUUID } from "node:crypto";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { LRUCache } from "lru-cache";
import type { Logger } from "pino";
import { Counter, type Registry as MetricsRegistry } from "prom-client";
import { type Bucket, drain, type Rate, take } from "../protocol/rate-limit.js";
import type { RateLimitSettings } from "./config.js";
import type { ManagedConnection, NatsConnectionManager } from "./data/nats-connection.js";

export type LimitKind = "pull" | "push";

export const MAX_BUCKETS = 100_000;
export const MAX_KEYS_PER_MESSAGE = 2_000;

export const limitsSubject = (region: string) => `meridian-limits.${region}`;

interface Share {
  node: string;
  pull: Array<[string, number]>;
  push: Array<[string, number]>;
}

export interface RateLimiterOptions {
  settings: RateLimitSettings;
  region: string;
  metrics: MetricsRegistry;
  logger: Logger;
  /** The region's NATS (absent: limits are this node's alone); a connection is opened only with a limit set. */
  nats?: { connections: NatsConnectionManager; servers: string[] };
}

export class RateLimiter {
  readonly #o: RateLimiterOptions;
  readonly #node = randomUUID();
  readonly #rates: Record<LimitKind, { identity?: Rate; address?: Rate }>;
  readonly #buckets = new LRUCache<string, Bucket>({ max: MAX_BUCKETS });
  readonly #taken: Record<LimitKind, Map<string, number>> = { pull: new Map(), push: new Map() };
  readonly #refused: Counter<"kind" | "by">;
  readonly #shared: Counter<"direction">;
  #timer: NodeJS.Timeout | undefined;
  #sub: Subscription | undefined;
  #connection: ManagedConnection | undefined;

  constructor(o: RateLimiterOptions) {
    this.#o = o;
    const s = o.settings;
    const rate = (perSecond: number, burst: number) => (perSecond > 0 ? { perSecond, burst } : undefined);
    this.#rates = {
      pull: {
        identity: rate(s.pullsPerSecond, s.pullBurst),
        address: rate(s.addressPullsPerSecond, s.pullBurst),
      },
      push: {
        identity: rate(s.pushesPerSecond, s.pushBurst),
        address: rate(s.addressPushesPerSecond, s.pushBurst),
      },
    };
    this.#refused = new Counter({
      name: "meridian_rate_limited_requests_total",
      help: "requests refused 429 by the pull and push rate limits, by kind and by what was over its limit",
      labelNames: ["kind", "by"] as const,
      registers: [o.metrics],
    });
    this.#shared = new Counter({
      name: "meridian_rate_limit_shares_total",
      help: "rate-limit shares between the region's nodes (sent by this node, received from others)",
      labelNames: ["direction"] as const,
      registers: [o.metrics],
    });
  }

  /** Whether any limit is set (no limit: `check` is never needed). */
  get enabled(): boolean {
    const r = this.#rates;
    return [r.pull.identity, r.pull.address, r.push.identity, r.push.address].some((x) => x !== undefined);
  }

  /**
   * One request of `kind` by `identity` (undefined: anonymous) from `address`:
   * undefined when it may go on, else the seconds to wait (Retry-After).
   * Takes from every bucket it passes; a refused request takes nothing.
   */
  check(
    kind: LimitKind,
    identity: string | undefined,
    address: string,
    now = Date.now(),
  ): number | undefined {
    const rates = this.#rates[kind];
    const keys: Array<[string, Rate, "identity" | "address"]> = [];
    if (rates.identity !== undefined)
      keys.push([identity === undefined ? `ip:${address}` : `id:${identity}`, rates.identity, "identity"]);
    if (rates.address !== undefined) keys.push([`ip+:${address}`, rates.address, "address"]);
    const taken: Array<[string, Bucket]> = [];
    for (const [key, rate, by] of keys) {
      const bucketKey = `${kind}|${key}`;
      const t = take(this.#buckets.get(bucketKey), now, rate);
      if (!t.ok) {
        this.#buckets.set(bucketKey, t.bucket);
        this.#refused.inc({ kind, by });
        return t.retryAfterSeconds;
      }
      taken.push([bucketKey, t.bucket]);
    }
    for (const [bucketKey, bucket] of taken) {
      this.#buckets.set(bucketKey, bucket);
      const pending = this.#taken[kind];
      pending.set(bucketKey, (pending.get(bucketKey) ?? 0) + 1);
    }
    return undefined;
  }

  /**
   * Start sharing with the region's other nodes (no-op without NATS or a
   * limit). Returns once subscribed, or at once while NATS is unreachable
   * (the connection keeps dialling; the node limits alone until then).
   */
  start(): void {
    const nats = this.#o.nats;
    if (nats === undefined || !this.enabled) return;
    this.#connection = nats.connections.open({
      servers: nats.servers,
      name: `meridian-limits-${this.#o.region}-${process.pid}`,
    });
    void this.#connection.connected.then((nc) => {
      if (nc !== undefined) this.#share(nc);
    });
  }

  #share(nc: NatsConnection): void {
    this.#sub = nc.subscribe(limitsSubject(this.#o.region), {
      callback: (err, msg) => {
        if (err !== null) return;
        this.#receive(msg.data);
      },
    });
    this.#timer = setInterval(() => this.#send(nc), this.#o.settings.shareIntervalMs);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#sub?.unsubscribe();
    this.#sub = undefined;
    await this.#connection?.close();
  }

  #send(nc: NatsConnection): void {
    const share: Share = { node: this.#node, pull: [], push: [] };
    let room = MAX_KEYS_PER_MESSAGE;
    for (const kind of ["pull", "push"] as const) {
      const pending = this.#taken[kind];
      for (const [key, n] of pending) {
        if (room-- <= 0) break;
        share[kind].push([key, n]);
        pending.delete(key);
      }
    }
    if (share.pull.length === 0 && share.push.length === 0) return;
    try {
      nc.publish(limitsSubject(this.#o.region), JSON.stringify(share));
      this.#shared.inc({ direction: "sent" });
    } catch (err) {
      // Disconnected: this node's share is lost to the others (they see less traffic, never more).
      this.#o.logger.debug({ err }, "rate-limit share not sent");
    }
  }

  #receive(data: Uint8Array): void {
    let share: Share;
    try {
      share = JSON.parse(new TextDecoder().decode(data)) as Share;
    } catch {
      return;
    }
    if (share.node === this.#node || typeof share.node !== "string") return;
    this.#shared.inc({ direction: "received" });
    const now = Date.now();
    for (const kind of ["pull", "push"] as const) {
      const entries = Array.isArray(share[kind]) ? share[kind].slice(0, MAX_KEYS_PER_MESSAGE) : [];
      for (const entry of entries) {
        if (!Array.isArray(entry) || typeof entry[0] !== "string" || typeof entry[1] !== "number") continue;
        const [key, n] = entry;
        const rate = this.#rateOf(key);
        if (rate === undefined || !(n > 0)) continue;
        this.#buckets.set(key, drain(this.#buckets.get(key), now, rate, n));
      }
    }
  }

  /** The rate a bucket key (`kind|scope:value`) is under; undefined for a key no limit covers. */
  #rateOf(bucketKey: string): Rate | undefined {
    const bar = bucketKey.indexOf("|");
    const kind = bucketKey.slice(0, bar) as LimitKind;
    const rates = this.#rates[kind];
    if (rates === undefined) return undefined;
    const key = bucketKey.slice(bar + 1);
    if (key.startsWith("ip+:")) return rates.address;
    if (key.startsWith("id:") || key.startsWith("ip:")) return rates.identity;
    return undefined;
  }
}
