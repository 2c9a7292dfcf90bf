/**
 * The consistency check of deploy/compose (cli/test/deploy-compose.test.ts
 * runs it on the real folder and on broken copies of it). No Docker engine:
 * Debian's `docker-compose config` validates and resolves the file (anchors,
 * relative paths), then every service is checked against what its process
 * really reads:
 *
 * - the one-shot `certs` and `secrets` services are run for real on this
 *   machine (bin/meridian, deploy/compose/init-secrets.mjs), their container
 *   paths mapped to a temporary directory standing for the named volumes;
 * - each Meridian service's MERIDIAN_* variables must be settings of its
 *   process (the kind comes from its entrypoint) and load with that
 *   process's own loader, paths mapped the same way (so a seed, certificate,
 *   key or mesh file the container would not find fails here too);
 * - every file mounted from the repository exists;
 * - Prometheus' targets are services, on the port each serves /metrics on,
 *   and every Meridian process is scraped; its `rule_files` are mounted
 *   (deploy/prometheus/rules.yml, checked by promtool in
 *   prometheus-rules.test.ts);
 * - Grafana's dashboard providers read directories where dashboards are
 *   mounted (deploy/grafana/meridian.json), each one parseable JSON;
 * - mesh.json's registry, nats, grpc and metrics name services of the right
 *   region on their configured ports;
 * - each region's NATS: its servers mount the region's config, which
 *   `nats-server -t` accepts with the generated files, and whose routes name
 *   exactly its members; streams get one replica per server;
 * - every node stores blobs in S3 (a bucket the `buckets` service makes, on
 *   the MinIO service) and has a data volume of its own.
 *
 * Returns the problems found, each a line naming the service or file.
 */
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import type { TSchema } from "typebox";
import { parse } from "yaml";
import { loadPeerConfig, PEER_SETTINGS } from "../../control-plane/config.js";
import { FRONT_DOOR_SETTINGS, loadFrontDoorConfig } from "../../control-plane/front-door-config.js";
import { loadNodeConfig, NODE_SETTINGS } from "../../node/config.js";
import { ConfigError, leaves, resolveSettings } from "../../protocol/config-schema.js";
import { type Mesh, natsServersOf, parseMesh, registriesOf } from "../../protocol/mesh.js";
import { loadWorkerConfig, WORKER_SETTINGS } from "../../replication/config.js";
import { REPO_ROOT as REPO } from "../../testing/harness.js";

type Env = Record<string, string>;
type Kind = "node" | "peer" | "worker" | "front-door";

/** Where a process serves: /metrics (host, port) and, for a peer, gRPC (host:port), as its loader resolves them. */
interface Served {
  metricsHost: string;
  metricsPort: number;
  grpcListen?: string;
}

/** What each Meridian entrypoint is, and how that process loads its settings. */
const KINDS: Record<string, { kind: Kind; schema: TSchema; load: (env: Env) => Served }> = {
  "dist/node/server.js": {
    kind: "node",
    schema: NODE_SETTINGS,
    load: (env) => {
      const c = loadNodeConfig({ env });
      return { metricsHost: c.listen.host, metricsPort: c.listen.port };
    },
  },
  "dist/control-plane/peer.js": {
    kind: "peer",
    schema: PEER_SETTINGS,
    load: (env) => {
      const c = loadPeerConfig({ env });
      return { metricsHost: c.metrics.host, metricsPort: c.metrics.port, grpcListen: c.grpc.listen };
    },
  },
  "dist/replication/main.js": {
    kind: "worker",
    schema: WORKER_SETTINGS,
    load: (env) => {
      const c = loadWorkerConfig({ env });
      return { metricsHost: c.metrics.host, metricsPort: c.metrics.port };
    },
  },
  "dist/control-plane/front-door.js": {
    kind: "front-door",
    schema: FRONT_DOOR_SETTINGS,
    load: (env) => {
      const c = loadFrontDoorConfig({ env });
      return { metricsHost: c.listen.host, metricsPort: c.listen.port };
    },
  },
};

