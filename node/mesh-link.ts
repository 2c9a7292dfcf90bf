/**
 * A registry node's link to its own region's control-plane peer, the node's
 * only way to the rest of the mesh (DESIGN.md "Routing and failover"):
 *
 * - fetch on miss: `locate` and `fetchFromMesh` ask the peer for content this
 *   region lacks; the peer picks the nearest healthy region holding it;
 * - `sync(k)` durability: `waitReplicated` waits until k other regions hold
 *   a manifest;
 * - fencing: `fence()` is why this region must not write as a repository's
 *   home right now ("" when it may), polled from the peer's Status.
 *
 * The fence fails closed: until the peer has answered, and whenever it has
 * not answered for longer than `staleAfterMs`, the fence says so, because a
 * node that cannot ask cannot know whether its region was failed over or
 * cut off. Only writes to home-region repositories consult it.
 */
import type { Readable } from "node:stream";
import type { Logger } from "pino";
import { PeerClient, peerCredentials } from "../mesh-client/peer-client.js";
import type { Digest } from "../protocol/digest.js";
import type { StatusReply__Output } from "../protocol/generated/meridian/peer/v1/StatusReply.js";
import { type Mesh, regionOf } from "../protocol/mesh.js";
import { inStartupGrace, STARTUP_GRACE_MS } from "../protocol/startup-grace.js";

export interface MeshLinkOptions {
  region: string;
  mesh: Mesh;
  /** How often the peer's Status is polled for the fence. */
  pollMs: number;
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
  readonly #pollMs: number;
  readonly #logger: Logger;
  readonly #graceMs: number;
  #fence = "starting: the region's control-plane peer has not answered yet";
  #status: StatusReply__Output | undefined;
  #lastAnswer = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** When start() ran (protocol/startup-grace.ts), and whether the fence in force was logged at warn. */
  #startedAtMs = 0;
  #fenceWarned = false;

  constructor(options: MeshLinkOptions) {
    this.region = options.region;
    this.#pollMs = options.pollMs;
    this.#logger = options.logger;
    this.#graceMs = options.startupGraceMs ?? STARTUP_GRACE_MS;
    const own = regionOf(options.mesh, options.region);
    this.#client = new PeerClient(
      options.region,
      own.grpc,
      peerCredentials(options.mesh, options.region),
      options.region,
    );
  }

  start(): void {
    this.#startedAtMs = Date.now();
    const poll = async () => {
      try {
        const status = await this.#client.status(this.region);
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
      } catch (err) {
        // fence() reports a peer silent for too long itself.
        this.#logger.debug({ err }, "peer status failed");
        if (
          this.#lastAnswer === 0 &&
          !this.#fenceWarned &&
          !inStartupGrace(this.#startedAtMs, Date.now(), this.#graceMs)
        ) {
          this.#fenceWarned = true;
          this.#logger.warn({ err, fence: this.#fence }, "home writes still refused after start-up");
        }
      }
      if (!this.#stopped) this.#timer = setTimeout(() => void poll(), this.#pollMs);
    };
    void poll();
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

  #staleAfterMs(): number {
    return Math.max(4 * this.#pollMs, 2_000);
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
    clearTimeout(this.#timer);
    this.#client.close();
  }
}
