/**
 * Mesh membership: which regions exist and where each one's endpoints are.
 * One JSON document (`mesh.json`) shared by every process of every region;
 * `meridian up` writes it, operators write their own. Pure validation here;
 * each process reads the file itself.
 *
 *   {
 *     "regions": [
 *       { "name": "a", "registry": "http://127.0.0.1:5000", "nats": "nats://127.0.0.1:5001",
 *         // or, for a JetStream cluster: "nats": ["nats://127.0.0.1:5001", "nats://127.0.0.1:5006", …]
 *         "grpc": "127.0.0.1:5002" }, …
 *     ],
 *     "tls": { "ca": "/…/ca.crt", "dir": "/…/certs" }    // or "insecure": true
 *   }
 *
 * With `tls`, region R's peer serves with `<dir>/R.crt` + `<dir>/R.key`, and
 * every caller presents its own region's pair (mutual TLS, one mesh CA).
 * Plaintext between peers requires `"insecure": true`, said explicitly.
 */
import { parseRegion } from "./events.js";

export interface RegionEndpoints {
  name: string;
  /** OCI HTTP endpoint of the region's registry node(s). */
  registry: string;
  /**
   * The region's NATS (JetStream): one URL, or the list of its clustered
   * servers (`meridian up --nats-cluster N`; clients dial any and fail over to
   * the others). Read it with natsServersOf.
   */
  nats: string | string[];
  /** host:port of the region's control-plane peer (gRPC). */
  grpc: string;
  /** Optional Prometheus endpoints (base URLs) of the region's peer and worker, for `meridian status`. */
  metrics?: { peer?: string; worker?: string };
}

/** A region's NATS servers as a list (RegionEndpoints.nats is one URL or a list). Pure. */
export function natsServersOf(region: Pick<RegionEndpoints, "nats">): string[] {
  return Array.isArray(region.nats) ? [...region.nats] : [region.nats];
}

export interface MeshTls {
  ca: string;
  dir: string;
}

export interface Mesh {
  regions: RegionEndpoints[];
  tls?: MeshTls;
  insecure?: boolean;
}

export class MeshConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid mesh configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "MeshConfigError";
  }
}

/** Validate a parsed mesh document, listing every problem at once. */
export function parseMesh(value: unknown): Mesh {
  const problems: string[] = [];
  const doc = value as Partial<Mesh>;
  if (typeof doc !== "object" || doc === null) throw new MeshConfigError(["not an object"]);
  if (!Array.isArray(doc.regions) || doc.regions.length === 0) problems.push("regions: a non-empty list");
  const seen = new Set<string>();
  for (const [i, r] of (doc.regions ?? []).entries()) {
    const where = `regions[${i}]`;
    try {
      parseRegion(r?.name);
    } catch {
      problems.push(`${where}.name: lower-case letters, digits and dashes`);
    }
    if (seen.has(r?.name)) problems.push(`${where}.name: "${r?.name}" appears twice`);
    seen.add(r?.name);
    if (typeof r?.registry !== "string" || !/^https?:\/\/\S+$/.test(r.registry))
      problems.push(`${where}.registry: an http(s) URL`);
    const nats: unknown[] = Array.isArray(r?.nats) ? r.nats : [r?.nats];
    if (nats.length === 0 || nats.some((u) => typeof u !== "string" || !/^(nats|tls):\/\/\S+$/.test(u)))
      problems.push(`${where}.nats: a nats:// URL, or a non-empty list of them`);
    if (typeof r?.grpc !== "string" || !/^[^\s:/]+:\d{1,5}$/.test(r.grpc))
      problems.push(`${where}.grpc: host:port`);
  }
  if (doc.tls !== undefined) {
    if (typeof doc.tls?.ca !== "string" || typeof doc.tls?.dir !== "string")
      problems.push("tls: { ca, dir } paths");
  } else if (doc.insecure !== true) {
    problems.push('tls: required (or "insecure": true for plaintext between peers)');
  }
  if (problems.length > 0) throw new MeshConfigError(problems);
  return doc as Mesh;
}

export function regionOf(mesh: Mesh, name: string): RegionEndpoints {
  const r = mesh.regions.find((x) => x.name === name);
  if (r === undefined) throw new MeshConfigError([`region "${name}" is not in the mesh`]);
  return r;
}
