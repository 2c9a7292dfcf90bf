/**
 * `meridian up`'s supervision (issue 13, item 4): each process of the mesh
 * (a region's nats-servers, node, peer, worker; the front door) is a
 * `Supervised`, restarted when it dies, and the control endpoint through
 * which `meridian region stop|start NAME` holds a region down and brings it
 * back.
 *
 * Restarts: a process that was up once and exits on its own is logged on
 * stderr (which, pid, exit code or signal, the last lines of its log) and
 * started again with the same command, so on the same ports and data, after
 * a backoff: 0.5 s, doubling on each failed or short-lived attempt up to
 * 10 s, back to 0.5 s once a run has lasted STABLE_MS. A process that
 * crash-loops (its start fails every time) is retried at that cap for as
 * long as `up` runs; `up` itself keeps running and serving the rest. The
 * very first start is not retried: it throws, and `up` fails as before (a
 * taken port is a mistake to report, not to retry).
 *
 * Liveness: a process that stops answering without exiting (SIGSTOP, a
 * hung event loop, a frozen VM) would never be restarted on exit alone, and
 * its region's registry would stay silent. A process that serves HTTP (a
 * node's, the front door's, a peer's and a worker's /healthz (the last two on their metrics port):
 * `livenessProbe`, from its listening line) is probed every
 * LIVENESS.intervalMs after the previous probe ended; a probe answered with
 * any HTTP status within LIVENESS.timeoutMs counts as alive (the process
 * answers; whether its dependencies do is /healthz's business, not a reason
 * to restart it). After LIVENESS.failures unanswered probes in a row (with
 * the defaults, at least 19 s and at most about 24 s after it froze: longer
 * than the gray-failure drills' holds of 11 s) it is logged and killed with
 * SIGKILL, and the exit above restarts it with the usual backoff.
 * `up --s3`'s S3 server is probed at its root (./up-s3.ts). nats-servers are
 * not probed (no HTTP endpoint under `up`; a frozen one is the cluster's
 * business: chaos/test/nats-cluster.test.ts).
 * MERIDIAN_UP_LIVENESS=off in `up`'s environment turns probing off (a drill
 * or test that keeps a process frozen on purpose).
 *
 * Control: `up` serves a small HTTP endpoint on 127.0.0.1 (a free port) and
 * writes its address, a random bearer token and the current pids to
 * <data>/up.json (mode 0600, in the 0700 data directory, rewritten on every
 * start, stop and restart): only who can read the data directory can
 * control `up`. Requests: POST /regions/NAME/stop|start (stop?only=ROLE,…:
 * only those processes, e.g. the node for `meridian rebuild`, which needs the
 * region's NATS; start starts whatever of the region is down), answered as JSON
 * lines, progress first (`{"progress":"…"}`), then `{"done":true}` or
 * `{"error":"…"}`. A held region stays down (its processes are not
 * restarted) until started again or until `up` restarts (holds live in
 * memory only). `up` removes up.json when it stops (a SIGKILLed `up` leaves
 * it behind: `meridian region` then finds nothing answering and says so).
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes, timingSafeEqual } from "node:crypto";
import { renameSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest, type Server } from "node:http";
import { request as httpsRequest } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { lastLines } from "./nats-server.js";

/** A run that lasted this long resets the backoff. */
export const STABLE_MS = 30_000;
export const BACKOFF_FIRST_MS = 500;
export const BACKOFF_MAX_MS = 10_000;

/** The liveness probe's cadence (see the header). */
export const LIVENESS = { intervalMs: 5_000, timeoutMs: 3_000, failures: 3 } as const;

/** One started process: its child, and how to stop it (SIGTERM, then SIGKILL). */
export interface Started {
  child: ChildProcess;
  stop(): Promise<void>;
  /** Resolves true when the process answered (see `livenessProbe`); none: not probed. */
  probe?: () => Promise<boolean>;
}

/**
 * The liveness probe of a Meridian process from the fields of its listening
 * line: GET /healthz of a node (`registry`), the front door (`frontDoor`), or
 * a peer's or worker's metrics server (`metrics`); undefined without any of them.
 */
