/**
 * The upstream side of pull-through cache projects (node/pull-through.ts):
 * each endpoint's OCI clients, made from the endpoint as the view holds it
 * and its credentials and CA files read on this host (made again when the
 * endpoint or one of its files changed, so a rotated credentials file is
 * picked up without a restart), and the bounded reasons an upstream request
 * failed (the errors metric's label).
 */
import { readFileSync, statSync } from "node:fs";
import type { Logger } from "pino";
import { readCredentialsFile } from "../mesh-client/oci-credentials.js";
import { type ExternalRegistryError, OciRegistryClient } from "../mesh-client/oci-registry-client.js";
import { UpstreamError } from "../protocol/errors.js";
import type { ProxyConfig } from "../protocol/proxy.js";
import type { EndpointReads } from "./data/projections/endpoints.js";

/** Upstream failure reasons, the bounded label of the errors metric. */
export const REASONS = [
  "unauthorized",
  "not_found",
  "timeout",
  "connect",
  "digest_mismatch",
  "server",
  "other",
] as const;
export type Reason = (typeof REASONS)[number];

export interface Clients {
  key: string;
  /** Misses: `fetchTimeoutMs` for each answer and body chunk. */
  fetch: OciRegistryClient;
  /** Freshness checks: `checkTimeoutMs`. */
  check: OciRegistryClient;
}

export class UpstreamClients {
  readonly #clients = new Map<string, Clients>();

  constructor(
    private readonly endpoints: EndpointReads,
    private readonly logger: Logger,
    private readonly timeouts: { fetchTimeoutMs: number; checkTimeoutMs: number },
    /** Told of a failure this side caught (an unreadable file). */
    private readonly failed: (reason: Reason) => void,
  ) {}

  /** The proxy's endpoint's two clients; UpstreamError when the endpoint or its files are missing. */
  async for(proxy: ProxyConfig): Promise<Clients> {
    const found = (await this.endpoints.endpoint(proxy.endpoint))?.endpoint;
    if (found === undefined)
      throw new UpstreamError(`endpoint ${proxy.endpoint} of proxy project ${proxy.project} does not exist`);
    const key = JSON.stringify([found, changed(found.credentialsFile), changed(found.caFile)]);
    const known = this.#clients.get(proxy.endpoint);
    if (known !== undefined && known.key === key) return known;
    let base: Omit<ConstructorParameters<typeof OciRegistryClient>[0], "deadlineMs" | "idleMs">;
    try {
      base = {
        url: found.url,
        ...(found.credentialsFile === undefined
          ? {}
          : { credentials: readCredentialsFile(found.credentialsFile).credentials }),
        ...(found.caFile === undefined ? {} : { ca: readFileSync(found.caFile) }),
        ...(found.insecure ? { insecure: true } : {}),
      };
    } catch (err) {
      this.failed("other");
      // The file's path and why (ENOENT, bad format), never its content.
      this.logger.error(
        { endpoint: proxy.endpoint, err: (err as Error).message.slice(0, 300) },
        "upstream credentials unreadable",
      );
      throw new UpstreamError(`endpoint ${proxy.endpoint}: its credentials or CA file cannot be read here`);
    }
    const { fetchTimeoutMs, checkTimeoutMs } = this.timeouts;
    const clients = {
      key,
      fetch: new OciRegistryClient({ ...base, deadlineMs: fetchTimeoutMs, idleMs: fetchTimeoutMs }),
      check: new OciRegistryClient({ ...base, deadlineMs: checkTimeoutMs, idleMs: checkTimeoutMs }),
    };
    this.#clients.set(proxy.endpoint, clients);
    return clients;
  }
}

/** Why an upstream request failed, as the metric's bounded label. */
export function reasonOf(err: ExternalRegistryError): Reason {
  if (err.status === 401 || err.ociCode === "UNAUTHORIZED") return "unauthorized";
  if (err.status === 404) return "not_found";
  if (err.ociCode === "TIMEOUT") return "timeout";
  if (err.ociCode === "CONNECT" || err.status === 0) return "connect";
  if (err.ociCode === "DIGEST_MISMATCH") return "digest_mismatch";
  if (err.status >= 500) return "server";
  return "other";
}

/** When a file last changed (0 when it cannot be seen: reading it then fails, as it should). */
function changed(path: string | undefined): number {
  if (path === undefined) return 0;
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}
