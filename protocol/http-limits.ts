/**
 * How long an HTTP client may keep a connection without making progress, and
 * how many connections one client address may hold: the limits the registry
 * node (node/server.ts) and the front door (control-plane/front-door.ts)
 * share, so that slow or greedy clients cannot exhaust a process's sockets
 * and file descriptors (issue 10, finding 5).
 *
 * - `idleTimeoutMs`: a connection on which no byte moves in either
 *   direction for this long is destroyed. It cuts a request body that stops
 *   progressing (slowloris), a client that stops reading a response, and a
 *   connection that never finishes its headers, without a total deadline:
 *   a 10 GiB upload that keeps moving is never cut. A server-side wait that
 *   sends nothing (a `sync(k)` push waiting for other regions) must stay
 *   shorter than it (node/config.ts checks `syncTimeoutMs`).
 * - `headersTimeoutMs`: the request line and headers must arrive within this
 *   (checked every `headersTimeoutMs / 2`, at least every second).
 * - `keepAliveTimeoutMs`: an idle keep-alive connection is closed after this.
 * - `maxConnectionsPerClient`: open connections per source address (the
 *   socket's, never a header's: a client cannot claim to be someone else).
 *   One more is answered `429 TOOMANYREQUESTS` (plain HTTP; a TLS listener
 *   just closes it, before any handshake work) and closed. Addresses in
 *   `exempt` (addresses or CIDRs: the front door and load balancers in
 *   front of a node, whose connections carry many clients) are not counted.
 *
 * `ConnectionCounter` is the decision; `limitConnections` wires it to a
 * server's `connection` event (it only attaches listeners, and is the one
 * piece of IO here).
 */
import { BlockList, isIPv4, isIPv6, type Server, type Socket } from "node:net";
import { Setting } from "./config-schema.js";

export interface HttpLimits {
  idleTimeoutMs: number;
  headersTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxConnectionsPerClient: number;
  /** Addresses or CIDRs whose connections are not capped. */
  exempt: readonly string[];
}

/** An address or CIDR as `exempt` takes it; undefined when it is neither. */
export function parseAddressOrCidr(
  text: string,
): { address: string; prefix: number; family: "ipv4" | "ipv6" } | undefined {
  const [address, bits, extra] = text.trim().split("/");
  if (address === undefined || extra !== undefined) return undefined;
  const family = isIPv4(address) ? "ipv4" : isIPv6(address) ? "ipv6" : undefined;
  if (family === undefined) return undefined;
  const max = family === "ipv4" ? 32 : 128;
  if (bits === undefined) return { address, prefix: max, family };
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return undefined;
  return { address, prefix: Number(bits), family };
}

/**
 * The `http.*` settings as a node's and the front door's schemas include them
 * (protocol/config-schema.ts); the two differ in their defaults only.
 */
export function httpLimitSettings(defaults: { keepAliveTimeoutMs: number; exempt: string[] }) {
  const { integer, list } = Setting;
  return {
    idleTimeoutMs: integer({
      env: "MERIDIAN_HTTP_IDLE_TIMEOUT_MS",
      default: 60_000,
      minimum: 100,
      doc: "a connection on which no byte moves this long is cut (no total deadline: a big upload that keeps moving is never cut); must exceed the nodes' `syncTimeoutMs`",
    }),
    headersTimeoutMs: integer({
      env: "MERIDIAN_HTTP_HEADERS_TIMEOUT_MS",
      default: 20_000,
      minimum: 100,
      doc: "the request line and headers must arrive within this",
    }),
    keepAliveTimeoutMs: integer({
      env: "MERIDIAN_HTTP_KEEP_ALIVE_TIMEOUT_MS",
      default: defaults.keepAliveTimeoutMs,
      minimum: 100,
      doc: "an idle keep-alive connection is closed after this",
    }),
    maxConnectionsPerClient: integer({
      env: "MERIDIAN_HTTP_MAX_CONNECTIONS_PER_CLIENT",
      default: 256,
      minimum: 1,
      doc: "open connections per source address (the socket's); one more is 429 and closed",
    }),
    exempt: list({
      env: "MERIDIAN_HTTP_CONNECTION_LIMIT_EXEMPT",
      default: defaults.exempt,
      doc: "addresses or CIDRs not capped: the front door and load balancers",
    }),
  };
}

