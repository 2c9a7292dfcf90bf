/**
 * Mesh membership: which regions exist and where each one's endpoints are.
 * One JSON document (`mesh.json`) shared by every process of every region;
 * `meridian up` writes it, operators write their own. Pure validation here;
 * each process reads the file itself.
 *
 *   {
 *     "regions": [
 *       { "name": "a", "registry": "http://127.0.0.1:5000", "nats": "nats://127.0.0.1:5001",
 *         // or, for a region of several registry nodes with no load balancer of its own:
 *         // "registry": ["http://127.0.0.1:5000", "http://127.0.0.1:5080", …]
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
  /**
   * OCI HTTP endpoint of the region's registry: its load balancer, or its
   * first node when mesh.json lists several (then `registries` has them all).
   */
  registry: string;
  /**
   * Every registry node of the region, when mesh.json's `registry` is a list
   * (stateless nodes with no load balancer of their own, e.g. `meridian up
   * --nodes N`): the front door spreads the region's requests over them.
   * parseMesh sets it from the list; read it with registriesOf.
   */
  registries?: string[];
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

/** A region's registry nodes as a list (one URL when mesh.json names one). Pure. */
export function registriesOf(region: Pick<RegionEndpoints, "registry" | "registries">): string[] {
  return region.registries !== undefined && region.registries.length > 0
    ? [...region.registries]
    : [region.registry];
}

/**
 * The mesh as mesh.json writes it: a region with several registry nodes
 * gives `registry` as their list (parseMesh reads it back into `registry`
 * and `registries`). Pure.
 */
export function meshDocument(mesh: Mesh): object {
  return {
    ...mesh,
    regions: mesh.regions.map(({ registries, ...r }) =>
      registries !== undefined && registries.length > 1 ? { ...r, registry: registries } : r,
    ),
  };
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
    const written = r?.registry as unknown;
    const registries: unknown[] = Array.isArray(written) ? written : [written];
    if (
      registries.length === 0 ||
      registries.some((u) => typeof u !== "string" || !/^https?:\/\/\S+$/.test(u))
    )
      problems.push(`${where}.registry: an http(s) URL, or a non-empty list of them`);
    else if (new Set(registries).size !== registries.length)
      problems.push(`${where}.registry: a URL appears twice`);
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
  // `registry` as a list: the first node stays `registry`, all of them `registries`.
  const regions = (doc.regions as RegionEndpoints[]).map((r) => {
    const written = r.registry as unknown;
    return Array.isArray(written)
      ? { ...r, registry: written[0] as string, registries: written as string[] }
      : r;
  });
  return { ...doc, regions } as Mesh;
}

export function regionOf(mesh: Mesh, name: string): RegionEndpoints {
  const r = mesh.regions.find((x) => x.name === name);
  if (r === undefined) throw new MeshConfigError([`region "${name}" is not in the mesh`]);
  return r;
}
