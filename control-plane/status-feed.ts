/**
 * WatchStatus and PingStatus (protocol/proto/peer.proto), the long-lived
 * forms of Status.
 *
 * WatchStatus: the peer's Status pushed to its
 * own region's nodes and worker over one long-lived stream each, instead of
 * their polling Status (a node every 250 ms, the worker every second: 15
 * unary calls a second in a resting three-region mesh, each a new HTTP/2
 * stream, its headers, its authorization and its garbage; issue 14, cost at
 * rest).
 *
 * What a watcher is sent:
 * - one status as soon as it opens the stream;
 * - one as soon as the write fence changes (`fenceKind`). The fence (control-plane/fence.ts)
 *   depends on the heartbeats' answers, the view's failover epoch and the
 *   clock (the lease lapsing), so the peer calls `changed()` on every
 *   heartbeat update and on every `repository.configured` its view applies,
 *   and `changed()` sets a timer for the moment the lease would lapse
 *   (`fenceLapsesAt`) if no other region answers before;
 * - one as soon as another region goes up or down (`peersChanged`, from the
 *   heartbeats' verdicts), so the worker's source order need not wait for a
 *   keepalive;
 * - one every keepalive (the watcher's `keepalive_ms`, within
 *   [MIN_KEEPALIVE_MS, MAX_KEEPALIVE_MS]) whatever changed: the watcher's
 *   proof that the peer is alive (a frozen peer sends nothing, and the
 *   watcher's staleness rule fences on that), and the carrier of what is not
 *   pushed on change (applied positions, round trips).
 *
 * A watcher that does not read (its buffer full) is sent nothing until it
 * drains, then the status of that moment: a stalled watcher never makes the
 * peer buffer more than one status.
 *
 * PingStatus (`pings`): every request on the stream answered by the status
 * of that moment, for the other peers' heartbeats and the front door's
 * probes (mesh-client/status-pings.ts is the caller's side).
 *
 * `close()` ends every stream of both kinds (a peer shutting down), so
 * callers hear it at once instead of waiting for their silence to show.
 */
import type * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { StatusReply } from "../protocol/generated/meridian/peer/v1/StatusReply.js";
import type { StatusRequest__Output } from "../protocol/generated/meridian/peer/v1/StatusRequest.js";
import type { WatchStatusRequest__Output } from "../protocol/generated/meridian/peer/v1/WatchStatusRequest.js";

export const DEFAULT_KEEPALIVE_MS = 1_000;
export const MIN_KEEPALIVE_MS = 100;
export const MAX_KEEPALIVE_MS = 60_000;

export type WatchCall = grpc.ServerWritableStream<WatchStatusRequest__Output, StatusReply>;
export type PingCall = grpc.ServerDuplexStream<StatusRequest__Output, StatusReply>;

export interface StatusFeedOptions {
  /** The status as Status would answer it now (sentAtMs is set by the feed). */
  status: () => Promise<StatusReply>;
  /** The write fence now ("" when home writes are allowed). */
  fence: () => string;
  /**
   * Wall-clock ms at which the fence would change if nothing else happened
   * (the lease lapsing), or undefined when no such moment is known.
   */
  fenceLapsesAt: () => number | undefined;
  logger?: Logger;
}

interface Watcher {
  call: WatchCall;
  timer: NodeJS.Timeout;
  /** The last write returned false: nothing more until 'drain'. */
  blocked: boolean;
}

/** Keepalive asked for → the one served: 0 means the default; the rest is kept within the bounds. */
export function keepaliveOf(requested: number): number {
  if (!Number.isFinite(requested) || requested <= 0) return DEFAULT_KEEPALIVE_MS;
  return Math.min(MAX_KEEPALIVE_MS, Math.max(MIN_KEEPALIVE_MS, Math.floor(requested)));
}

/**
 * A fence without its figures: "cut off from every other region for 4.2 s"
 * reads differently every tenth of a second while it holds, and is pushed
 * once, not on every heartbeat (the keepalives carry the running figure).
 * Open (""), the other reasons, and a reason changing all still differ.
 */
export function fenceKind(fence: string): string {
  return fence.replace(/\d+(\.\d+)?/g, "#");
}

