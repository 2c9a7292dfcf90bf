/**
 * The replication worker of one region (the destination): a durable consumer
 * on every other region's stream, copying what each event needs by digest and
 * then appending the event to the local log.
 *
 * Per source region, events are handled strictly in order, one at a time; an
 * event that cannot be completed yet (a peer is unreachable) is retried with
 * backoff and blocks that source only, so a later tag never overtakes the
 * manifest it points to. An event is acknowledged at the source only after
 * its replica is durably in the local log. Only events that originated in the
 * source region are taken from it (each region's own stream carries its own
 * writes; the others' arrive from their own streams).
 *
 * A replicated event keeps its origin's id, origin, clock and time, and gets
 * `cause` = the origin id and `srcSeq` = its sequence in the origin's stream
 * (what the peer's Status reports per source): the id is the JetStream message id (a redelivery is
 * de-duplicated by the local stream) and the view's de-duplication key.
 * Before a `manifest.pushed` (and a `tag.set`) is appended, the manifest's
 * whole closure — bytes, blobs, child manifests — is present locally, so a tag
 * is never visible in a region before everything it points to can be pulled.
 */
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { connect, type NatsConnection, nanos } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { Counter, Gauge, Histogram, type Registry as MetricsRegistry } from "prom-client";
import type { BlobStore } from "../node/data/blob-store.js";
import type { EventLog } from "../node/data/event-log.js";
import { decodeEvent, type RegistryEvent, streamName } from "../protocol/events.js";
import type { Mesh, RegionEndpoints } from "../protocol/mesh.js";
import { nearestFirst, type RegionHealth } from "../protocol/routing.js";
import { Copier } from "./copy.js";
import type { PeerClient } from "./peer-client.js";

export interface WorkerOptions {
  /** The destination region (this worker's). */
  region: string;
  mesh: Mesh;
  store: BlobStore;
  /** The local region's log. */
  log: EventLog;
  /** Peer clients of the other regions, by region name. */
  peers: Map<string, PeerClient>;
  /**
   * This region's own peer: its Status says how the control plane sees the
   * other regions (up, RTT), which orders the regions a copy is tried from.
   */
  localPeer?: PeerClient;
  /** Where copy state (resumable partial copies) is kept. */
  stateDir: string;
  logger: Logger;
  metrics: MetricsRegistry;
  /** Retry backoff bounds, ms. */
  retryMinMs?: number;
  retryMaxMs?: number;
}

/** Backoff before attempt `n` (0-based): doubling from `min`, capped at `max`. Pure. */
export function backoffMs(n: number, min: number, max: number): number {
  return Math.min(max, min * 2 ** Math.min(n, 30));
}

/** How long the source waits for an ack before redelivering (a crashed worker's event). */
const ACK_WAIT_MS = 10_000;

export function durableName(destination: string): string {
  return `replicate-to-${destination}`;
}

export class ReplicationWorker {
  readonly #o: WorkerOptions;
  readonly #copier: Copier;
  readonly #abort = new AbortController();
  readonly #runs: Promise<void>[] = [];
  readonly #connections: NatsConnection[] = [];
  readonly #lag: Histogram<"src" | "dst">;
  readonly #pending: Gauge<"src" | "dst">;
  readonly #bytes: Counter<"src" | "dst">;
  readonly #events: Counter<"src" | "dst" | "outcome">;
  /** Last source sequence replicated, per source (for status). */
  readonly applied = new Map<string, number>();
  /** The control plane's latest view of the other regions. */
  #health: RegionHealth[] = [];
  #healthTimer: NodeJS.Timeout | undefined;