/** An address only the container itself can reach. */
const LOOPBACK = /^(127\.|::1$|localhost$)/;

interface Service {
  image?: string;
  entrypoint?: string[];
  command?: string[];
  environment?: Record<string, string | number | boolean | null>;
  volumes?: string[];
}

interface Mount {
  source: string;
  target: string;
  /** A bind mount (source: a host path), else a named volume. */
  bind: boolean;
}

function mounts(service: Service): Mount[] {
  return (service.volumes ?? []).map((v) => {
    const [source, target] = v.split(":") as [string, string];
    return { source, target, bind: source.startsWith("/") };
  });
}

/** The host path standing for `path` inside `service` (undefined: not under any mount). */
function hostPath(service: Service, path: string, volumesDir: string): string | undefined {
  const m = mounts(service)
    .filter((m) => path === m.target || path.startsWith(`${m.target}/`))
    .sort((x, y) => y.target.length - x.target.length)[0];
  if (m === undefined) return undefined;
  const base = m.bind ? m.source : join(volumesDir, m.source);
  return base + path.slice(m.target.length);
}

const hostPort = (url: string) => {
  const u = new URL(url.includes("://") ? url : `tcp://${url}`);
  return { host: u.hostname, port: Number(u.port) };
};

export interface CheckOptions {
  /** Where the named volumes stand on this machine (reused between runs: the one-shot services keep what exists). */
  volumesDir: string;
  /** Run the one-shot services (default); false: their output in volumesDir is reused as it is. */
  oneShots?: boolean;
}

