/**
 * One webhook or SIEM POST to a receiver, with the address it connects to
 * pinned (issue 17, item 5; DNS rebinding). The receiver's name is resolved
 * ONCE per attempt; every address it resolves to is checked
 * (protocol/webhook.ts `receiverAddressAllowed`: link-local and cloud
 * metadata, unspecified and multicast never, loopback only when allowed);
 * then the connection is made to those checked addresses by a `lookup`
 * that answers them whatever it is asked (all of them when asked for all:
 * Node tries each in turn, so `localhost` answering ::1 then 127.0.0.1
 * reaches a receiver on either; otherwise the first). A name that resolves to
 * an allowed address for the check and to a refused one a moment later
 * cannot reach the refused one: there is no second resolution. TLS still
 * verifies the certificate against the URL's host name (SNI and the check
 * use the name, only the socket's address is pinned).
 *
 * No redirects are followed (a 3xx is a failed attempt, as any non-2xx).
 * Connections are kept alive by Node's global agent, pooled by host and
 * port: a pooled connection goes to an address checked when it was opened,
 * and every attempt checks the name's addresses again before any request.
 * The whole attempt, connection, request and the answer's headers, is
 * bounded by `timeoutMs`; the answer's body is read and dropped (bounded
 * by the same timeout).
 */
import { lookup as dnsLookup } from "node:dns/promises";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP, type LookupFunction } from "node:net";
import { receiverAddressAllowed } from "../protocol/webhook.js";

/** Every address `host` resolves to (the system's resolver by default; tests inject their own). */
export type Resolver = (host: string) => Promise<string[]>;

export const systemResolver: Resolver = async (host) =>
  (await dnsLookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** Thrown when a receiver's address is refused; no connection was made. */
export class ReceiverRefusedError extends Error {
  override readonly name = "ReceiverRefusedError";
}

/**
 * Resolve `host` once and check every address; the addresses to connect to.
 * Throws ReceiverRefusedError when one is refused (or none came back).
 */
export async function checkedAddresses(
  host: string,
  allowLoopback: boolean,
  resolve: Resolver,
): Promise<string[]> {
  const bare = host.replace(/^\[|\]$/g, "");
  const addresses = isIP(bare) !== 0 ? [bare] : await resolve(bare);
  if (addresses.length === 0)
    throw new ReceiverRefusedError(`receiver ${bare.slice(0, 64)} resolves to nothing`);
  for (const address of addresses)
    if (isIP(address) === 0 || !receiverAddressAllowed(address, allowLoopback))
      throw new ReceiverRefusedError(`receiver address ${address.slice(0, 64)} refused`);
  return addresses;
}

/** A `lookup` for http.request that answers `addresses` for any name: the connection goes where the check said. */
export function pinnedLookup(addresses: readonly string[]): LookupFunction {
  const list = addresses.map((address) => ({ address, family: isIP(address) }));
  return ((_host: string, options: unknown, callback: (...args: unknown[]) => void) => {
    const cb = typeof options === "function" ? (options as typeof callback) : callback;
    const all =
      typeof options === "object" && options !== null && (options as { all?: boolean }).all === true;
    const first = list[0] as { address: string; family: number };
    if (all) cb(null, list);
    else cb(null, first.address, first.family);
  }) as LookupFunction;
}

export interface PostOptions {
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
  /** Ends the attempt (the delivery stopping). */
  signal: AbortSignal;
  allowLoopback: boolean;
  resolve?: Resolver;
}

/** POST `body` to `url` through the pinned address; resolves with the HTTP status. */
export async function postPinned(url: string, options: PostOptions): Promise<number> {
  const target = new URL(url);
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = AbortSignal.any([options.signal, timeout]);
  const addresses = await checkedAddresses(
    target.hostname,
    options.allowLoopback,
    options.resolve ?? systemResolver,
  );
  const request = target.protocol === "https:" ? httpsRequest : httpRequest;
  const body = Buffer.from(options.body);
  return await new Promise<number>((resolve, reject) => {
    const fail = (err: unknown) => {
      if (timeout.aborted) {
        const e = new Error("timed out");
        e.name = "TimeoutError";
        reject(e);
      } else reject(err);
    };
    const req = request(
      target,
      {
        method: "POST",
        headers: { ...options.headers, "content-length": String(body.byteLength) },
        lookup: pinnedLookup(addresses),
        signal,
      },
      (res: IncomingMessage) => {
        res.on("error", fail);
        res.on("end", () => resolve(res.statusCode ?? 0));
        // Cut short (the timeout, the delivery stopping, the receiver hanging up): never left pending.
        res.on("close", () => {
          if (!res.complete) fail(new Error("answer cut short"));
        });
        res.resume();
      },
    );
    req.on("error", fail);
    req.end(body);
  });
}
