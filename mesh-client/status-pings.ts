/**
 * Status as pings on one long-lived PingStatus stream (protocol/proto/
 * peer.proto): what a peer's heartbeats (control-plane/peer.ts) and the
 * front door's probes (control-plane/front-door-health.ts) ask every
 * interval. A unary Status is a new HTTP/2 stream with its headers, its
 * authorization, its deadline timer and grpc-js's per-call objects; a ping
 * is one small message each way on a stream opened once (issue 14, cost at
 * rest: 12 of a resting mesh's ~32 calls a second).
 *
 * `status()` keeps the contract of PeerClient.status: it resolves with the
 * reply that echoes its `sentAtMs`, or rejects with a domain error (protocol/
 * grpc-errors.ts) when the stream fails, when the peer ends it, when the
 * caller aborts, or when no reply comes within the deadline. A ping not
 * answered in time also cancels the stream: the next ping opens a fresh one,
 * as a fresh unary call would, so a link that went dead without closing (a
 * blackhole) is not waited on forever, and a healed one is used again.
 */
import * as grpc from "@grpc/grpc-js";
import { PeerUnavailableError } from "../protocol/errors.js";
import type { StatusReply__Output } from "../protocol/generated/meridian/peer/v1/StatusReply.js";
import type { StatusRequest } from "../protocol/generated/meridian/peer/v1/StatusRequest.js";
import { fromGrpcError } from "../protocol/grpc-errors.js";
import { DEADLINES } from "../protocol/peer.js";

type PingCall = grpc.ClientDuplexStream<StatusRequest, StatusReply__Output>;

interface Waiting {
  resolve: (reply: StatusReply__Output) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  done: () => void;
}

export class StatusPings {
  readonly #open: () => PingCall;
  #call: PingCall | undefined;
  /** Pings sent on #call and not answered yet, by their sentAtMs. */
  readonly #waiting = new Map<number, Waiting>();
  #lastSent = 0;
  #closed = false;

  /** `open` starts a PingStatus call (PeerClient's generated client). */
  constructor(open: () => PingCall) {
    this.#open = open;
  }

  /** The peer's status, as PeerClient.status answers it (same deadline by default). */
  status(
    from: string,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<StatusReply__Output> {
    return new Promise((resolve, reject) => {
      const { signal } = options;
      if (this.#closed) {
        reject(new PeerUnavailableError("status: the client is closed"));
        return;
      }
      if (signal?.aborted) {
        reject(new PeerUnavailableError("status: cancelled", { cause: signal.reason }));
        return;
      }
      // Unique per stream: the reply is matched by the sentAtMs it echoes.
      const sentAtMs = Math.max(Date.now(), this.#lastSent + 1);
      this.#lastSent = sentAtMs;
      const call = this.#stream();
      const onAbort = () => {
        this.#settle(sentAtMs)?.reject(
          new PeerUnavailableError("status: cancelled", { cause: signal?.reason }),
        );
      };
      const timer = setTimeout(() => {
        const waiting = this.#settle(sentAtMs);
        if (waiting === undefined) return;
        waiting.reject(
          fromGrpcError(
            Object.assign(new Error("Deadline exceeded"), { code: grpc.status.DEADLINE_EXCEEDED }),
            "status",
          ),
        );
        // This stream may be dead without knowing it: the next ping opens another.
        this.#drop(call, new PeerUnavailableError("status: an earlier ping on this stream timed out"));
      }, options.timeoutMs ?? DEADLINES.status);
      this.#waiting.set(sentAtMs, {
        resolve,
        reject,
        timer,
        done: () => signal?.removeEventListener("abort", onAbort),
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      call.write({ fromRegion: from, sentAtMs });
    });
  }

  close(): void {
    this.#closed = true;
    if (this.#call !== undefined)
      this.#drop(this.#call, new PeerUnavailableError("status: the client is closed"));
  }

  /** The open stream, or a new one. */
  #stream(): PingCall {
    if (this.#call !== undefined) return this.#call;
    const call = this.#open();
    this.#call = call;
    call.on("data", (reply: StatusReply__Output) => {
      if (call === this.#call) this.#settle(Number(reply.sentAtMs))?.resolve(reply);
    });
    call.on("error", (err) => this.#drop(call, fromGrpcError(err as grpc.ServiceError, "status")));
    call.on("end", () => this.#drop(call, new PeerUnavailableError("status: the peer ended the stream")));
    return call;
  }

  /** Forget a ping (answered, timed out or aborted); undefined if it already was. */
  #settle(sentAtMs: number): Waiting | undefined {
    const waiting = this.#waiting.get(sentAtMs);
    if (waiting === undefined) return undefined;
    this.#waiting.delete(sentAtMs);
    clearTimeout(waiting.timer);
    waiting.done();
    return waiting;
  }

  /** `call` is finished with: every ping still waiting on it fails with `err`. */
  #drop(call: PingCall, err: Error): void {
    if (call !== this.#call) return;
    this.#call = undefined;
    for (const sentAtMs of [...this.#waiting.keys()]) this.#settle(sentAtMs)?.reject(err);
    call.cancel();
  }
}
