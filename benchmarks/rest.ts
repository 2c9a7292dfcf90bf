/**
 * Cost at rest (issue 14, item 5): what the default mesh costs doing nothing.
 *
 *   node dist/benchmarks/rest.js [--rounds N] [--window SEC] [--settle SEC] [--regions a,b,c]
 *
 * Starts the default mesh the way `npm start` does (`bin/meridian up --data
 * <tmp>`, three regions, no other flags, the default environment; only the
 * base port is a free one), waits for the ready line plus `--settle` seconds,
 * then, `--rounds` times, reads utime+stime (/proc/<pid>/stat) of every
 * process in the ready lines (nats-servers included) plus `up` itself and its
 * nats watchdog at the start and end of a `--window` second window, and VmRSS
 * (/proc/<pid>/status), PSS and anonymous memory (/proc/<pid>/smaps_rollup)
 * at its end. VmRSS counts the `node` executable's resident pages (~33–45
 * MiB) in each of the ten Node processes; PSS divides shared pages among
 * every process mapping them, on the whole machine (other Node processes
 * too, so it is a lower bound); the footprint line counts each process's
 * anonymous memory and each executable's pages once. Nothing is sent to
 * the mesh.
 *
 * CPU time a process consumes while idle is barely changed by other load on
 * the machine (it is what its own timers and sockets make it do, not how long
 * it waits for a core), so this measure is robust on a shared, loaded
 * machine; wall-clock figures would not be.
 *
 * Prints, per process kind (nats, node, peer, worker, front door, up,
 * watchdog), CPU % of one core and RSS MiB summed over the regions, medians
 * of the rounds with min–max; the total of the 13 mesh processes the issue
 * counts, and of all 15.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { CLI_ENTRY } from "../testing/harness.js";
import { freePortBlock } from "../testing/ports.js";
import { cpuSeconds, memory, smapsRollup } from "./proc.js";
import { quantiles } from "./spread.js";

const say = (msg: string) => process.stderr.write(`bench rest: ${msg}\n`);

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    window: { type: "string", default: "30" },
    settle: { type: "string", default: "10" },
    regions: { type: "string", default: "" },
  },
});
const rounds = Number(values.rounds);
const windowMs = Number(values.window) * 1000;
const settleMs = Number(values.settle) * 1000;
const regions = values.regions ? values.regions.split(",") : [];
const regionCount = regions.length || 3;

/** Kinds in the order they are printed; `up` and `watchdog` are not among the 13. */
const KINDS = ["nats", "node", "peer", "worker", "frontDoor", "up", "watchdog"] as const;
type Kind = (typeof KINDS)[number];
const MESH_KINDS: Kind[] = ["nats", "node", "peer", "worker", "frontDoor"];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === ppid) out.push(Number(entry));
    } catch {
      // gone
    }
  }
  return out;
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "meridian-rest-"));
  // cli/up.ts regionPorts: B+10i … B+10i+4 per region, B+5 the front door.
  const offsets = [
    ...Array.from({ length: regionCount }, (_, i) => [0, 1, 2, 3, 4].map((o) => 10 * i + o)).flat(),
    5,
  ];
  const base = await freePortBlock([...new Set(offsets)]);
  const args = [CLI_ENTRY, "up", "--data", dir, "--base-port", String(base)];
  if (regions.length > 0) args.push("--regions", regions.join(","));
  const up = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  up.stderr!.on("data", (d) => {
    stderr = (stderr + d).slice(-8000);
  });
  const pids = new Map<number, Kind>();
  const cleanup = async () => {
    if (up.exitCode === null && up.signalCode === null) {
      const exited = new Promise((r) => up.once("exit", r));
      up.kill("SIGTERM");
      const timer = setTimeout(() => up.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const t0 = Date.now();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`mesh did not come up: ${stderr}`)), 120_000);
      up.once("exit", (code) => reject(new Error(`meridian up exited with ${code}: ${stderr}`)));
      createInterface({ input: up.stdout! }).on("line", (line) => {
        const msg = JSON.parse(line);
        const add = (kind: Kind, v: unknown) => {
          for (const pid of [v].flat()) if (typeof pid === "number") pids.set(pid, kind);
        };
        if (msg.region) for (const k of ["nats", "node", "peer", "worker"] as const) add(k, msg.pids?.[k]);
        if (msg.ready) {
          add("frontDoor", msg.pids?.frontDoor);
          clearTimeout(timer);
          resolve();
        }
      });
    });
    say(
      `ready in ${((Date.now() - t0) / 1000).toFixed(1)} s; ${pids.size} processes; settling ${settleMs / 1000} s`,
    );
    pids.set(up.pid!, "up");
    for (const pid of childrenOf(up.pid!))
      if (!pids.has(pid) && cmdline(pid).includes(" -e ")) pids.set(pid, "watchdog");
    await sleep(settleMs);
    type Figures = { cpuPct: number; rssMiB: number; pssMiB: number; anonMiB: number; count: number };
    const perRound: Array<Record<Kind, Figures>> = [];
    /** Per round: the mesh's anonymous memory plus the largest file-backed set of each executable, once. */
    const footprints: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const before = new Map([...pids.keys()].map((pid) => [pid, cpuSeconds(pid)]));
      const filesOnce = new Map<string, number>();
      const start = process.hrtime.bigint();
      await sleep(windowMs);
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      const round = Object.fromEntries(
        KINDS.map((k) => [k, { cpuPct: 0, rssMiB: 0, pssMiB: 0, anonMiB: 0, count: 0 }]),
      ) as Record<Kind, Figures>;
      for (const [pid, kind] of pids) {
        const cpu = cpuSeconds(pid) - before.get(pid)!;
        round[kind].cpuPct += (100 * cpu) / seconds;
        round[kind].rssMiB += memory(pid).rssMiB;
        const smaps = smapsRollup(pid);
        round[kind].pssMiB += smaps.pssMiB;
        round[kind].anonMiB += smaps.anonMiB;
        round[kind].count++;
        if (MESH_KINDS.includes(kind)) {
          const exe = kind === "nats" ? "nats" : "node";
          filesOnce.set(exe, Math.max(filesOnce.get(exe) ?? 0, smaps.fileMiB));
        }
      }
      footprints.push(
        MESH_KINDS.reduce((s, k) => s + round[k].anonMiB, 0) +
          [...filesOnce.values()].reduce((s, v) => s + v, 0),
      );
      perRound.push(round);
      const total = MESH_KINDS.reduce((s, k) => s + round[k].cpuPct, 0);
      say(`round ${r + 1}/${rounds}: mesh ${total.toFixed(2)} % of a core`);
    }
    const median = (xs: number[]) => quantiles(xs).median;
    const fmt = (xs: number[], digits: number) =>
      `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
    const lines = [
      `Cost at rest: ${new Date().toISOString().slice(0, 16)} UTC, ${rounds} rounds × ${windowMs / 1000} s after ready + ${settleMs / 1000} s, load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}`,
      "",
      "| process kind | count | CPU % of one core, summed | RSS MiB, summed | PSS MiB, summed | anonymous MiB, summed |",
      "|---|---|---|---|---|---|",
    ];
    for (const k of KINDS)
      lines.push(
        `| ${k} | ${perRound[0]![k].count} | ${fmt(
          perRound.map((r) => r[k].cpuPct),
          2,
        )} | ${fmt(
          perRound.map((r) => r[k].rssMiB),
          0,
        )} | ${fmt(
          perRound.map((r) => r[k].pssMiB),
          0,
        )} | ${fmt(
          perRound.map((r) => r[k].anonMiB),
          0,
        )} |`,
      );
    const sum = (ks: Kind[], f: "cpuPct" | "rssMiB" | "pssMiB" | "anonMiB") =>
      perRound.map((r) => ks.reduce((s, k) => s + r[k][f], 0));
    const count = (ks: Kind[]) => ks.reduce((s, k) => s + perRound[0]![k].count, 0);
    lines.push(
      `| **mesh (the issue's ${count(MESH_KINDS)})** | ${count(MESH_KINDS)} | **${fmt(sum(MESH_KINDS, "cpuPct"), 2)}** | **${fmt(sum(MESH_KINDS, "rssMiB"), 0)}** | **${fmt(sum(MESH_KINDS, "pssMiB"), 0)}** | **${fmt(sum(MESH_KINDS, "anonMiB"), 0)}** |`,
      `| all, with up and watchdog | ${count([...KINDS])} | ${fmt(sum([...KINDS], "cpuPct"), 2)} | ${fmt(sum([...KINDS], "rssMiB"), 0)} | ${fmt(sum([...KINDS], "pssMiB"), 0)} | ${fmt(sum([...KINDS], "anonMiB"), 0)} |`,
      "",
      "Medians of the rounds (min–max).",
      `The mesh's own memory (its 13 processes' anonymous memory, plus the resident pages of the node and nats-server executables counted once): ${fmt(footprints, 0)} MiB.`,
    );
    process.stdout.write(`${lines.join("\n")}\n`);
  } finally {
    await cleanup();
  }
}

await main();
