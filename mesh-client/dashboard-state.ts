/**
 * The dashboard's state (`GET /ui/api/state`, each `/ui/api/events`
 * message): what the page at /ui/ draws, the same shape whether the front
 * door serves it (the whole mesh) or a registry node does (its own region).
 * Both serve it through ./dashboard-http.ts; each brings a `DashboardSource`
 * (control-plane/front-door-ui.ts, node/http/ui-routes.ts).
 *
 * Colours (`Level`), the thresholds documented once here and sent with
 * every state so the page shows them:
 * - a link (source → destination) is "ok" while the worse of its recent lag
 *   p99 and its oldest pending event's age is under LAG_OK_MS (5 s), "warn"
 *   under LAG_WARN_MS (60 s), "bad" above, and "bad" too when its figures
 *   cannot be read (the destination's worker has not answered
 *   FAILED_READS_TO_BAD reads in a row) or either end is down; "idle" when nothing was replicated in the window and nothing
 *   is pending (a quiet link is healthy, but has no lag to show);
 * - a region is "ok" while up and accepting writes, "warn" while up but
 *   refusing writes as a home (its fence), "bad" while down.
 *
 * Throughput is bytes per second over the last THROUGHPUT_WINDOW_MS of
 * `meridian_replication_bytes_total` samples (successive collections); a
 * counter that went down (the worker restarted) starts the window again.
 *
 * Secrets: nothing here carries a credential, a token or a key; region
 * errors are the probes' messages (addresses and gRPC statuses).
 */
import { fetchMetricsText, type LinkStatus, linkStatus, parseProm } from "./mesh-status.js";

/** A link's lag (p99 or oldest pending) under this is green. */
export const LAG_OK_MS = 5_000;
/** Under this amber; at or above it red. */
export const LAG_WARN_MS = 60_000;
/**
 * A worker page unread this many times in a row (each read under the feed's
 * deadline, one a second) turns its links red; before that the last good
 * figures are judged, marked stale: one slow read on a loaded machine is no
 * outage. A destination the front door's probes find down is red at once.
 */
export const FAILED_READS_TO_BAD = 3;
/** Throughput is averaged over this much of the samples. */
export const THROUGHPUT_WINDOW_MS = 5_000;

export type Level = "ok" | "warn" | "bad" | "idle" | "unknown";

export interface DashboardState {
  /** "mesh": the front door's view of every region; "region": one node's view of its own region. */
  scope: "mesh" | "region";
  /** Who collected it: "front door", "node of region a". */
  servedBy: string;
  at: string;
  thresholds: { okMs: number; warnMs: number };
  /** The front door's heartbeat interval (its probes' cadence), when it serves. */
  heartbeatMs?: number;
  regions: RegionHealth[];
  /** Destination rows × source columns, one cell per link shown. */
  links: LinkCell[];
  /** Repositories (scopes) with a home region, and that home at its current epoch. */
  homes: Array<{ scope: string; home: string; epoch: number }>;
}

export interface RegionHealth {
  region: string;
  level: Level;
  /** Undefined: not known to this server (a node's view of another region is its peer's). */
  up: boolean | undefined;
  /** Whose verdict `up` is: "front door probes", "peer of a", "node". */
  seenBy: string;
  rttMs?: number;
  misses?: number;
  lastSeenAt?: string;
  lastError?: string;
  epoch?: number;
  /** Why writes as a home are refused; "" when they are accepted; absent: not known. */
  fence?: string;
  appliedSeq?: number;
  /** How this region's peer sees the others. */
  peers: Array<{ region: string; up: boolean; rttMs?: number }>;
}

export interface LinkCell extends LinkStatus {
  src: string;
  dst: string;
  level: Level;
  /** Why the level: "p99 12 s", "worker metrics unreadable", "destination down". */
  why: string;
  bytesPerSecond?: number;
  /** The figures are the last good ones: this collection could not read them. */
  stale?: boolean;
}

/** A link's colour from its figures (see the header). Pure. */
export function linkLevel(
  link: LinkStatus,
  reachable: { figures: boolean; src: boolean | undefined; dst: boolean | undefined },
): { level: Level; why: string } {
  if (reachable.dst === false) return { level: "bad", why: "destination down" };
  if (!reachable.figures) return { level: "bad", why: "the destination's worker metrics are unreadable" };
  const p99 = link.lagP99Ms;
  const oldest = link.oldestPendingMs ?? 0;
  const worst = Math.max(p99 ?? 0, oldest);
  const what = oldest > (p99 ?? 0) ? `oldest pending ${seconds(oldest)}` : `p99 ${seconds(worst)}`;
  if (worst >= LAG_WARN_MS) return { level: "bad", why: what };
  if (reachable.src === false) return { level: "bad", why: "source down" };
  if (worst >= LAG_OK_MS) return { level: "warn", why: what };
  if (p99 === undefined && (link.pending ?? 0) === 0)
    return { level: "idle", why: "nothing replicated lately" };
  return { level: "ok", why: what };
}