export function livenessProbe(
  info: Record<string, string>,
  timeoutMs: number = LIVENESS.timeoutMs,
  env: NodeJS.ProcessEnv = process.env,
): (() => Promise<boolean>) | undefined {
  if (env.MERIDIAN_UP_LIVENESS === "off") return undefined;
  // Peers and workers serve /healthz beside /metrics: a small JSON answer, where /metrics
  // rendered every metric of the process each probe (issue 14, cost at rest).
  const base = info.registry ?? info.frontDoor ?? info.metrics;
  const url = base !== undefined ? `${base}/healthz` : undefined;
  return url ? () => httpAnswers(url, timeoutMs) : undefined;
}

/**
 * True when `url` answers a GET with any status within `timeoutMs`. An
 * https endpoint's certificate is not checked: this asks whether the process
 * answers, it trusts nothing it says.
 */
export function httpAnswers(url: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const get = url.startsWith("https:") ? httpsRequest : httpRequest;
    const req = get(url, { method: "GET", rejectUnauthorized: false, agent: false }, (res) => {
      res.resume();
      req.destroy();
      resolve(true);
    });
    req.setTimeout(timeoutMs, () => req.destroy());
    req.once("error", () => resolve(false));
    req.once("close", () => resolve(false));
    req.end();
  });
}

type Log = (line: string) => void;

/** One process of the mesh, kept running (see the header). */
export class Supervised {
  private current: Started | undefined;
  private startedAt = 0;
  private delay = BACKOFF_FIRST_MS;
  private timer: NodeJS.Timeout | undefined;
  private starting: Promise<void> | undefined;
  /** Whether it should be running: false once held or shut down. */
  private wanted = false;
  private shutDown = false;
  private holding = false;

  constructor(
    /** e.g. "node of a", "nats-server of a", "front door". */
    readonly what: string,
    readonly role: string,
    private readonly logFile: string,
    private readonly startOnce: () => Promise<Started>,
    private readonly log: Log,
    /** Called after every start and stop (the pids changed). */
    private readonly changed: () => void,
    /** A run this long resets the backoff (tests shorten it). */
    private readonly stableMs = STABLE_MS,
    /** The liveness probe's cadence (tests shorten it). */
    private readonly liveness: { intervalMs: number; failures: number } = LIVENESS,
  ) {}

  get pid(): number | undefined {
    const c = this.current?.child;
    return c !== undefined && c.exitCode === null && c.signalCode === null ? c.pid : undefined;
  }

  /** Held down by `hold` (region stop) and not released since. */
  get held(): boolean {
    return this.holding;
  }

  /** The first start: throws on failure (nothing is retried). */
  async start(): Promise<void> {
    this.wanted = true;
    await this.startNow();
  }

  /** Stop it and keep it down (no restarts) until `release`. */
  async hold(): Promise<void> {
    this.wanted = false;
    this.holding = true;
    await this.settle();
    await this.current?.stop();
    this.changed();
  }

  /**
   * Start it again after `hold` and wait until it is ready. A failed start
   * is thrown, and retried with backoff in the background as after a crash.
   */
  async release(): Promise<void> {
    if (this.shutDown) throw new Error("up is stopping");
    await this.settle();
    this.wanted = true;
    this.holding = false;
    this.delay = BACKOFF_FIRST_MS;
    if (this.pid !== undefined) return;
    try {
      await this.startNow();
    } catch (err) {
      if (this.wanted) {
        this.log(`${this.what} did not start: ${(err as Error).message}; retrying in ${this.delay / 1000} s`);
        this.schedule();
      }
      throw err;
    }
  }

  /** Stop for good (`up` is stopping). */
  async shutdown(): Promise<void> {
    this.shutDown = true;
    this.wanted = false;
    await this.settle();
    await this.current?.stop();
  }

  /** No restart pending or under way. */
  private async settle(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.starting;
  }