  constructor(options: WorkerOptions) {
    this.#o = options;
    const registers = [options.metrics];
    this.#lag = new Histogram({
      name: "meridian_replication_lag_seconds",
      help: "Time from an event's commit at its origin to its replica's commit here",
      labelNames: ["src", "dst"],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.#pending = new Gauge({
      name: "meridian_replication_pending_events",
      help: "Events of the source region not yet replicated here",
      labelNames: ["src", "dst"],
      registers,
    });
    this.#bytes = new Counter({
      name: "meridian_replication_bytes_total",
      help: "Blob bytes copied from the source region",
      labelNames: ["src", "dst"],
      registers,
    });
    this.#events = new Counter({
      name: "meridian_replication_events_total",
      help: "Source events handled, by outcome (replicated, skipped)",
      labelNames: ["src", "dst", "outcome"],
      registers,
    });
    this.#copier = new Copier({
      store: options.store,
      stateDir: options.stateDir,
      logger: options.logger.child({ component: "copy" }),
      onBytes: (src, n) => this.#bytes.inc({ src, dst: options.region }, n),
    });
  }

  start(): void {
    const local = this.#o.localPeer;
    if (local !== undefined) {
      const refresh = () =>
        local.status(this.#o.region).then(
          (reply) => {
            this.#health = reply.peers.map((p) => ({ region: p.region, up: p.up, rttMs: p.rttMs }));
          },
          () => undefined, // keep the last view; the order falls back to names
        );
      void refresh();
      this.#healthTimer = setInterval(refresh, 1_000);
    }
    for (const source of this.#o.mesh.regions) {
      if (source.name === this.#o.region) continue;
      this.#runs.push(this.#runSource(source));
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.#healthTimer);
    this.#abort.abort();
    await Promise.allSettled(this.#runs);
    await Promise.allSettled(this.#connections.map((nc) => nc.close()));
  }

  /**
   * Peers to copy from, nearest healthy first (protocol/routing.ts) by the
   * control plane's heartbeats; each is asked whether it has the content
   * before a copy starts, and the source region always has it.
   */
  #peersFor(): PeerClient[] {
    const order = nearestFirst([...this.#o.peers.keys()], this.#health);
    return order.map((r) => this.#o.peers.get(r)!);
  }

  async #runSource(source: RegionEndpoints): Promise<void> {
    const signal = this.#abort.signal;
    const log = this.#o.logger.child({ src: source.name });
    const nc = await connect({
      servers: [source.nats],
      name: `meridian-worker-${this.#o.region}<-${source.name}`,
      waitOnFirstConnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      pingInterval: 2_000,
      maxPingOut: 2,
    });
    this.#connections.push(nc);
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const pendingTimer = setInterval(() => void this.#reportPending(jsm, source.name), 2_000);
    try {
      while (!signal.aborted) {
        try {
          await this.#consume(js, jsm, source, log);
        } catch (err) {
          if (!signal.aborted) log.warn({ err }, "source consumer interrupted");
        }
        if (!signal.aborted) await sleep(500, signal);
      }
    } finally {
      clearInterval(pendingTimer);
    }
  }

  async #consume(
    js: JetStreamClient,
    jsm: JetStreamManager,
    source: RegionEndpoints,
    log: Logger,
  ): Promise<void> {
    const stream = streamName(source.name);
    const durable = durableName(this.#o.region);
    const config = {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      // Short, so a crashed worker's in-flight event is redelivered soon; a
      // long copy keeps its event alive with working() (see #handle).
      ack_wait: nanos(ACK_WAIT_MS),
      max_ack_pending: 256,
    };
    try {
      await jsm.consumers.add(stream, config);
    } catch (err) {
      // The durable exists with older settings: bring them up to date.
      const info = await jsm.consumers.info(stream, durable).catch(() => undefined);
      if (info === undefined) throw err;
      await jsm.consumers.update(stream, durable, {
        ack_wait: config.ack_wait,
        max_ack_pending: config.max_ack_pending,
      });
    }
    const consumer = await js.consumers.get(stream, durable);
    const messages = await consumer.consume({ max_messages: 64 });
    const stop = () => messages.stop();
    this.#abort.signal.addEventListener("abort", stop, { once: true });
    try {
      for await (const m of messages) {
        await this.#handle(source.name, m, log);
        if (this.#abort.signal.aborted) break;
      }
    } finally {
      this.#abort.signal.removeEventListener("abort", stop);
      messages.stop();
    }
  }

  async #handle(source: string, m: JsMsg, log: Logger): Promise<void> {
    let event: RegistryEvent;
    try {
      event = decodeEvent(m.data);
    } catch (err) {
      log.error({ err, seq: m.seq }, "source event invalid; skipped");
      m.term();
      return;
    }
    const labels = { src: source, dst: this.#o.region };
    if (event.origin !== source) {
      this.#events.inc({ ...labels, outcome: "skipped" });
      m.ack();
      return;
    }
    const min = this.#o.retryMinMs ?? 250;
    const max = this.#o.retryMaxMs ?? 5_000;
    const keepAlive = setInterval(() => m.working(), ACK_WAIT_MS / 3);
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          await this.#replicate(event, m.seq);
          break;
        } catch (err) {
          if (this.#abort.signal.aborted) return; // not acked: redelivered after restart
          log.warn({ err, eventId: event.id, seq: m.seq, attempt }, "replication attempt failed");
          await sleep(backoffMs(attempt, min, max), this.#abort.signal);
          if (this.#abort.signal.aborted) return;
        }
      }
    } finally {
      clearInterval(keepAlive);
    }
    m.ack();
    this.applied.set(source, m.seq);
    this.#events.inc({ ...labels, outcome: "replicated" });
    this.#lag.observe(labels, Math.max(0, (Date.now() - Date.parse(event.at)) / 1000));
  }

  /** Make the event's content present here, then append its replica to the local log. */
  async #replicate(event: RegistryEvent, srcSeq: number): Promise<void> {
    const peers = this.#peersFor();
    const signal = this.#abort.signal;
    switch (event.type) {
      case "blob.pushed":
        await this.#copier.ensureBlob(event.digest, peers, signal);
        break;
      case "manifest.pushed":
      case "tag.set":
        await this.#copier.ensureManifest(event.digest, peers, signal);
        break;
      default:
        break; // deletions carry no content
    }
    await this.#o.log.append({ ...event, cause: event.id, srcSeq });
  }

  async #reportPending(jsm: JetStreamManager, source: string): Promise<void> {
    try {
      const info = await jsm.consumers.info(streamName(source), durableName(this.#o.region));
      this.#pending.set({ src: source, dst: this.#o.region }, info.num_pending + info.num_ack_pending);
    } catch {
      // unreachable source: the gauge keeps its last value
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
