/**
 * One NATS connection manager per process: every connection a Meridian
 * process makes (the event log's, the audit log's, the replication
 * worker's to each source region) is opened, kept and closed here, the same
 * way, with the process's one client configuration (nats-connect.ts:
 * credentials, inbox prefix, TLS and the liveness of NATS_LIVENESS).
 *
 * - `open` returns at once; the first dial is retried every `retryMs` until
 *   it succeeds or the connection (or the manager) is closed, so a process
 *   starts while its NATS is down and close() stops the attempts. After the
 *   first dial, outages are nats.js's own reconnects, forever, every
 *   `reconnectTimeWaitMs`; `onDisconnect` / `onReconnect` hear of them.
 * - `close` drains (else closes) the connection; the manager's `close`
 *   closes every connection still open.
 *
 * The manager keeps one connection per user (purpose), not one shared
 * socket: the worker's connections go to different servers (one per source
 * region) anyway, and on the region's own server the event log's tail and
 * appends, the audit flusher's batches and a consumer's pulls do not queue
 * behind one another, each keeps its own reconnect state (a stream checked
 * after its own reconnect), and the server lists each under its own name.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type NatsClientConfig, natsConnectOptions } from "./nats-connect.js";

export interface ConnectionSpec {
  servers: string[];
  /** Connection name shown by the server (process role, link). */
  name: string;
  /** Wait between reconnect attempts once connected, ms (default 250). */
  reconnectTimeWaitMs?: number;
  /** Wait between first-dial attempts, ms (default reconnectTimeWaitMs). */
  retryMs?: number;
  /** Told of each failed first dial (attempt counts from 1). */
  onDialFailed?: (err: unknown, attempt: number) => void;
  onDisconnect?: () => void;
  onReconnect?: () => void;
}

/** One connection the manager keeps. */
export class ManagedConnection {
  readonly #manager: NatsConnectionManager;
  #nc: NatsConnection | undefined;
  #closed = false;
  /** Resolves with the connection once the first dial succeeded; undefined when closed before that. */
  readonly connected: Promise<NatsConnection | undefined>;

  constructor(manager: NatsConnectionManager, config: NatsClientConfig | undefined, spec: ConnectionSpec) {
    this.#manager = manager;
    this.connected = this.#dial(config, spec);
  }

  /** The connection, once made (and until closed). */
  get current(): NatsConnection | undefined {
    return this.#nc;
  }

  get closed(): boolean {
    return this.#closed;
  }

  async #dial(
    config: NatsClientConfig | undefined,
    spec: ConnectionSpec,
  ): Promise<NatsConnection | undefined> {
    const reconnectTimeWait = spec.reconnectTimeWaitMs ?? 250;
    let attempt = 0;
    let nc: NatsConnection | undefined;
    while (nc === undefined) {
      if (this.#closed) return undefined;
      try {
        nc = await connect({
          ...natsConnectOptions(config),
          servers: spec.servers,
          name: spec.name,
          maxReconnectAttempts: -1,
          reconnectTimeWait,
        });
      } catch (err) {
        spec.onDialFailed?.(err, ++attempt);
        await sleep(spec.retryMs ?? reconnectTimeWait);
      }
    }
    if (this.#closed) {
      await nc.close();
      return undefined;
    }
    this.#nc = nc;
    if (spec.onDisconnect !== undefined || spec.onReconnect !== undefined)
      void (async () => {
        for await (const s of nc.status()) {
          if (s.type === "disconnect") spec.onDisconnect?.();
          else if (s.type === "reconnect") spec.onReconnect?.();
        }
      })();
    return nc;
  }

  /** Drain (else close) the connection; a dial still under way stops. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#manager.forget(this);
    const nc = this.#nc;
    await nc?.drain().catch(() => nc.close());
  }
}

export class NatsConnectionManager {
  readonly #config: NatsClientConfig | undefined;
  readonly #open = new Set<ManagedConnection>();

  /** `config`: the process's client configuration (nats-connect.ts); none: anonymous, default liveness. */
  constructor(config: NatsClientConfig | undefined) {
    this.#config = config;
  }

  /** The process's client configuration (what each connection signs in with). */
  get config(): NatsClientConfig | undefined {
    return this.#config;
  }

  /** Start a connection (see the header); returns at once. */
  open(spec: ConnectionSpec): ManagedConnection {
    const c = new ManagedConnection(this, this.#config, spec);
    this.#open.add(c);
    return c;
  }

  /** @internal Called by a connection that closed. */
  forget(c: ManagedConnection): void {
    this.#open.delete(c);
  }

  /** Close every connection still open. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#open].map((c) => c.close()));
  }
}