/** Problems with a set of limits (empty when valid), each naming the setting under `prefix`. */
export function httpLimitsProblems(limits: HttpLimits, prefix: string): string[] {
  const problems: string[] = [];
  for (const [name, min] of [
    ["idleTimeoutMs", 100],
    ["headersTimeoutMs", 100],
    ["keepAliveTimeoutMs", 100],
    ["maxConnectionsPerClient", 1],
  ] as const) {
    const v = limits[name];
    if (!(Number.isInteger(v) && v >= min)) problems.push(`${prefix}.${name}: an integer of at least ${min}`);
  }
  for (const e of limits.exempt)
    if (parseAddressOrCidr(e) === undefined)
      problems.push(`${prefix}.exempt: "${e}" is not an address or CIDR`);
  return problems;
}

/** Open connections per source address, against one cap. */
export class ConnectionCounter {
  readonly #max: number;
  readonly #exempt = new BlockList();
  readonly #open = new Map<string, number>();

  constructor(limits: Pick<HttpLimits, "maxConnectionsPerClient" | "exempt">) {
    this.#max = limits.maxConnectionsPerClient;
    for (const e of limits.exempt) {
      const p = parseAddressOrCidr(e);
      if (p !== undefined) this.#exempt.addSubnet(p.address, p.prefix, p.family);
    }
  }

  /**
   * Count a new connection from `address`: false (and not counted) when the
   * address already holds the maximum. Exempt and unknown addresses are
   * always admitted and never counted.
   */
  admit(address: string | undefined): boolean {
    if (address === undefined || this.#isExempt(address)) return true;
    const n = this.#open.get(address) ?? 0;
    if (n >= this.#max) return false;
    this.#open.set(address, n + 1);
    return true;
  }

  /** A connection `admit` counted has closed. */
  release(address: string): void {
    const n = this.#open.get(address);
    if (n === undefined) return;
    if (n <= 1) this.#open.delete(address);
    else this.#open.set(address, n - 1);
  }

  /** Connections counted for `address` now. */
  openFrom(address: string): number {
    return this.#open.get(address) ?? 0;
  }

  #isExempt(address: string): boolean {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped !== null) return this.#exempt.check(mapped[1]!, "ipv4");
    return this.#exempt.check(address, isIPv4(address) ? "ipv4" : "ipv6");
  }
}

const REFUSAL_BODY = JSON.stringify({
  errors: [{ code: "TOOMANYREQUESTS", message: "too many connections from this address", detail: null }],
});
const REFUSAL =
  "HTTP/1.1 429 Too Many Requests\r\n" +
  "Content-Type: application/json\r\n" +
  `Content-Length: ${Buffer.byteLength(REFUSAL_BODY)}\r\n` +
  "Retry-After: 1\r\n" +
  "Connection: close\r\n\r\n" +
  REFUSAL_BODY;

/**
 * Cap `server`'s connections per source address (see the header). `tls`:
 * the server speaks TLS, so a refused connection is closed without an HTTP
 * answer. `onRefused` is told of refusals at most every 10 s, with how many
 * there were since (a flood of refusals must not become a flood of log lines).
 */
export function limitConnections(
  server: Server,
  counter: ConnectionCounter,
  tls: boolean,
  onRefused?: (address: string | undefined, refused: number) => void,
): void {
  let refused = 0;
  let reportedAt = 0;
  // The server's own listeners (HTTP parsing, or the TLS handshake) see only admitted sockets.
  const inner = server.listeners("connection") as Array<(socket: Socket) => void>;
  server.removeAllListeners("connection");
  server.on("connection", (socket: Socket) => {
    const address = socket.remoteAddress;
    if (!counter.admit(address)) {
      refused++;
      const now = Date.now();
      if (onRefused !== undefined && now - reportedAt >= 10_000) {
        onRefused(address, refused);
        refused = 0;
        reportedAt = now;
      }
      socket.on("error", () => undefined);
      if (tls) socket.destroy();
      else {
        socket.end(REFUSAL);
        // A client that never reads the refusal does not keep the socket either.
        setTimeout(() => socket.destroy(), 1_000).unref();
      }
      return;
    }
    if (address !== undefined) socket.once("close", () => counter.release(address));
    for (const listener of inner) listener.call(server, socket);
  });
}

/**
 * The node's `http.Server` options for these limits: no total request
 * deadline (`requestTimeout: 0`: a big upload that keeps moving is never
 * cut), the headers deadline checked often enough to hold, the idle timer
 * applied per socket with `server.setTimeout(idleTimeoutMs)`.
 */
export function serverTimeouts(limits: HttpLimits): {
  requestTimeout: number;
  headersTimeout: number;
  keepAliveTimeout: number;
  connectionsCheckingInterval: number;
} {
  return {
    requestTimeout: 0,
    headersTimeout: limits.headersTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 2))),
  };
}
