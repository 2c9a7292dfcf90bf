/**
 * `meridian status`: the mesh at a glance — per region: whether its peer
 * answers, the round trip to it from here, what each peer sees of the others
 * (up, smoothed RTT), and replication into the region from each source: lag
 * p50/p99 over the last 5 minutes of replications (replication/links.ts;
 * not since the worker started), events pending (the source's last sequence
 * minus what the region has handled), the age of the oldest of them, when
 * the link last moved, bytes copied; and for
 * failover, the highest failover epoch each region knows and, when a region
 * refuses home writes, why (its fence).
 * A table by default, JSON with --json. Reads <data>/mesh.json (or --mesh).
 *
 * Bounded whatever the regions do: every call has its own deadline (the
 * peer's Status `STATUS_DEADLINE_MS`, each metrics page `METRICS_DEADLINE_MS`,
 * its socket destroyed when it passes, so a frozen region leaves nothing
 * open behind), the regions are asked in parallel (and a region's Status
 * and metrics pages at once), and so `status` ends
 * within about 2 × 3 s even when a region accepts connections and never
 * answers (SIGSTOP, a blackholed link). It exits 1 when a region's peer did
 * not answer, naming each such region on stderr, and exits within
 * LINGER_MS of its answer even if a frozen peer's connection attempt is left
 * open.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import {
  collectStatus,
  METRICS_DEADLINE_MS,
  RECENT_WINDOW_SECONDS,
  type RegionStatus,
} from "../mesh-client/mesh-status.js";
import { type Mesh, parseMesh } from "../protocol/mesh.js";
import { type ControlState, controlFile } from "./supervisor.js";
import { table } from "./table.js";

export interface StatusOptions {
  dataDir: string;
  meshFile?: string;
  json: boolean;
}

export async function status(options: StatusOptions): Promise<number> {
  const mesh = readStatusMesh("status", options);
  if (mesh === undefined) return 2;
  const snap = await snapshot(mesh, options);
  process.stdout.write(snap.text);
  for (const problem of snap.problems) process.stderr.write(`${problem}\n`);
  // The CLI's end (status() is the `meridian status` command). grpc-js keeps a
  // connection attempt to a frozen peer (a TLS handshake that never ends) open
  // after its channel is closed and the call's deadline passed; that socket
  // alone would keep the process alive for ever. Unref'd: a process with
  // nothing left open exits at once without it.
  setTimeout(() => process.exit(snap.code), LINGER_MS).unref();
  return snap.code;
}

/**
 * The mesh file of `status`/`lag` (--mesh, else <data>/mesh.json); undefined
 * after saying on stderr what is wrong and what to do.
 */
export function readStatusMesh(
  command: string,
  options: { dataDir: string; meshFile?: string },
): Mesh | undefined {
  const meshFile = options.meshFile ?? join(options.dataDir, "mesh.json");
  try {
    return parseMesh(JSON.parse(readFileSync(meshFile, "utf8")));
  } catch (err) {
    const missing = (err as { code?: string }).code === "ENOENT";
    process.stderr.write(
      `meridian ${command}: cannot read ${meshFile}: ${(err as Error).message}\n${
        missing
          ? `  'meridian up' writes it when the mesh starts: start one with 'npm start' (or 'meridian up --data ${options.dataDir}'), or pass --data DIR / --mesh FILE of a running mesh\n`
          : "  it is not a mesh file 'meridian up' wrote: pass --data DIR / --mesh FILE of a running mesh\n"
      }`,
    );
    return undefined;
  }
}

/** One collection: the table (or JSON) for stdout, the problems for stderr, the exit code. */
export async function snapshot(
  mesh: Mesh,
  options: StatusOptions,
): Promise<{ text: string; problems: string[]; code: number; report: RegionStatus[] }> {
  const [report, s3] = await Promise.all([collectStatus(mesh), s3Status(options.dataDir)]);
  const text = options.json
    ? `${JSON.stringify({ regions: report, ...(s3 === undefined ? {} : { s3 }) }, null, 2)}\n`
    : `${formatTable(report)}${s3 === undefined ? "" : `S3 server ${s3.endpoint}: ${s3.up ? "up" : "down"}${s3.pid === null ? "" : ` (pid ${s3.pid})`}\n`}`;
  const problems: string[] = [];
  if (s3?.up === false)
    problems.push(
      `meridian status: the S3 server of 'meridian up' (${s3.endpoint}) does not answer${s3.pid === null ? " (it is being restarted)" : ""}`,
    );
  const held = heldRegions(options.dataDir);
  for (const r of report.filter((x) => !x.up))
    problems.push(
      `meridian status: region ${r.region} is unreachable: ${r.error ?? "no answer"}${held.has(r.region) ? ` (held down by 'meridian region stop'; 'meridian region start ${r.region}' brings it back)` : ""}`,
    );
  const code = report.every((r) => r.up) && s3?.up !== false ? 0 : 1;
  return { text, problems, code, report };
}

/** Regions the `up` running on `dataDir` holds down (cli/supervisor.ts's up.json; none without it). */
export function heldRegions(dataDir: string): Set<string> {
  try {
    const state = JSON.parse(readFileSync(controlFile(dataDir), "utf8")) as ControlState;
    return new Set(Object.entries(state.regions).flatMap(([name, r]) => (r.held ? [name] : [])));
  } catch {
    return new Set();
  }
}

