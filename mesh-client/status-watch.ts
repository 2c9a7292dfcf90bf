/**
 * One WatchStatus stream to the caller's own region's peer, kept open: the
 * node's write fence (node/mesh-link.ts) and the worker's view of the other
 * regions (replication/worker.ts) arrive by it instead of by polling Status
 * (issue 14, cost at rest; the server side is control-plane/status-feed.ts).
 *
 * The stream is reopened whenever it fails, ends (the peer shut down) or
 * falls silent for `SILENCE_KEEPALIVES` keepalives (a frozen peer, a
 * blackholed link: HTTP/2 keepalive would notice only after 8 s), after a
 * backoff from RETRY_FIRST_MS doubling to RETRY_MAX_MS, reset by the first
 * status a new stream brings. Deciding what silence means (the node fences
 * after 2 s without a status) is the caller's: `onStatus` is told of every
 * status, and the caller keeps the time of the last one.
 */
import type * as grpc from "@grpc/grpc-js";
import type { StatusReply__Output } from "../protocol/generated/meridian/peer/v1/StatusReply.js";
import type { PeerClient } from "./peer-client.js";

/** A stream silent for this many keepalives is cancelled and opened again. */
export const SILENCE_KEEPALIVES = 3;
export const RETRY_FIRST_MS = 250;
export const RETRY_MAX_MS = 2_000;

export interface StatusWatchOptions {
  client: Pick<PeerClient, "watchStatus">;
  /** The caller's region (WatchStatusRequest.from_region). */
  from: string;
  /** How often the peer is asked to re-send the status while nothing changes. */
  keepaliveMs: number;
  onStatus: (reply: StatusReply__Output) => void;
  /** A stream failed, ended or fell silent (it is reopened); for debug logging. */
  onError?: (err: Error) => void;
}

export class StatusWatch {
  readonly #o: StatusWatchOptions;
  #call: grpc.ClientReadableStream<StatusReply__Output> | undefined;
  #silence: NodeJS.Timeout | undefined;
  #retry: NodeJS.Timeout | undefined;
  #attempt = 0;
  #stopped = false;
  /** Streams opened so far (the first included): for tests of reconnection. */
  opened = 0;

  constructor(options: StatusWatchOptions) {
    this.#o = options;
  }

  start(): void {
    if (this.#call === undefined && this.#retry === undefined && !this.#stopped) this.#open();
  }

  close(): void {
    this.#stopped = true;
    clearTimeout(this.#silence);
    clearTimeout(this.#retry);
    const call = this.#call;
    this.#call = undefined;
    call?.cancel();
  }

  #open(): void {
    this.#retry = undefined;
    if (this.#stopped) return;
    const call = this.#o.client.watchStatus(this.#o.from, this.#o.keepaliveMs);
    this.opened++;
    this.#call = call;
    this.#armSilence(call);
    call.on("data", (reply: StatusReply__Output) => {
      if (call !== this.#call) return;
      this.#attempt = 0;
      this.#armSilence(call);
      this.#o.onStatus(reply);
    });
    call.on("error", (err) => this.#lost(call, err));
    call.on("end", () => this.#lost(call, new Error("the peer ended the status stream")));
  }

  #armSilence(call: grpc.ClientReadableStream<StatusReply__Output>): void {
    clearTimeout(this.#silence);
    const silentMs = SILENCE_KEEPALIVES * this.#o.keepaliveMs;
    this.#silence = setTimeout(() => {
      if (call !== this.#call) return;
      this.#lost(call, new Error(`no status from the peer for ${silentMs} ms`));
      call.cancel();
    }, silentMs);
  }

  /** `call` failed, ended or fell silent: unless it was already replaced, open another after the backoff. */
  #lost(call: grpc.ClientReadableStream<StatusReply__Output>, err: Error): void {
    if (call !== this.#call) return;
    this.#call = undefined;
    clearTimeout(this.#silence);
    if (this.#stopped) return;
    this.#o.onError?.(err);
    const delay = Math.min(RETRY_FIRST_MS * 2 ** this.#attempt, RETRY_MAX_MS);
    this.#attempt = Math.min(this.#attempt + 1, 10);
    this.#retry = setTimeout(() => this.#open(), delay);
  }
}
