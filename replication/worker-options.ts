/** What a replication worker is given (worker.ts). */
import type { Logger } from "pino";
import type { Registry as MetricsRegistry } from "prom-client";
import type { PeerClient } from "../mesh-client/peer-client.js";
import type { BlobStore } from "../node/data/blob-store.js";
import type { EventLog } from "../node/data/event-log.js";
import type { NatsConnectionManager } from "../node/data/nats-connection.js";
import type { MetadataView } from "../node/data/view.js";
import type { Mesh } from "../protocol/mesh.js";
import type { ClosureLimits } from "./copy.js";
import type { BreakerLimits } from "./plan.js";

export interface WorkerOptions {
  /** The destination region (this worker's). */
  region: string;
  mesh: Mesh;
  store: BlobStore;
  /** The local region's log. */
  log: EventLog;
  /**
   * The process's NATS connection manager (node/data/nats-connection.ts):
   * the worker's connection to every other region's server is opened with
   * it, signed in with the worker's one credential, which every region's
   * server knows (cli/nats-auth.ts).
   */
  connections: NatsConnectionManager;
  /** Peer clients of the other regions, by region name. */
  peers: Map<string, PeerClient>;
  /**
   * This region's own peer: its Status (pushed on a WatchStatus stream) says how the control plane sees the
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
  /**
   * This worker's own view of the local region's log, kept up to date by the
   * caller: policies, tag registers (conflicts, the breaker's counts), and
   * `policy.run` requests come from it.
   */
  view: MetadataView;
  /** Delete breaker limits (default: more than half of a repository's tags, 4 tags or more). */
  breaker?: BreakerLimits;
  /** Window over which a stream's deletions add up for the breaker, ms (default 10 minutes). */
  breakerWindowMs?: number;
  /** Full anti-entropy from every source, ms (default 10 minutes; 0 = only at start and on demand). */
  antiEntropyIntervalMs?: number;
  /** Bounds of a manifest's closure (default replication/copy.ts DEFAULT_CLOSURE_LIMITS). */
  closureLimits?: Partial<ClosureLimits>;
  /**
   * How long an event's content may take to copy, retries included, before
   * the event is recorded as failed and the stream moves on (default
   * DEFAULT_EVENT_DEADLINE_MS).
   */
  eventDeadlineMs?: number;
  /** Refusals by sources this long after start() are start-up (default STARTUP_GRACE_MS, protocol/startup-grace.ts). */
  startupGraceMs?: number;
  /** Largest manifest an import accepts into this region (default 4 MiB, the node's default). */
  maxManifestBytes?: number;
  /** Longest wait between retries of a failing endpoint link, ms (default 60 s). */
  endpointRetryMaxMs?: number;
}

/** Default `eventDeadlineMs`: 15 minutes (a multi-GiB layer over a slow link fits; a stuck event does not block for longer). */
export const DEFAULT_EVENT_DEADLINE_MS = 15 * 60_000;
