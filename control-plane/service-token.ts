/**
 * Bearer tokens the control plane gives itself for the nodes' admin API when
 * authentication is on: the front door reads every region's home rules, a
 * peer asks its node to fail over. A component given the mesh's token key
 * (`auth.tokenKeyFile`, the file the nodes sign with) mints a `service`
 * token naming itself (node/auth/tokens.ts), which the nodes treat as a
 * system admin; it is renewed a minute before it expires.
 */
import type { Logger } from "pino";
import { TOKEN_ISSUER } from "../node/auth/authenticator.js";
import { loadTokenKeys } from "../node/auth/setup.js";
import type { TokenKeys } from "../node/auth/tokens.js";

const TTL_SECONDS = 600;

export class ServiceToken {
  #current: { header: string; renewAt: number } | undefined;

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

  /** `Bearer …`, fresh for at least a minute. */
  async header(): Promise<string> {
    if (this.#current !== undefined && Date.now() < this.#current.renewAt) return this.#current.header;
    const { token } = await this.keys.issue({
      issuer: TOKEN_ISSUER,
      service: this.service,
      subject: this.name,
      kind: "service",
      access: [],
      // The admin API takes only tokens naming it (node/auth/tokens.ts ADMIN_ACCESS).
      admin: true,
      ttlSeconds: TTL_SECONDS,
    });
    this.#current = { header: `Bearer ${token}`, renewAt: Date.now() + (TTL_SECONDS - 60) * 1000 };
    return this.#current.header;
  }
}