  /**
   * One start, tracked so `settle` waits for it: a start that completes
   * after a hold or a shutdown is stopped at once (never left running
   * unsupervised, e.g. by an `up` that is exiting).
   */
  private startNow(): Promise<void> {
    const attempt = this.startOnce().then(async (started) => {
      if (!this.wanted) {
        await started.stop();
        throw new Error(`${this.what} was stopped while it started`);
      }
      this.adopt(started);
    });
    const tracked = attempt.then(
      () => {},
      () => {},
    );
    this.starting = tracked;
    void tracked.then(() => {
      if (this.starting === tracked) this.starting = undefined;
    });
    return attempt;
  }

  private adopt(started: Started): void {
    this.current = started;
    this.startedAt = Date.now();
    this.changed();
    const pid = started.child.pid;
    started.child.once("exit", (code, signal) => {
      if (!this.wanted || this.current !== started) return;
      if (Date.now() - this.startedAt >= this.stableMs) this.delay = BACKOFF_FIRST_MS;
      const tail = lastLines(this.logFile, 10);
      this.log(
        `${this.what} (pid ${pid}) exited (${code ?? signal}); restarting in ${this.delay / 1000} s${tail === "" ? "" : `\n${tail}`}`,
      );
      this.changed();
      this.schedule();
    });
    if (started.probe !== undefined) this.watch(started, started.probe);
  }

  /** Probe `started` while it is the current run; SIGKILL it after too many unanswered probes. */
  private watch(started: Started, probe: () => Promise<boolean>): void {
    const { child } = started;
    const current = () =>
      this.wanted && this.current === started && child.exitCode === null && child.signalCode === null;
    let failures = 0;
    let timer: NodeJS.Timeout | undefined;
    const next = () => {
      timer = setTimeout(async () => {
        if (!current()) return;
        const answered = await probe();
        if (!current()) return;
        failures = answered ? 0 : failures + 1;
        if (failures < this.liveness.failures) return next();
        this.log(
          `${this.what} (pid ${child.pid}) answered none of ${failures} liveness probes in a row ` +
            `(${this.liveness.intervalMs / 1000} s apart); killing it (SIGKILL)`,
        );
        child.kill("SIGKILL");
      }, this.liveness.intervalMs);
      timer.unref();
    };
    child.once("exit", () => clearTimeout(timer));
    next();
  }

  /** A restart after the current backoff, which doubles (capped) for the next one. */
  private schedule(): void {
    const delay = this.delay;
    this.delay = Math.min(this.delay * 2, BACKOFF_MAX_MS);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.wanted) return;
      this.startNow().then(
        () => this.log(`${this.what} restarted (pid ${this.pid})`),
        (err) => {
          if (!this.wanted) return;
          this.log(
            `${this.what} failed to restart: ${(err as Error).message}; retrying in ${this.delay / 1000} s`,
          );
          this.schedule();
        },
      );
    }, delay);
  }
}

/** A region's processes, in start order (nats-servers first). */
export interface SupervisedRegion {
  name: string;
  processes: Supervised[];
}

/** The pids of a set of processes by role; several of one role (nats-servers of a cluster) as an array. */
export function pidsOf(processes: Supervised[]): Record<string, number | number[] | null> {
  const out: Record<string, number | number[] | null> = {};
  for (const role of new Set(processes.map((p) => p.role))) {
    const pids = processes.filter((p) => p.role === role).map((p) => p.pid ?? null);
    out[role] = pids.length === 1 ? pids[0]! : (pids as number[]);
  }
  return out;
}

/** The file `meridian region` reads (see the header). */
export function controlFile(dataDir: string): string {
  return join(dataDir, "up.json");
}

export interface ControlState {
  pid: number;
  control: string;
  token: string;
  regions: Record<string, { held: boolean; pids: Record<string, number | number[] | null> }>;
  frontDoor?: { pids: Record<string, number | number[] | null> };
  /** `up --s3`: the mesh's S3 server (cli/up-s3.ts). */
  s3?: { endpoint: string; pids: Record<string, number | number[] | null> };
}

/**
 * The control endpoint and <data>/up.json. `regions` and `frontDoor` are
 * read when the state is written, so processes added later count.
 */
export class Control {
  private readonly token = randomBytes(32).toString("base64url");
  private server: Server | undefined;
  private url = "";
  /** One operation per region at a time. */
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(
    private readonly dataDir: string,
    private readonly regions: SupervisedRegion[],
    private readonly frontDoor: () => Supervised | undefined,
    private readonly s3: () => { server: Supervised; endpoint: string } | undefined = () => undefined,
  ) {}

