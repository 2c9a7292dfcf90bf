/**
 * HTTP(S) from the control plane to a region's registry (the front door's
 * proxying and probes, a peer's automatic failover). A registry whose
 * mesh.json URL is https:// is trusted under the mesh CA (`mesh.tls.ca`) as
 * well as the system's roots, so `meridian up --tls` regions (certificates
 * from cli/certs.ts) and registries with public certificates both verify.
 *
 * Node's global fetch takes a CA only through an undici dispatcher, which
 * needs the `undici` package; node:http(s) agents carry it instead.
 */
import { readFileSync } from "node:fs";
import http, { type OutgoingHttpHeaders } from "node:http";
import https from "node:https";
import { rootCertificates } from "node:tls";
import type { Mesh } from "../protocol/mesh.js";

/** The CA certificates an https:// registry of `mesh` may chain to (undefined: the system's roots). */
export function registryCa(mesh: Mesh): string[] | undefined {
  return mesh.tls === undefined ? undefined : [...rootCertificates, readFileSync(mesh.tls.ca, "utf8")];
}

/** An agent for requests to `registry` (http:// or https://, see the header). */
export function registryAgent(mesh: Mesh, registry: string, options: http.AgentOptions = {}): http.Agent {
  if (!registry.startsWith("https:")) return new http.Agent(options);
  const ca = registryCa(mesh);
  return new https.Agent(ca === undefined ? options : { ...options, ca });
}

export interface RegistryResponse {
  status: number;
  body: Buffer;
}

/** The most a `registryRequest` reads of a response body. */
const MAX_BODY = 8 << 20;

/**
 * One request with a small body, its response read whole. Rejects on a
 * network or TLS error (with its `code`, e.g. ECONNREFUSED,
 * UNABLE_TO_VERIFY_LEAF_SIGNATURE), on `signal` (a deadline: pass
 * AbortSignal.timeout) and on a body over 8 MiB; any status resolves.
 */
export function registryRequest(
  url: string,
  init: {
    agent: http.Agent;
    method?: string;
    headers?: OutgoingHttpHeaders;
    body?: string;
    signal?: AbortSignal;
  },
): Promise<RegistryResponse> {
  const transport = url.startsWith("https:") ? https : http;
  return new Promise((resolve, reject) => {
    const req = transport.request(url, {
      method: init.method ?? "GET",
      headers: {
        ...init.headers,
        ...(init.body === undefined ? {} : { "content-length": Buffer.byteLength(init.body) }),
      },
      agent: init.agent,
      ...(init.signal === undefined ? {} : { signal: init.signal }),
    });
    req.once("error", reject);
    req.once("response", (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY) req.destroy(new Error(`response body over ${MAX_BODY} bytes`));
        else chunks.push(chunk);
      });
      res.once("error", reject);
      res.once("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    });
    req.end(init.body);
  });
}