export function checkCompose(composeDir: string, options: CheckOptions): string[] {
  const problems: string[] = [];
  const file = join(composeDir, "docker-compose.yml");
  const resolved = spawnSync("docker-compose", ["-f", file, "config"], { encoding: "utf8" });
  if (resolved.status !== 0) return [`docker-compose config: exit ${resolved.status}: ${resolved.stderr}`];
  const doc = parse(resolved.stdout) as { services: Record<string, Service> };
  const services = doc.services;
  const { volumesDir } = options;

  // Files mounted from the repository exist (the engine would make an empty directory instead).
  for (const [name, s] of Object.entries(services))
    for (const m of mounts(s))
      if (m.bind && !existsSync(m.source)) problems.push(`${name}: mounted file ${m.source} does not exist`);

  // The one-shot services, run here: certificates and secrets into the volumes' stand-ins.
  const oneShot = (name: string, argv: (s: Service) => string[]) => {
    const s = services[name];
    if (s === undefined) return problems.push(`service ${name}: missing`);
    const mapped = argv(s).map((a) => (a.startsWith("/") ? (hostPath(s, a, volumesDir) ?? a) : a));
    const r = spawnSync(process.execPath, mapped, { cwd: REPO, encoding: "utf8" });
    if (r.status !== 0) problems.push(`${name}: ${mapped.join(" ")}: exit ${r.status}: ${r.stderr.trim()}`);
  };
  if (options.oneShots !== false) {
    oneShot("certs", (s) => [join(REPO, "bin", "meridian"), ...(s.command ?? [])]);
    oneShot("secrets", (s) => [...(s.entrypoint ?? []).slice(1), ...(s.command ?? [])]);
  }

  // Each Meridian process: its variables are its settings, and it loads with them.
  const meridian = new Map<string, { kind: Kind; env: Env; served?: Served }>();
  for (const [name, s] of Object.entries(services)) {
    const entry = s.entrypoint?.[0] === "node" ? KINDS[s.entrypoint[1] ?? ""] : undefined;
    if (entry === undefined) continue;
    const env: Env = Object.fromEntries(
      Object.entries(s.environment ?? {}).map(([k, v]) => [k, v === null ? "" : String(v)]),
    );
    meridian.set(name, { kind: entry.kind, env });
    const known = new Set(leaves(entry.schema).map((l) => l.schema.env));
    for (const k of Object.keys(env))
      if (k.startsWith("MERIDIAN_") && !known.has(k))
        problems.push(`${name}: ${k} is not a setting of the ${entry.kind} (unknown variable)`);
    const schemaProblems: string[] = [];
    resolveSettings(entry.schema, { env }, schemaProblems, readFileSync);
    for (const p of schemaProblems) problems.push(`${name}: ${p}`);
    const hostEnv = mapEnv(name, s, env, volumesDir);
    try {
      const served = entry.load(hostEnv);
      meridian.get(name)!.served = served;
      // Other containers reach it: nothing it serves may listen on loopback only.
      for (const host of [served.metricsHost, hostPort(served.grpcListen ?? "0.0.0.0:1").host])
        if (LOOPBACK.test(host))
          problems.push(`${name}: listens on ${host}, which other containers cannot reach`);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      for (const p of err.problems) problems.push(`${name}: ${p}`);
    }
  }
  const ofKind = (kind: Kind) => [...meridian].filter(([, m]) => m.kind === kind);
  const regionOf = (name: string) => meridian.get(name)?.env.MERIDIAN_REGION;

  checkPrometheus(services, meridian, problems);
  checkGrafana(services, problems);

  // mesh.json: the file the Meridian services mount.
  const meshMount = [...meridian.keys()]
    .map((n) => hostPath(services[n]!, meridian.get(n)!.env.MERIDIAN_MESH ?? "", volumesDir))
    .find((p) => p !== undefined && existsSync(p));
  let mesh: Mesh | undefined;
  try {
    mesh = parseMesh(JSON.parse(readFileSync(meshMount ?? "", "utf8")));
  } catch (err) {
    problems.push(`mesh.json: ${(err as Error).message}`);
  }
  const served = (url: string, kind: Kind, region: string, port: (n: string) => number | undefined) => {
    const { host, port: p } = hostPort(url);
    const m = meridian.get(host);
    if (m === undefined || m.kind !== kind) return `${url}: no ${kind} service ${host}`;
    if (regionOf(host) !== region) return `${url}: ${host} is region ${regionOf(host)}'s`;
    if (port(host) !== p) return `${url}: ${host} listens on ${port(host)}`;
    return undefined;
  };
  // Each region's peer serves, and calls others, with <tls.dir>/<region>.crt/.key (control-plane/tls.ts).
  const peer = services[ofKind("peer")[0]?.[0] ?? ""];
  const tlsDir = mesh?.tls?.dir;
  for (const r of tlsDir === undefined || peer === undefined ? [] : (mesh?.regions ?? []))
    for (const ext of ["crt", "key"]) {
      const file = hostPath(peer!, `${tlsDir}/${r.name}.${ext}`, volumesDir);
      if (file === undefined || !existsSync(file))
        problems.push(
          `mesh.json region ${r.name}: no ${tlsDir}/${r.name}.${ext} (the certs service's names)`,
        );
    }
  for (const r of mesh?.regions ?? []) {
    const metricsOf = (n: string) => meridian.get(n)?.served?.metricsPort;
    const grpcOf = (n: string) => hostPort(meridian.get(n)?.served?.grpcListen ?? "x:0").port;
    const found = [
      // The region's two nodes, both listed: the front door spreads over them (mesh.json's list form).
      ...registriesOf(r).map((url) => served(url, "node", r.name, metricsOf)),
      registriesOf(r).length === ofKind("node").filter(([, m]) => m.env.MERIDIAN_REGION === r.name).length
        ? undefined
        : `registry lists ${registriesOf(r).length} nodes, compose runs ${ofKind("node").filter(([, m]) => m.env.MERIDIAN_REGION === r.name).length}`,
      served(`tcp://${r.grpc}`, "peer", r.name, grpcOf),
      r.metrics?.peer === undefined ? undefined : served(r.metrics.peer, "peer", r.name, metricsOf),
      r.metrics?.worker === undefined ? undefined : served(r.metrics.worker, "worker", r.name, metricsOf),
    ];
    for (const f of found) if (f !== undefined) problems.push(`mesh.json region ${r.name}: ${f}`);
    checkRegionNats(r.name, natsServersOf(r), services, meridian, volumesDir, problems);
  }

  // Nodes: S3 (a bucket `buckets` makes, on the MinIO service), two per region, a data volume each.
  const buckets = (services.buckets?.command ?? []).join(" ");
  const dataVolumes = new Map<string, string[]>();
  for (const [name, s] of Object.entries(services))
    for (const m of mounts(s))
      if (!m.bind) dataVolumes.set(m.source, [...(dataVolumes.get(m.source) ?? []), name]);
  for (const [name, m] of ofKind("node")) {
    if (m.env.MERIDIAN_STORAGE_TYPE !== "s3") problems.push(`${name}: storage is not s3`);
    const bucket = m.env.MERIDIAN_S3_BUCKET ?? "";
    if (!new RegExp(`\\S+/${bucket}(\\s|$)`).test(buckets))
      problems.push(`${name}: bucket "${bucket}" is not made by the buckets service`);
    if (!services[hostPort(m.env.MERIDIAN_S3_ENDPOINT ?? "http://x").host]?.image?.startsWith("minio/minio"))
      problems.push(`${name}: S3 endpoint ${m.env.MERIDIAN_S3_ENDPOINT} is not the MinIO service`);
    const data = mounts(services[name]!).find((v) => v.target === m.env.MERIDIAN_DATA_DIR);
    if (data === undefined || data.bind) problems.push(`${name}: its data directory is not a volume`);
    else if (dataVolumes.get(data.source)!.length > 1)
      problems.push(
        `${name}: data volume ${data.source} shared with ${dataVolumes.get(data.source)!.join(", ")}`,
      );
  }
  for (const r of mesh?.regions ?? [])
    if (ofKind("node").filter(([n]) => regionOf(n) === r.name).length < 2)
      problems.push(`region ${r.name}: fewer than two nodes`);
  return problems;
}

