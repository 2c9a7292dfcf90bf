/**
 * A registry node's link to its own region's control-plane peer, the node's
 * only way to the rest of the mesh (DESIGN.md "Routing and failover"):
 *
 * - fetch on miss: `locate` and `fetchFromMesh` ask the peer for content this
 *   region lacks; the peer picks the nearest healthy region holding it;
 * - `sync(k)` durability: `waitReplicated` waits until k other regions hold
 *   a manifest;
 * - fencing: `fence()` is why this region must not write as a repository's
 *   home right now ("" when it may), as the peer pushes it on a WatchStatus
 *   stream (mesh-client/status-watch.ts): at once when it changes, and
 *   every keepalive otherwise.
 *
 * The fence fails closed: until the peer has answered, and whenever no
 * status has come for longer than `staleAfterMs` (a frozen or gone peer
 * sends no keepalive), the fence says so, because a
 * node that cannot ask cannot know whether its region was failed over or
 * cut off. Only writes to home-region repositories consult it.
 */
import type { Readable } from "node:stream";
import type { Logger } from "pino";
import { PeerClient, peerCredentials } from "../mesh-client/peer-client.js";
import { StatusWatch } from "../mesh-client/status-watch.js";
import type { Digest } from "../protocol/digest.js";
import type { StatusReply__Output } from "../protocol/generated/meridian/peer/v1/StatusReply.js";
import { type Mesh, regionOf } from "../protocol/mesh.js";
import { inStartupGrace, STARTUP_GRACE_MS } from "../protocol/startup-grace.js";

export interface MeshLinkOptions {
  region: string;
  mesh: Mesh;
  /**
   * How often the peer re-sends its status on the stream while nothing
   * changes (its keepalive); the fence closes after two keepalives (at least
   * 2 s) without one.
   */
  keepaliveMs: number;
  logger: Logger;
  /** Refusals this long after start() are start-up (default STARTUP_GRACE_MS, protocol/startup-grace.ts). */
  startupGraceMs?: number;
}

export interface PeerView {
  leaseMs: number;
  peers: Array<{ region: string; up: boolean; lastSeenAtMs: number }>;
}

export class MeshLink {
  readonly region: string;
  readonly #client: PeerClient;
  readonly #keepaliveMs: number;
  readonly #watch: StatusWatch;
  readonly #logger: Logger;
  readonly #graceMs: number;
  #fence = "starting: the region's control-plane peer has not answered yet";
  #status: StatusReply__Output | undefined;
  #lastAnswer = 0;
  #graceTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** When start() ran (protocol/startup-grace.ts), and whether the fence in force was logged at warn. */
  #startedAtMs = 0;
  #fenceWarned = false;

  constructor(options: MeshLinkOptions) {
    this.region = options.region;
    this.#keepaliveMs = options.keepaliveMs;
    this.#logger = options.logger;
    this.#graceMs = options.startupGraceMs ?? STARTUP_GRACE_MS;
    const own = regionOf(options.mesh, options.region);
    this.#client = new PeerClient(
      options.region,
      own.grpc,
      peerCredentials(options.mesh, options.region),
      options.region,
    );
    this.#watch = new StatusWatch({
      client: this.#client,
      from: options.region,
      keepaliveMs: this.#keepaliveMs,
      onStatus: (status) => this.#onStatus(status),
      // fence() reports a peer silent for too long itself.
      onError: (err) => this.#logger.debug({ err }, "peer status stream lost; reopening"),
    });
  }

  start(): void {
    this.#startedAtMs = Date.now();
    this.#watch.start();
    // Nothing arriving is news too: the start-up grace ends without the peer having answered.
    this.#graceTimer = setTimeout(() => this.#warnIfNeverAnswered(), this.#graceMs + 1);
    this.#graceTimer.unref();
  }

  #onStatus(status: StatusReply__Output): void {
    this.#lastAnswer = Date.now();
    // Refused while the mesh starts ("no other region has answered yet") is start-up:
    // info; a fence set after the start-up grace, or still there when it ends, is warn.
    const starting = inStartupGrace(this.#startedAtMs, this.#lastAnswer, this.#graceMs);
    if (status.fence !== this.#fence) {
      this.#fenceWarned = !starting;
      if (status.fence === "") this.#logger.info("home writes accepted again");
      else if (starting) this.#logger.info({ fence: status.fence }, "home writes refused while starting");
      else this.#logger.warn({ fence: status.fence }, "home writes refused");
    } else if (status.fence !== "" && !starting && !this.#fenceWarned) {
      this.#fenceWarned = true;
      this.#logger.warn({ fence: status.fence }, "home writes still refused after start-up");
    }
    this.#fence = status.fence;
    this.#status = status;
  }

  #warnIfNeverAnswered(): void {
    if (this.#stopped || this.#lastAnswer > 0 || this.#fenceWarned) return;
    this.#fenceWarned = true;
    this.#logger.warn({ fence: this.#fence }, "home writes still refused after start-up");
  }

  /** Why writes as a repository's home region are refused now; "" when they are not. */
  fence(): string {
    if (this.#lastAnswer > 0 && Date.now() - this.#lastAnswer > this.#staleAfterMs())
      return `the region's control-plane peer has not answered for ${Date.now() - this.#lastAnswer} ms`;
    return this.#fence;
  }

  /**
   * How the region's peer last saw the mesh: each other region's health and
   * when it last answered, and this region's lease. Undefined until the peer
   * has answered once.
   */
  peerView(): PeerView | undefined {
    const s = this.#status;
    if (s === undefined) return undefined;
    return {
      leaseMs: Number(s.leaseMs),
      peers: s.peers.map((p) => ({ region: p.region, up: p.up, lastSeenAtMs: Number(p.lastSeenAtMs) })),
    };
  }

  /** No status for this long (two keepalives, at least 2 s) and the fence says so. */
  #staleAfterMs(): number {
    return Math.max(2 * this.#keepaliveMs, 2_000);
  }

  locate(repo: string, reference: string, manifest: boolean) {
    return this.#client.locate(repo, reference, manifest);
  }

  fetchFromMesh(repo: string, digest: Digest, signal?: AbortSignal): Readable {
    return this.#client.fetchFromMesh(repo, digest, 0, signal);
  }

  waitReplicated(repo: string, digest: Digest, copies: number, timeoutMs: number) {
    return this.#client.waitReplicated(repo, digest, copies, timeoutMs);
  }

  close(): void {
    this.#stopped = true;
    clearTimeout(this.#graceTimer);
    this.#watch.close();
    this.#client.close();
  }
}
