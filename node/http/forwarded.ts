/**
 * Which proxy may speak for a client (issue 10, finding 12): a node honours
 * X-Forwarded-For, -Host and -Proto only on a request that comes from a
 * configured proxy address (node/config.ts `trustedProxies`, none by default)
 * AND, with authentication on, carries a proof that it is the front door:
 * `Meridian-Proxy-Proof: <token>`, a short-lived token the front door mints
 * with the mesh's key for the audience `<service>#proxy`
 * (mesh-client/service-token.ts). On one machine the front door and any
 * local user share loopback, so an address alone cannot tell them apart;
 * the key can. The proof is not a credential: its audience is refused by
 * the bearer path (node/auth/authenticator.ts verifies tokens for
 * `<service>` only), so a leaked proof grants nothing.
 *
 * Cost: requests without the header pay one header lookup (in a hook that
 * exists only when proxies are configured). A proof is verified once, then
 * remembered until it expires (a few entries: the front door renews its
 * proof every few minutes), so a proxied request pays a map lookup.
 * Without authentication there is no key to prove with: the address alone
 * is trusted, as before, and the operator's list must name only the proxy.
 *
 * What a proven proxy says: the client is the LAST address of
 * X-Forwarded-For (the one the front door appended: what it saw on its
 * socket); earlier entries came from the client and are ignored, so a
 * client cannot pose as another address through the front door either.
 * X-Forwarded-Host/-Proto name the URL the client used (the token realm).
 * Every request that is not proven is taken at its socket's address, and
 * its realm is the configured public URL (`auth.realm`) or the address the
 * node answered on, never the client's Host.
 */
import { BlockList, isIP } from "node:net";
import type { FastifyRequest } from "fastify";
import { LRUCache } from "lru-cache";
import { PROXY_PROOF_HEADER, proxyAudience } from "../../mesh-client/tokens.js";

export { PROXY_PROOF_HEADER, proxyAudience };

declare module "fastify" {
  interface FastifyRequest {
    /** The request came through a trusted proxy that proved itself (its forwarded headers hold). */
    proxied: boolean;
  }
}

const MAX_PROOFS = 16;

export class ProxyTrust {
  readonly #proxies = new BlockList();
  /** Proofs verified, with when they expire (ms). */
  readonly #proofs = new LRUCache<string, number>({ max: MAX_PROOFS });

  /**
   * `proxies`: addresses or CIDRs. `verify`: when a proof is required, the
   * expiry (ms since the epoch) of a good proof, undefined for a bad one.
   */
  constructor(
    proxies: readonly string[],
    private readonly verify?: (proof: string) => Promise<number | undefined>,
  ) {
    for (const p of proxies) {
      const [address, bits] = p.split("/") as [string, string | undefined];
      const family = isIP(address) === 6 ? "ipv6" : "ipv4";
      if (bits === undefined) this.#proxies.addAddress(address, family);
      else this.#proxies.addSubnet(address, Number(bits), family);
    }
  }

  /**
   * Whether a request from `address` carrying `proof` comes from a trusted
   * proxy: at once when known, a promise the first time a proof is seen.
   */
  check(address: string | undefined, proof: string | string[] | undefined): boolean | Promise<boolean> {
    if (address === undefined || !this.#trusted(address)) return false;
    if (this.verify === undefined) return true;
    if (typeof proof !== "string" || proof === "") return false;
    const until = this.#proofs.get(proof);
    if (until !== undefined && until > Date.now()) return true;
    return this.verify(proof).then(
      (expiresAt) => {
        if (expiresAt === undefined || expiresAt <= Date.now()) return false;
        this.#proofs.set(proof, expiresAt);
        return true;
      },
      () => false,
    );
  }

  #trusted(address: string): boolean {
    if (address.startsWith("::ffff:") && isIP(address.slice(7)) === 4)
      return this.#proxies.check(address.slice(7), "ipv4");
    return this.#proxies.check(address, isIP(address) === 6 ? "ipv6" : "ipv4");
  }
}

/** The client's address: the socket's, or behind a proven proxy the one it appended to X-Forwarded-For. */
export function clientAddress(req: FastifyRequest): string {
  if (!req.proxied) return req.ip;
  const header = req.headers["x-forwarded-for"];
  const value = Array.isArray(header) ? header[header.length - 1] : header;
  if (value === undefined) return req.ip;
  const last = value.slice(value.lastIndexOf(",") + 1).trim();
  return isIP(last) === 0 ? req.ip : last;
}

const HOST = /^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$/;

/**
 * Where clients get tokens, as this request reached us: behind a proven
 * proxy the URL it says the client used; otherwise the address this node
 * answered on (never the client's own Host, which anyone can set).
 */
export function realmOf(req: FastifyRequest): string {
  if (req.proxied) {
    const first = (h: string | string[] | undefined) => (Array.isArray(h) ? h[0] : h)?.split(",")[0]?.trim();
    const host = first(req.headers["x-forwarded-host"]);
    const proto = first(req.headers["x-forwarded-proto"]) === "https" ? "https" : "http";
    if (host !== undefined && HOST.test(host)) return `${proto}://${host}/auth/token`;
  }
  let local = req.socket.localAddress ?? "127.0.0.1";
  if (local.startsWith("::ffff:") && isIP(local.slice(7)) === 4) local = local.slice(7);
  const host = isIP(local) === 6 ? `[${local}]` : local;
  return `${req.protocol}://${host}:${req.socket.localPort}/auth/token`;
}