/** The service's environment with container paths mapped to this machine (mesh.json copied with its tls paths mapped). */
function mapEnv(name: string, s: Service, env: Env, volumesDir: string): Env {
  const out: Env = {};
  for (const [k, v] of Object.entries(env))
    out[k] = v.startsWith("/") && k !== "MERIDIAN_DATA_DIR" ? (hostPath(s, v, volumesDir) ?? v) : v;
  if (env.MERIDIAN_DATA_DIR !== undefined)
    out.MERIDIAN_DATA_DIR = hostPath(s, env.MERIDIAN_DATA_DIR, volumesDir) ?? "/nonexistent/not-a-volume";
  const meshFile = out.MERIDIAN_MESH;
  if (meshFile !== undefined && existsSync(meshFile)) {
    const mesh = JSON.parse(readFileSync(meshFile, "utf8")) as Mesh;
    if (mesh.tls !== undefined)
      mesh.tls = {
        ca: hostPath(s, mesh.tls.ca, volumesDir) ?? mesh.tls.ca,
        dir: hostPath(s, mesh.tls.dir, volumesDir) ?? mesh.tls.dir,
      };
    const copy = join(volumesDir, ".mapped", `${name}-mesh.json`);
    mkdirSync(dirname(copy), { recursive: true });
    writeFileSync(copy, JSON.stringify(mesh));
    out.MERIDIAN_MESH = copy;
  }
  return out;
}

