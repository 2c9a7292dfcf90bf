/**
 * A TCP proxy on loopback to put between two peers in a test and then break the
 * link on purpose, without touching the kernel (no iptables, no tc).
 *
 *   client ──► 127.0.0.1:proxy.port ──► target
 *
 * Faults:
 * - `partition()`: every open connection is reset at once (both sides), and new
 *   connections are accepted and reset immediately, so callers fail fast, until
 *   `heal()`.
 * - `blackhole()`: connections stay open (new ones are accepted too) but no byte
 *   passes in either direction, like a link that drops every packet: callers only
 *   notice through their own deadlines. Bytes sent meanwhile are held (up to a
 *   bound, then the sender is stalled by TCP flow control) and delivered in order
 *   after `heal()`, as TCP retransmission would; new connections reach the target
 *   only after `heal()`.
 * - `setDelay(ms)`: every chunk is forwarded `ms` later, in both directions, in
 *   order.
 *
 * Bytes pass unchanged. Backpressure is kept: a source is paused while the
 * destination's write buffer is full or too much is held for a delay/blackhole.
 * Half-closes are forwarded (a FIN from one side becomes `end()` on the other,
 * after the bytes before it). Test code only: product code never imports this.
 */
import net, { type Socket } from "node:net";
import { performance } from "node:perf_hooks";

export interface TcpProxyOptions {
  /** Where accepted connections are forwarded. */
  target: { host: string; port: number };
  /** Port to listen on; 0 (default) picks any free port. */
  listenPort?: number;
  /** Listen address; loopback only. */
  host?: "127.0.0.1";
}

export interface TcpProxyStats {
  /** Connections currently open through the proxy (held ones included). */
  connections: number;
  /** Connections taken in to be forwarded since start (refused ones excluded). */
  accepted: number;
  /** Bytes forwarded from clients to the target. */
  bytesUp: number;
  /** Bytes forwarded from the target to clients. */
  bytesDown: number;
  /** Connections reset on arrival because the proxy was partitioned. */
  refused: number;
}

/** What the proxy currently does to traffic; shared by the proxy and its flows. */
interface Conditions {
  mode: "open" | "partitioned" | "blackholed";
  /** Latency added to each chunk, in ms. */
  delayMs: number;
}

/** What a connection needs from its proxy. */
interface LinkOwner {
  readonly conditions: Conditions;
  count(direction: "up" | "down", bytes: number): void;
  forget(link: Link): void;
}

/** Bytes held per direction (delay or blackhole) before the source is paused. */
const HOLD_LIMIT = 1024 * 1024;

/**
 * Resets a socket (RST) while both directions are open, otherwise just destroys
 * it: on Node 20, resetAndDestroy() on a socket that has already seen or sent a
 * FIN leaves its handle closing forever and the event loop spinning.
 */