/**
 * `up --s3`: the S3 server named in up.json and whether it answers HTTP at
 * all (any status: it refuses an unsigned request) within the metrics
 * deadline. None without up.json or without --s3.
 */
async function s3Status(
  dataDir: string,
): Promise<{ endpoint: string; up: boolean; pid: number | null } | undefined> {
  let state: ControlState;
  try {
    state = JSON.parse(readFileSync(controlFile(dataDir), "utf8")) as ControlState;
  } catch {
    return undefined;
  }
  if (state.s3 === undefined) return undefined;
  const pid = state.s3.pids.s3;
  const up = await new Promise<boolean>((resolve) => {
    const req = http.get(state.s3!.endpoint, { agent: false }, (res) => {
      res.resume();
      resolve(true);
    });
    const timer = setTimeout(() => req.destroy(new Error("deadline")), METRICS_DEADLINE_MS);
    req.once("error", () => resolve(false));
    req.once("close", () => clearTimeout(timer));
  });
  return { endpoint: state.s3.endpoint, up, pid: typeof pid === "number" ? pid : null };
}

function formatTable(regions: RegionStatus[]): string {
  const window = `${RECENT_WINDOW_SECONDS / 60}m`;
  const rows: string[][] = [
    [
      "region",
      "peer",
      "rtt",
      "applied",
      "epoch",
      "from",
      `lag p50 ${window}`,
      `lag p99 ${window}`,
      "pending",
      "oldest",
      "last ok",
      "copied",
      "sees",
    ],
  ];
  const now = Date.now();
  for (const r of regions) {
    const sees = Object.entries(r.peers)
      .map(([p, s]) => `${p}:${s.up ? "up" : "DOWN"}${s.rttMs !== undefined ? `/${s.rttMs}ms` : ""}`)
      .join(" ");
    const sources = Object.entries(r.replication);
    const head = [
      r.region,
      r.up ? "up" : "DOWN",
      ms(r.rttMs),
      String(r.appliedSeq ?? "-"),
      String(r.epoch ?? "-"),
    ];
    if (sources.length === 0) rows.push([...head, "-", "-", "-", "-", "-", "-", "-", sees]);
    sources.forEach(([src, s], i) => {
      rows.push([
        ...(i === 0 ? head : ["", "", "", "", ""]),
        src,
        ms(s.lagP50Ms),
        ms(s.lagP99Ms),
        s.pending === undefined ? "-" : String(s.pending),
        s.oldestPendingMs === undefined ? "-" : age(s.oldestPendingMs),
        s.lastSuccessAt === undefined ? "-" : `${age(now - Date.parse(s.lastSuccessAt))} ago`,
        s.bytes === undefined ? "-" : bytes(s.bytes),
        i === 0 ? sees : "",
      ]);
    });
  }
  const fences = regions
    .filter((r) => r.fence !== undefined && r.fence !== "")
    .map((r) => `${r.region} refuses home writes: ${r.fence}\n`);
  // A source that has not answered its worker for a while: its pending figure is as of then.
  const silent: string[] = [];
  for (const r of regions)
    for (const [src, s] of Object.entries(r.replication)) {
      const quiet = s.sourceCheckedAt === undefined ? undefined : now - Date.parse(s.sourceCheckedAt);
      if (quiet !== undefined && quiet > SOURCE_SILENT_MS)
        silent.push(
          `${src} → ${r.region}: ${src}'s NATS has not answered ${r.region}'s worker for ${age(quiet)}; pending is as of then\n`,
        );
    }
  // Links to external endpoints (issue 17): why one fails is on its worker's /failures.
  const endpoints = regions.flatMap((r) =>
    (r.endpointLinks ?? []).map(
      (l) =>
        `${l.src} → ${l.dst}: ${l.failing ? "FAILING (retrying; the worker's /failures says why)" : "ok"}, oldest pending ${age(l.oldestPendingMs ?? 0)}, last ok ${l.lastSuccessAt === undefined ? "never" : `${age(now - Date.parse(l.lastSuccessAt))} ago`}, copied ${bytes(l.bytes ?? 0)}\n`,
    ),
  );
  return (
    table(rows) +
    fences.join("") +
    silent.join("") +
    (endpoints.length === 0 ? "" : `endpoint links:\n${endpoints.map((l) => `  ${l}`).join("")}`)
  );
}

/** Past this, a link's source is called silent (the worker asks it every 2 s). */
const SOURCE_SILENT_MS = 10_000;

/** How long the command may linger after its answer for connections it could not close. */
export const LINGER_MS = 500;

const ms = (v: number | undefined) => (v === undefined ? "-" : `${v}ms`);
/** A duration for people: 0s, 850ms, 12s, 3m05s. */
function age(msValue: number): string {
  if (msValue <= 0) return "0s";
  if (msValue < 1000) return `${Math.round(msValue)}ms`;
  const s = Math.floor(msValue / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}
function bytes(n: number): string {
  return n >= 1 << 20
    ? `${(n / (1 << 20)).toFixed(1)}MiB`
    : n >= 1024
      ? `${(n / 1024).toFixed(1)}KiB`
      : `${n}B`;
}