/** Prometheus scrapes every Meridian process, each on the port it serves /metrics on. */
function checkPrometheus(
  services: Record<string, Service>,
  meridian: Map<string, { kind: Kind; env: Env; served?: Served }>,
  problems: string[],
): void {
  const prometheus = services.prometheus;
  const config = mounts(prometheus ?? {}).find((m) => m.target === "/etc/prometheus/prometheus.yml");
  if (config === undefined || !existsSync(config.source)) {
    problems.push("prometheus: no /etc/prometheus/prometheus.yml mounted");
    return;
  }
  const doc = parse(readFileSync(config.source, "utf8")) as {
    rule_files?: string[];
    scrape_configs?: Array<{ job_name: string; static_configs?: Array<{ targets: string[] }> }>;
  };
  if ((doc.rule_files ?? []).length === 0)
    problems.push("prometheus.yml: no rule_files (deploy/prometheus/rules.yml)");
  for (const f of doc.rule_files ?? []) {
    const host = prometheus === undefined ? undefined : hostPath(prometheus, f, "/nonexistent");
    if (host === undefined || !existsSync(host))
      problems.push(`prometheus.yml: rule file ${f} is not mounted`);
  }
  const scraped = new Set<string>();
  for (const job of doc.scrape_configs ?? [])
    for (const target of (job.static_configs ?? []).flatMap((c) => c.targets)) {
      const { host, port } = hostPort(target);
      const m = meridian.get(host);
      scraped.add(host);
      if (m === undefined)
        problems.push(`prometheus.yml ${job.job_name}: ${target}: no Meridian service ${host}`);
      else if (m.served?.metricsPort !== port)
        problems.push(
          `prometheus.yml ${job.job_name}: ${target}: ${host} serves /metrics on ${m.served?.metricsPort}`,
        );
    }
  for (const name of meridian.keys())
    if (!scraped.has(name)) problems.push(`prometheus.yml: ${name} is not scraped`);
}

/** Grafana's dashboard providers (provisioning/dashboards/*.yml) each read a directory with dashboards mounted. */
function checkGrafana(services: Record<string, Service>, problems: string[]): void {
  const grafana = services.grafana;
  const dir =
    grafana === undefined
      ? undefined
      : hostPath(grafana, "/etc/grafana/provisioning/dashboards", "/nonexistent");
  if (grafana === undefined || dir === undefined || !existsSync(dir)) {
    problems.push("grafana: no /etc/grafana/provisioning/dashboards mounted");
    return;
  }
  const providers = readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .flatMap((f) => {
      const doc = parse(readFileSync(join(dir, f), "utf8")) as {
        providers?: Array<{ name: string; options?: { path?: string } }>;
      };
      return doc.providers ?? [];
    });
  if (providers.length === 0) problems.push("grafana: no dashboard provider");
  for (const p of providers) {
    const path = p.options?.path ?? "";
    const boards = mounts(grafana).filter(
      (m) => m.bind && m.target.startsWith(`${path}/`) && m.target.endsWith(".json"),
    );
    if (boards.length === 0)
      problems.push(`grafana: provider ${p.name} reads ${path}, where no dashboard is mounted`);
    for (const b of boards) {
      try {
        const board = JSON.parse(readFileSync(b.source, "utf8")) as { uid?: string; panels?: unknown[] };
        if (board.uid === undefined || (board.panels ?? []).length === 0)
          problems.push(`grafana: ${b.source} has no uid or no panels`);
      } catch (err) {
        problems.push(`grafana: ${b.source}: ${(err as Error).message}`);
      }
    }
  }
}

/**
 * Region `region`'s NATS: the servers mesh.json lists are services mounting
 * the region's config, which nats-server accepts with the generated files;
 * its routes name exactly those servers; every process of the region uses
 * them all (nodes: MERIDIAN_NATS_SERVERS) and creates streams with one replica per server.
 */