  async listen(): Promise<void> {
    const server = createServer((req, res) => {
      const given = Buffer.from(req.headers.authorization ?? "");
      const expected = Buffer.from(`Bearer ${this.token}`);
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        res.writeHead(401).end();
        return;
      }
      const url = new URL(req.url ?? "/", "http://control");
      const m = /^\/regions\/([^/]+)\/(stop|start)$/.exec(url.pathname);
      // ?only=node,peer: stop only those roles (e.g. the node, for `meridian rebuild`, which needs NATS).
      const only = url.searchParams
        .get("only")
        ?.split(",")
        .filter((r) => r !== "");
      if (req.method !== "POST" || m === null) {
        res.writeHead(404).end();
        return;
      }
      let name: string;
      try {
        name = decodeURIComponent(m[1]!);
      } catch {
        res.writeHead(400).end();
        return;
      }
      const region = this.regions.find((r) => r.name === name);
      // The caller may go away mid-operation: the operation still completes.
      res.on("error", () => {});
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      const send = (o: object) => res.write(`${JSON.stringify(o)}\n`);
      if (region === undefined) {
        send({ error: `no region ${name} in this mesh` });
        res.end();
        return;
      }
      const roles = new Set(region.processes.map((p) => p.role));
      const unknownRole = only?.find((r) => !roles.has(r));
      if (unknownRole !== undefined) {
        send({
          error: `region ${region.name} has no process ${unknownRole} (it has ${[...roles].join(", ")})`,
        });
        res.end();
        return;
      }
      const run = m[2] === "stop" ? () => this.stop(region, only, send) : () => this.start(region, send);
      const previous = this.queues.get(region.name) ?? Promise.resolve();
      const next = previous.then(run).then(
        () => send({ done: true }),
        (err) => send({ error: (err as Error).message }),
      );
      this.queues.set(region.name, next);
      void next.finally(() => res.end());
    });
    server.keepAliveTimeout = 1_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    server.unref();
    this.server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    this.write();
  }

  /** Stop serving and remove <data>/up.json (`up` is stopping: no pids there are current any more). */
  close(): void {
    this.server?.close();
    this.server?.closeAllConnections();
    if (this.url !== "") rmSync(controlFile(this.dataDir), { force: true });
    this.url = "";
  }

  /** Rewrite <data>/up.json (atomically: a reader never sees half a file). */
  write(): void {
    if (this.url === "") return;
    const state: ControlState = {
      pid: process.pid,
      control: this.url,
      token: this.token,
      regions: Object.fromEntries(
        this.regions.map((r) => [
          r.name,
          { held: r.processes.some((p) => p.held), pids: pidsOf(r.processes) },
        ]),
      ),
    };
    const fd = this.frontDoor();
    if (fd !== undefined) state.frontDoor = { pids: pidsOf([fd]) };
    const s3 = this.s3();
    if (s3 !== undefined) state.s3 = { endpoint: s3.endpoint, pids: pidsOf([s3.server]) };
    const file = controlFile(this.dataDir);
    writeFileSync(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  }

  /** Worker, peer, node, then the nats-servers: the reverse of the start order. */
  private async stop(
    region: SupervisedRegion,
    only: string[] | undefined,
    send: (o: object) => void,
  ): Promise<void> {
    for (const p of [...region.processes].reverse()) {
      if (only !== undefined && !only.includes(p.role)) continue;
      const pid = p.pid;
      send({ progress: `stopping ${p.what}${pid === undefined ? "" : ` (pid ${pid})`}` });
      await p.hold();
    }
    const what = only === undefined ? `region ${region.name} is` : `${only.join(", ")} of ${region.name}:`;
    send({ progress: `${what} stopped and held down until 'meridian region start ${region.name}'` });
  }

  private async start(region: SupervisedRegion, send: (o: object) => void): Promise<void> {
    for (const p of region.processes) {
      send({ progress: `starting ${p.what}` });
      await p.release();
      send({ progress: `${p.what} is ready (pid ${p.pid})` });
    }
  }
}