/** A region's colour from its health (see the header). Pure. */
export function regionLevel(up: boolean | undefined, fence: string | undefined): Level {
  if (up === undefined) return "unknown";
  if (!up) return "bad";
  return fence !== undefined && fence !== "" ? "warn" : "ok";
}

/**
 * Bytes per second of one counter from successive samples, over the last
 * THROUGHPUT_WINDOW_MS; undefined until two samples span some time.
 */
export class Throughput {
  readonly #samples = new Map<string, Array<{ at: number; bytes: number }>>();

  observe(key: string, bytes: number | undefined, at: number): number | undefined {
    if (bytes === undefined) return undefined;
    let list = this.#samples.get(key) ?? [];
    const last = list[list.length - 1];
    if (last !== undefined && bytes < last.bytes) list = []; // a restarted worker's counter
    list.push({ at, bytes });
    while (list.length > 2 && at - list[1]!.at >= THROUGHPUT_WINDOW_MS) list.shift();
    this.#samples.set(key, list);
    const first = list[0]!;
    if (at - first.at <= 0) return undefined;
    return Math.round(((bytes - first.bytes) * 1000) / (at - first.at));
  }
}

/**
 * Inbound links of some regions, from each one's worker metrics page, each
 * page under `deadlineMs`; the last good figures kept (marked stale) when a
 * page cannot be read.
 */
export class LinkReader {
  readonly #last = new Map<string, { links: Record<string, LinkStatus>; rates: Record<string, number> }>();
  /** Consecutive failed reads of each destination's page. */
  readonly #failed = new Map<string, number>();
  readonly #throughput = new Throughput();

  constructor(
    /** Destination regions with their worker's metrics base URL (none: not readable). */
    private readonly destinations: ReadonlyArray<{ region: string; worker: string | undefined }>,
    /** Every region of the mesh (the sources). */
    private readonly regions: readonly string[],
  ) {}

  async refresh(deadlineMs: number): Promise<void> {
    await Promise.all(
      this.destinations.map(async ({ region, worker }) => {
        const text =
          worker === undefined ? undefined : await fetchMetricsText(`${worker}/metrics`, deadlineMs);
        if (text === undefined) {
          this.#failed.set(region, (this.#failed.get(region) ?? 0) + 1);
          return;
        }
        this.#failed.delete(region);
        const samples = parseProm(text);
        const at = Date.now();
        const links: Record<string, LinkStatus> = {};
        const rates: Record<string, number> = {};
        for (const src of this.regions.filter((r) => r !== region)) {
          links[src] = linkStatus(samples, src, region);
          const rate = this.#throughput.observe(`${src}>${region}`, links[src].bytes, at);
          if (rate !== undefined) rates[src] = rate;
        }
        this.#last.set(region, { links, rates });
      }),
    );
  }

  /** The link cells, colour-coded with what is known of each region's health. */
  cells(up: (region: string) => boolean | undefined): LinkCell[] {
    const out: LinkCell[] = [];
    for (const { region: dst, worker } of this.destinations) {
      const last = this.#last.get(dst);
      const failures = this.#failed.get(dst) ?? 0;
      const stale = failures > 0;
      for (const src of this.regions.filter((r) => r !== dst)) {
        const link = last?.links[src] ?? {};
        // mesh.json names no metrics page for the worker: nothing to judge the link by, not a fault.
        const { level, why } =
          worker === undefined
            ? {
                level: "unknown" as const,
                why: "mesh.json names no metrics endpoint for this region's worker",
              }
            : linkLevel(link, {
                figures: last !== undefined && failures < FAILED_READS_TO_BAD,
                src: up(src),
                dst: up(dst),
              });
        const cell: LinkCell = { ...link, src, dst, level, why };
        const rate = last?.rates[src];
        if (rate !== undefined && !stale) cell.bytesPerSecond = rate;
        if (stale && last !== undefined) cell.stale = true;
        out.push(cell);
      }
    }
    return out;
  }
}

/** What a server brings to the dashboard: its IO, and the state from what it knows. */
export interface DashboardSource {
  /** Read what takes IO (metrics pages, Status calls), every call bounded by `deadlineMs`. */
  refresh(deadlineMs: number): Promise<void>;
  /** The state from what is known now (no IO). */
  snapshot(): DashboardState;
}

const seconds = (ms: number) => (ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`);