function checkRegionNats(
  region: string,
  urls: string[],
  services: Record<string, Service>,
  meridian: Map<string, { kind: Kind; env: Env }>,
  volumesDir: string,
  problems: string[],
): void {
  const where = `region ${region}'s NATS`;
  const members = urls.map((u) => hostPort(u));
  for (const { host } of members) {
    const s = services[host];
    if (s === undefined || !s.image?.startsWith("nats")) {
      problems.push(`${where}: ${host} is not a nats service`);
      continue;
    }
    const conf = mounts(s).find((m) => m.target === "/etc/nats/nats.conf");
    if (conf === undefined) {
      problems.push(`${where}: ${host} mounts no /etc/nats/nats.conf`);
      continue;
    }
    const text = readFileSync(conf.source, "utf8");
    if (!text.includes(`name: meridian-${region}\n`))
      problems.push(`${where}: ${host} mounts ${conf.source}, not region ${region}'s cluster config`);
    const port = Number(/^port: (\d+)$/m.exec(text)?.[1]);
    const member = members.find((m) => m.host === host)!;
    if (port !== member.port)
      problems.push(`${where}: ${host} listens on ${port}, mesh.json says ${member.port}`);
    // The container's /etc/nats, rebuilt from its mounts, checked by the real nats-server.
    const root = join(volumesDir, ".mapped", host);
    mkdirSync(join(root, "etc", "nats"), { recursive: true });
    for (const m of mounts(s).filter((m) => m.target.startsWith("/etc/nats/"))) {
      const link = join(root, m.target);
      rmSync(link, { force: true });
      symlinkSync(m.bind ? m.source : join(volumesDir, m.source), link);
    }
    const env = { ...process.env, ...(s.environment as Env) };
    const t = spawnSync("nats-server", ["-t", "-c", join(root, "etc", "nats", "nats.conf")], {
      env,
      encoding: "utf8",
    });
    if (t.status !== 0) problems.push(`${where}: nats-server -t for ${host}: ${t.stderr.trim()}`);
  }
  // The routes (generated from mesh.json by the secrets service) name exactly these servers, on their route port.
  const first = services[members[0]?.host ?? ""];
  const conf = mounts(first ?? {}).find((m) => m.target === "/etc/nats/nats.conf");
  const generated = mounts(first ?? {}).find((m) => m.target === "/etc/nats/generated");
  if (conf !== undefined && existsSync(conf.source) && generated !== undefined) {
    const routeListen = Number(/listen: [^\s:]+:(\d+)/.exec(readFileSync(conf.source, "utf8"))?.[1]);
    const clusterFile = join(volumesDir, generated.source, `cluster-${region}.conf`);
    const routes = existsSync(clusterFile)
      ? (/^routes: (.*)$/m.exec(readFileSync(clusterFile, "utf8"))?.[1] ?? "[]")
      : "[]";
    const actual = (JSON.parse(routes) as string[])
      .map((u) => `${hostPort(u).host}:${hostPort(u).port}`)
      .sort();
    const expected = members.map((m) => `${m.host}:${routeListen}`).sort();
    if (JSON.stringify(actual) !== JSON.stringify(expected))
      problems.push(`${where}: routes ${actual.join(", ")}; want ${expected.join(", ")}`);
  }
  // Every server configured as this region's cluster is one of them.
  for (const [name, s] of Object.entries(services)) {
    const c = mounts(s).find((m) => m.target === "/etc/nats/nats.conf");
    if (
      c !== undefined &&
      existsSync(c.source) &&
      readFileSync(c.source, "utf8").includes(`name: meridian-${region}\n`)
    )
      if (!members.some((m) => m.host === name))
        problems.push(`${where}: ${name} is in the cluster but not in mesh.json`);
  }
  if (members.length !== 3) problems.push(`${where}: ${members.length} servers, want 3`);
  const volumes = members.map(
    ({ host }) => mounts(services[host] ?? {}).find((m) => m.target === "/data")?.source,
  );
  if (volumes.some((v) => v === undefined) || new Set(volumes).size !== volumes.length)
    problems.push(`${where}: servers without a JetStream volume of their own (${volumes.join(", ")})`);
  for (const [name, m] of meridian) {
    if (m.env.MERIDIAN_REGION !== region) continue;
    if (m.kind === "node" && m.env.MERIDIAN_NATS_SERVERS !== urls.join(","))
      problems.push(`${name}: MERIDIAN_NATS_SERVERS is not mesh.json's ${urls.join(",")}`);
    if ((m.kind === "node" || m.kind === "worker") && m.env.MERIDIAN_NATS_REPLICAS !== String(members.length))
      problems.push(`${name}: MERIDIAN_NATS_REPLICAS is not ${members.length} (one per server)`);
  }
}