export class StatusFeed {
  readonly #o: StatusFeedOptions;
  readonly #watchers = new Set<Watcher>();
  readonly #pingCalls = new Set<PingCall>();
  /** The kind of fence last sent to watchers (fenceKind; undefined before the first check). */
  #fence: string | undefined;
  #lapseTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: StatusFeedOptions) {
    this.#o = options;
  }

  /** How many streams are open (for tests and /healthz-style introspection). */
  get watchers(): number {
    return this.#watchers.size;
  }

  /** Serve one WatchStatus call until the caller cancels or the feed closes. */
  watch(call: WatchCall): void {
    if (this.#closed) {
      call.end();
      return;
    }
    const keepaliveMs = keepaliveOf(call.request.keepaliveMs);
    const watcher: Watcher = {
      call,
      blocked: false,
      timer: setInterval(() => void this.#send(watcher), keepaliveMs),
    };
    this.#watchers.add(watcher);
    const drop = () => this.#drop(watcher);
    call.once("cancelled", drop);
    call.once("error", drop);
    call.once("close", drop);
    call.on("drain", () => {
      watcher.blocked = false;
      void this.#send(watcher);
    });
    this.#fence ??= fenceKind(this.#o.fence());
    void this.#send(watcher);
  }

  /**
   * Serve one PingStatus call: every ping is answered with the status of
   * that moment, echoing its sentAtMs (what Status answers). A status that
   * cannot be had fails the call UNAVAILABLE: the caller counts a miss at
   * once, as it did when a Status call failed, and opens a new stream.
   */
  pings(call: PingCall): void {
    if (this.#closed) {
      call.end();
      return;
    }
    this.#pingCalls.add(call);
    let inFlight = 0;
    let ended = false;
    const done = () => this.#pingCalls.delete(call);
    const open = () => this.#pingCalls.has(call) && !call.cancelled && !call.writableEnded;
    call.once("cancelled", done);
    call.once("close", done);
    call.on("error", done);
    call.on("data", (request: StatusRequest__Output) => {
      inFlight++;
      this.#o.status().then(
        (reply) => {
          inFlight--;
          if (!open()) return;
          call.write({ ...reply, sentAtMs: request.sentAtMs });
          if (ended && inFlight === 0) call.end();
        },
        (err) => {
          inFlight--;
          this.#o.logger?.debug({ err }, "status for a ping failed");
          if (!open()) return;
          done();
          call.emit("error", { code: 14 as grpc.status, details: "status unavailable now" }); // UNAVAILABLE
        },
      );
    });
    // The caller ended its side: end ours once every ping is answered.
    call.on("end", () => {
      ended = true;
      if (inFlight === 0 && open()) call.end();
    });
  }

  /**
   * Something the fence depends on may have changed: re-check it, push the
   * status to every watcher if it did, and re-arm the lease-lapse timer.
   */
  changed(): void {
    if (this.#closed) return;
    const fence = fenceKind(this.#o.fence());
    if (fence !== this.#fence) {
      this.#fence = fence;
      for (const w of this.#watchers) void this.#send(w);
    }
    clearTimeout(this.#lapseTimer);
    this.#lapseTimer = undefined;
    const at = this.#o.fenceLapsesAt();
    if (at !== undefined) {
      // +1: the lease counts as lapsed only once strictly more than leaseMs have passed.
      const delay = Math.max(0, at - Date.now() + 1);
      this.#lapseTimer = setTimeout(() => this.changed(), delay);
      this.#lapseTimer.unref();
    }
  }

  /** Another region went up or down (the heartbeats' verdict): every watcher hears it now. */
  peersChanged(): void {
    if (this.#closed) return;
    for (const w of this.#watchers) void this.#send(w);
  }

  /**
   * End every stream, watches and pings, and refuse new ones (the peer is
   * shutting down): callers hear it at once, and the server's graceful
   * shutdown does not wait on streams that never end by themselves.
   */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#lapseTimer);
    for (const w of [...this.#watchers]) {
      this.#drop(w);
      w.call.end();
    }
    for (const call of [...this.#pingCalls]) {
      this.#pingCalls.delete(call);
      if (!call.cancelled && !call.writableEnded) call.end();
    }
  }

  #drop(watcher: Watcher): void {
    clearInterval(watcher.timer);
    this.#watchers.delete(watcher);
  }

  async #send(watcher: Watcher): Promise<void> {
    if (watcher.blocked || !this.#watchers.has(watcher)) return;
    let reply: StatusReply;
    try {
      reply = await this.#o.status();
    } catch (err) {
      // The next keepalive tries again; the watcher's staleness rule covers a peer that cannot answer.
      this.#o.logger?.debug({ err }, "status for a watcher failed");
      return;
    }
    if (watcher.blocked || !this.#watchers.has(watcher) || watcher.call.cancelled) return;
    if (!watcher.call.write({ ...reply, sentAtMs: Date.now() })) watcher.blocked = true;
  }
}
