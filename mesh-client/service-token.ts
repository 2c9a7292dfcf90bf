/**
 * Bearer tokens the control plane gives itself for the nodes' admin API when
 * authentication is on: the front door reads every region's home rules, a
 * peer asks its node to fail over. A component given the mesh's token key
 * (`auth.tokenKeyFile`, the file the nodes sign with) mints a `service`
 * token naming itself (./tokens.ts), which the nodes treat as a
 * system admin; it is renewed a minute before it expires.
 */
import type { Logger } from "pino";
import { loadTokenKeys } from "./token-key-file.js";
import type { TokenKeys } from "./tokens.js";
import { proxyAudience, TOKEN_ISSUER } from "./tokens.js";

const TTL_SECONDS = 600;

export class ServiceToken {
  #current: { header: string; renewAt: number } | undefined;
  #renewing: Promise<string> | undefined;

  private constructor(
    private readonly keys: TokenKeys,
    readonly name: string,
    readonly service: string,
  ) {}

  /** Tokens for `name` (e.g. `front-door`, `peer-a`), or undefined without a key file (auth off). */
  static async fromKeyFile(
    file: string | undefined,
    name: string,
    service: string,
    logger?: Logger,
  ): Promise<ServiceToken | undefined> {
    if (file === undefined) return undefined;
    const keys = await loadTokenKeys({ tokenKeyFile: file, retiredKeyFiles: [], create: false, logger });
    return new ServiceToken(keys, name, service);
  }

  /**
   * The front door's proof that it is the trusted proxy (node/http/forwarded.ts):
   * tokens for the audience `proxyAudience(service)`, which nodes accept as a
   * proof and never as credentials. Undefined without a key file (auth off).
   */
  static async proxyProof(
    file: string | undefined,
    service: string,
    logger?: Logger,
  ): Promise<ServiceToken | undefined> {
    const proof = await ServiceToken.fromKeyFile(file, "front-door", proxyAudience(service), logger);
    await proof?.header();
    return proof;
  }

  /**
   * The current token without waiting (for a request path that cannot
   * await): renewed in the background once it is due, and still good for a
   * minute then. Undefined only before the first `header()`.
   */
  current(): string | undefined {
    const current = this.#current;
    if (current === undefined || Date.now() >= current.renewAt)
      this.#renewing ??= this.header()
        .catch(() => "")
        .finally(() => {
          this.#renewing = undefined;
        });
    return current?.header.slice("Bearer ".length);
  }

  /** `Bearer …`, fresh for at least a minute. */
  async header(): Promise<string> {
    if (this.#current !== undefined && Date.now() < this.#current.renewAt) return this.#current.header;
    const { token } = await this.keys.issue({
      issuer: TOKEN_ISSUER,
      service: this.service,
      subject: this.name,
      kind: "service",
      access: [],
      // The admin API takes only tokens naming it (./tokens.ts ADMIN_ACCESS).
      admin: true,
      ttlSeconds: TTL_SECONDS,
    });
    this.#current = { header: `Bearer ${token}`, renewAt: Date.now() + (TTL_SECONDS - 60) * 1000 };
    return this.#current.header;
  }
}