function cut(socket: Socket | undefined): void {
  if (!socket || socket.destroyed) return;
  if (socket.connecting || socket.readableEnded || socket.writableEnded || !socket.readable) {
    socket.destroy();
    return;
  }
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/** One direction of a connection: reads `src`, holds chunks until due, writes `dst`. */
class Flow {
  private readonly queue: Array<{ chunk: Buffer; due: number }> = [];
  private held = 0;
  private timer: NodeJS.Timeout | undefined;
  private waitingDrain = false;
  private srcEnded = false;
  private stopped = false;
  private dst: Socket | undefined;

  constructor(
    private readonly src: Socket,
    private readonly conditions: Conditions,
    private readonly count: (bytes: number) => void,
  ) {
    src.on("data", (chunk: Buffer) => {
      this.queue.push({ chunk, due: performance.now() + this.conditions.delayMs });
      this.held += chunk.length;
      this.pump();
    });
    src.on("end", () => {
      this.srcEnded = true;
      this.pump();
    });
  }

  /** Sets the destination (later than the source for connections held by a blackhole). */
  attach(dst: Socket): void {
    this.dst = dst;
    this.pump();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.held = 0;
  }

  /** Writes every due chunk unless blackholed, the destination is full, or there is none yet. */
  pump(): void {
    if (this.stopped) return;
    const dst = this.dst;
    if (dst && !dst.destroyed && !this.waitingDrain && this.conditions.mode === "open") {
      while (this.queue.length > 0) {
        const head = this.queue[0]!;
        const wait = head.due - performance.now();
        if (wait > 0) {
          this.timer ??= setTimeout(() => {
            this.timer = undefined;
            this.pump();
          }, Math.ceil(wait));
          break;
        }
        this.queue.shift();
        this.held -= head.chunk.length;
        this.count(head.chunk.length);
        if (!dst.write(head.chunk)) {
          this.waitingDrain = true;
          dst.once("drain", () => {
            this.waitingDrain = false;
            this.pump();
          });
          break;
        }
      }
      if (this.queue.length === 0 && this.srcEnded && !dst.writableEnded) dst.end();
    }
    this.regulate();
  }

  private regulate(): void {
    if (this.src.destroyed || this.srcEnded) return;
    if (this.waitingDrain || this.held >= HOLD_LIMIT) this.src.pause();
    else if (this.src.isPaused()) this.src.resume();
  }
}

/** A client connection and, once the proxy lets it through, its connection to the target. */
class Link {
  upstream: Socket | undefined;
  private readonly up: Flow;
  private down: Flow | undefined;
  private clientClosed = false;
  private upstreamClosed = false;

  constructor(
    private readonly owner: LinkOwner,
    readonly client: Socket,
  ) {
    client.on("error", () => {});
    client.on("close", (hadError) => {
      this.clientClosed = true;
      if (hadError) cut(this.upstream);
      this.settle();
    });
    this.up = new Flow(client, owner.conditions, (n) => owner.count("up", n));
  }

  get started(): boolean {
    return this.upstream !== undefined;
  }

  /** Connects to the target and starts forwarding. */
  start(target: { host: string; port: number }): void {
    if (this.upstream || this.client.destroyed) return;
    const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    this.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.on("error", () => {});
    upstream.on("close", (hadError) => {
      this.upstreamClosed = true;
      if (hadError) cut(this.client);
      this.settle();
    });
    this.down = new Flow(upstream, this.owner.conditions, (n) => this.owner.count("down", n));
    this.down.attach(this.client);
    this.up.attach(upstream);
  }

  /** Lets held bytes through (after a blackhole or a delay change). */
  pump(): void {
    this.up.pump();
    this.down?.pump();
  }

  /** Resets both sides now. */
  cut(): void {
    this.up.stop();
    this.down?.stop();
    cut(this.client);
    cut(this.upstream);
    this.owner.forget(this);
  }

  private settle(): void {
    if (this.clientClosed && (!this.upstream || this.upstreamClosed)) {
      this.up.stop();
      this.down?.stop();
      this.owner.forget(this);
    }
  }
}

export class TcpProxy {
  private readonly conditions: Conditions = { mode: "open", delayMs: 0 };
  private readonly links = new Set<Link>();
  private readonly counters = { accepted: 0, bytesUp: 0, bytesDown: 0, refused: 0 };
  private readonly owner: LinkOwner;
  private listenPort = 0;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly server: net.Server,
    private readonly target: { host: string; port: number },
  ) {
    this.owner = {
      conditions: this.conditions,
      count: (direction, bytes) => {
        if (direction === "up") this.counters.bytesUp += bytes;
        else this.counters.bytesDown += bytes;
      },
      forget: (link) => this.links.delete(link),
    };
    server.on("connection", (socket) => this.accept(socket));
  }

  /** Starts listening on 127.0.0.1; rejects if the port cannot be bound. */
  static async start(options: TcpProxyOptions): Promise<TcpProxy> {
    const host = options.host ?? "127.0.0.1";
    if (host !== "127.0.0.1") throw new Error(`TcpProxy binds 127.0.0.1 only, not ${String(host)}`);
    const server = net.createServer({ allowHalfOpen: true });
    const proxy = new TcpProxy(server, { host: options.target.host, port: options.target.port });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host, port: options.listenPort ?? 0 }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", () => {});
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("TcpProxy: no TCP address");
    proxy.listenPort = address.port;
    return proxy;
  }

  /** The port the proxy listens on. */
  get port(): number {
    return this.listenPort;
  }

  /** "127.0.0.1:PORT", to hand to the peer that should go through the proxy. */
  get address(): string {
    return `127.0.0.1:${this.listenPort}`;
  }

  /** Resets every open connection and resets new ones on arrival, until `heal()`. */
  partition(): void {
    this.conditions.mode = "partitioned";
    for (const link of [...this.links]) link.cut();
  }

  /** Keeps connections open but lets no byte through in either direction, until `heal()`. */
  blackhole(): void {
    this.conditions.mode = "blackholed";
  }

  /** Ends a partition or blackhole: new connections pass, held bytes are delivered. */
  heal(): void {
    this.conditions.mode = "open";
    for (const link of [...this.links]) {
      if (link.started) link.pump();
      else link.start(this.target);
    }
  }

  /** Adds `ms` of latency to every chunk read from now on, both directions; 0 removes it. */
  setDelay(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`TcpProxy.setDelay: bad delay ${ms}`);
    this.conditions.delayMs = ms;
  }

  stats(): TcpProxyStats {
    return { connections: this.links.size, ...this.counters };
  }

  /** Stops listening and resets every connection; resolves when the listener is closed. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const link of [...this.links]) link.cut();
    });
    return this.closing;
  }

  private accept(socket: Socket): void {
    if (this.closing || this.conditions.mode === "partitioned") {
      if (!this.closing) this.counters.refused++;
      socket.on("error", () => {});
      cut(socket);
      return;
    }
    this.counters.accepted++;
    socket.setNoDelay(true);
    const link = new Link(this.owner, socket);
    this.links.add(link);
    // While blackholed, the client's bytes wait in its flow until heal() starts the link.
    if (this.conditions.mode === "open") link.start(this.target);
  }
}
