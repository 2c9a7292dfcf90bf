/**
 * The processes `meridian up` (./up.ts) starts and stops: a Meridian
 * process spawned detached in a process group of its own with
 * MERIDIAN_PARENT_PID (it exits once `up` is gone: node/parent-watch.ts),
 * its stderr to its log, ready at its `{"event":"listening",…}` line; its
 * stop (SIGTERM, SIGKILL after 10 s); and the watchdog that stops the
 * nats-servers if `up` dies without doing so.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { createInterface } from "node:readline";

/**
 * This process's environment without NATS credentials: each process gets
 * its own identity's (natsClientEnv), never a mix with ones `up` inherited.
 */
function inherited(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !k.startsWith("MERIDIAN_NATS_") || k === "MERIDIAN_NATS_SERVER",
    ),
  );
}

/**
 * How long a process may take to print its listening line: one that hangs at
 * start is killed and its start fails (a restart of ./supervisor.ts would
 * otherwise wait forever, and with it `region stop|start`).
 */
export const READY_WITHIN_MS = 60_000;

/**
 * V8 flags of the processes `up` starts, by role (issue 14, "Cost at rest" in
 * benchmarks/README.md). `--max-semi-space-size` caps the young generation
 * only: V8 grows each of its two semi-spaces from 1 MiB up to this cap (16 MiB
 * by default on 64-bit) while a process allocates fast, i.e. during start-up,
 * and an idle process that seldom collects keeps them, about 32 MiB of RSS
 * each that rest does not need. The old generation's limit is untouched, so
 * nothing can run out of memory sooner; a smaller young generation only
 * means more, smaller scavenges while allocating fast. The peer and the
 * worker carry blob bytes in Buffers (outside the JS heap) and allocate few
 * JS objects per byte, so for them that cost is small. The node serves
 * clients' small requests at high rates, where scavenge frequency shows: its
 * cap is 8 MiB, half the default, where its CPU per manifest GET (64
 * connections, wrk) measured the same as with the default (median of six
 * interleaved runs 96 µs against 95 µs; 4 MiB cost 104 µs, so not lower)
 * and a resting node keeps up to 16 MiB less. The front door keeps V8's
 * defaults (it rests at ~30 MiB of its own).
 */
export const V8_FLAGS: Readonly<Record<string, readonly string[]>> = {
  node: ["--max-semi-space-size=8"],
  peer: ["--max-semi-space-size=2"],
  worker: ["--max-semi-space-size=2"],
};

/** Spawn a Meridian process and wait for its {"event":"listening",…} line. */
export async function startProcess(
  entry: string,
  what: string,
  logFile: string,
  env: Record<string, string>,
  v8Flags: readonly string[] = [],
): Promise<{ child: ChildProcess; info: Record<string, string> }> {
  const log = createWriteStream(logFile, { flags: "a" });
  const child = spawn(process.execPath, [...v8Flags, entry], {
    stdio: ["ignore", "pipe", "pipe"],
    // Every child in a process group of its own. Sharing `up`'s group, a child
    // stopped by an operator (kill -STOP, a frozen VM's worth of gray failure)
    // made the group an orphaned one with a stopped member as soon as anything
    // in it exited, and the kernel then sends the whole group SIGHUP: nodes
    // died and `up` stopped the mesh. `up` stops its children itself on
    // SIGINT/SIGTERM/SIGHUP, and they exit once `up` is gone (parent watch).
    detached: true,
    // MERIDIAN_PARENT_PID: the process exits once `up` is gone (node/parent-watch.ts).
    env: { ...inherited(), ...env, MERIDIAN_PARENT_PID: String(process.pid) },
  });
  child.stderr!.pipe(log);
  // The cause of a failed start (e.g. "address already in use") goes into the error, not only the log.
  let tail = "";
  const keepTail = (d: Buffer) => {
    tail = (tail + d).slice(-4000);
  };
  child.stderr!.on("data", keepTail);
  const lines = createInterface({ input: child.stdout! });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, READY_WITHIN_MS);
  return new Promise((resolvePromise, reject) => {
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      // stderr may still hold the last words when "exit" fires: wait for it to close.
      const report = () => {
        const last = tail.trimEnd().split("\n").slice(-10);
        reject(
          new Error(
            `${what} ${timedOut ? `did not listen within ${READY_WITHIN_MS / 1000} s (killed)` : `exited with ${code} before listening`}; last lines of ${logFile}:\n${last.map((l) => `  ${l}`).join("\n")}`,
          ),
        );
      };
      if (child.stderr!.readableEnded) report();
      else child.stderr!.once("close", report);
    };
    child.once("exit", onExit);
    lines.on("line", (line) => {
      try {
        const msg = JSON.parse(line);
        if (msg.event === "listening") {
          clearTimeout(timer);
          child.off("exit", onExit);
          child.stderr!.off("data", keepTail);
          resolvePromise({ child, info: msg });
        }
      } catch {
        // not a status line
      }
    });
  });
}

/**
 * A watchdog for the nats-servers (they cannot watch their parent): `up`
 * writes each server's pid to its stdin, and `-PID` once that server has
 * exited (a restarted server has a new pid: a dead one's pid may be reused by
 * an unrelated process, which must never get the watchdog's signal); when that pipe closes while it still
 * holds pids (`up` died, even by SIGKILL) it stops them (SIGTERM, SIGKILL
 * after 5 s) and exits. It ignores SIGINT/SIGTERM/SIGHUP (a terminal's Ctrl-C
 * reaches the whole group: `up` stops the servers itself then and kills the
 * watchdog).
 */
const WATCHDOG = `
for (const s of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(s, () => {});
const pids = new Set();
let buf = "";
process.stdin.on("data", (d) => {
  buf += d;
  const lines = buf.split("\\n");
  buf = lines.pop();
  for (const l of lines) {
    if (Number(l) > 0) pids.add(Number(l));
    else if (Number(l) < 0) pids.delete(-Number(l));
  }
});
process.stdin.on("close", () => {
  const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };
  for (const pid of pids) try { process.kill(pid, "SIGTERM"); } catch {}
  const deadline = Date.now() + 5000;
  const check = setInterval(() => {
    const left = [...pids].filter(alive);
    if (left.length > 0 && Date.now() < deadline) return;
    for (const pid of left) try { process.kill(pid, "SIGKILL"); } catch {}
    clearInterval(check);
    process.exit(0);
  }, 100);
});
`;

export function startNatsWatchdog(): ChildProcess {
  const watchdog = spawn(process.execPath, ["-e", WATCHDOG], { stdio: ["pipe", "ignore", "ignore"] });
  // Neither keeps `up` running.
  watchdog.unref();
  (watchdog.stdin as unknown as { unref(): void }).unref();
  watchdog.stdin!.on("error", () => {});
  return watchdog;
}

export function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolvePromise) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolvePromise();
    });
    child.kill("SIGTERM");
  });
}
