/**
 * Start-up is quiet when nothing is wrong (issue 11, finding 10): a real
 * `meridian up` of three regions, on a fresh data directory and again on the
 * same one, with pushes through the front door that fill the replication
 * workers' pipelines. No process may log at warn or above (pino level >= 40),
 * no nats-server a [WRN]/[ERR] line, and none a Node `Warning:` (e.g. a
 * MaxListenersExceededWarning) — in its log file under the data directory or
 * on `up`'s own stderr. Regions start one after another, so each region's
 * peer, worker and node see the later ones refuse for a few seconds: that is
 * start-up, not a fault (protocol/startup-grace.ts).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { processAlive } from "../../testing/faults.js";
import { type After, CLI_ENTRY, cleanupStack, eventually, tempDir } from "../../testing/harness.js";
import { OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";
import { freePortBlock } from "../../testing/ports.js";

const REGIONS = ["a", "b", "c"];

interface Up {
  frontDoor: string;
  registries: string[];
  /** The replication worker's pid, per region. */
  workers: Map<string, number>;
  stderr: () => string;
  stop: () => Promise<void>;
}

async function up(after: After, data: string, base: number): Promise<Up> {
  const child: ChildProcess = spawn(
    process.execPath,
    [CLI_ENTRY, "up", "--regions", REGIONS.join(","), "--base-port", String(base), "--data", data],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr += d;
  });
  const exit = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const pids: number[] = [];
  after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exit;
    for (const pid of pids) if (processAlive(pid)) process.kill(pid, "SIGKILL");
  });
  const registries: string[] = [];
  const workers = new Map<string, number>();
  const frontDoor = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`up not ready in 60 s: ${stderr}`)), 60_000);
    void exit.then(() => {
      clearTimeout(timer);
      reject(new Error(`up exited before ready: ${stderr}`));
    });
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const msg = JSON.parse(line) as {
        ready?: true;
        region?: string;
        registry?: string;
        frontDoor?: string;
        pids?: Record<string, number>;
      };
      pids.push(...Object.values(msg.pids ?? {}));
      if (msg.registry !== undefined) registries.push(msg.registry);
      if (msg.region !== undefined && msg.pids?.worker !== undefined)
        workers.set(msg.region, msg.pids.worker);
      if (msg.ready) {
        clearTimeout(timer);
        resolve(msg.frontDoor!);
      }
    });
  });
  return {
    frontDoor,
    registries,
    workers,
    stderr: () => stderr,
    stop: async () => {
      child.kill("SIGTERM");
      await exit;
    },
  };
}

/**
 * Push `count` images to region b, into two repositories, while region a's
 * worker is held (SIGSTOP, a second or two), then let it go and wait until
 * every region holds them: a's worker then finds a backlog of b's events and
 * fills its pipeline (16 events of one source in flight), as after any outage
 * or a burst of pushes.
 */
async function pushAndConverge(run: Up, prefix: string, count: number): Promise<void> {
  const client = new OciClient(run.registries[1]!);
  const worker = run.workers.get("a")!;
  const pushed: Array<{ repo: string; digest: string }> = [];
  process.kill(worker, "SIGSTOP");
  try {
    await Promise.all(
      [0, 1].map(async (r) => {
        for (let i = r; i < count; i += 2) {
          const repo = `quiet/${prefix}${r}`;
          pushed.push({ repo, digest: (await client.pushRandomImage(repo, `v${i}`, 3)).digest });
        }
      }),
    );
  } finally {
    process.kill(worker, "SIGCONT");
  }
  for (const registry of run.registries) {
    await eventually(
      async () => {
        for (const { repo, digest } of pushed) {
          // What the region itself holds (only-if-cached), not what it could fetch on miss.
          const res = await fetch(`${registry}/v2/${repo}/manifests/${digest}`, {
            method: "HEAD",
            headers: { accept: OCI_MANIFEST, "cache-control": "only-if-cached" },
          });
          if (res.status !== 200) return false;
        }
        return true;
      },
      30_000,
      100,
    );
  }
}

/** Every line at warn or above, of every process of the mesh, and Node's warnings. */
function loud(data: string, upStderr: string): string[] {
  const files = [
    join(data, "front-door.log"),
    ...REGIONS.flatMap((r) => ["nats", "node", "peer", "worker"].map((p) => join(data, r, `${p}.log`))),
  ];
  const lines: string[] = [];
  for (const file of files) {
    assert.ok(existsSync(file), `${file} exists`);
    for (const line of readFileSync(file, "utf8").split("\n")) {
      if (isLoud(line)) lines.push(`${file}: ${line.slice(0, 600)}`);
    }
  }
  for (const line of upStderr.split("\n")) if (isLoud(line)) lines.push(`up stderr: ${line.slice(0, 600)}`);
  return lines;
}

function isLoud(line: string): boolean {
  // Node's own warnings ("(node:PID) MaxListenersExceededWarning: …"), nats-server's levels.
  if (/\(node:\d+\)|Warning:|\[WRN\]|\[ERR\]|\[FTL\]/.test(line)) return true;
  if (!line.startsWith("{")) return false;
  try {
    return (JSON.parse(line) as { level?: number }).level! >= 40;
  } catch {
    return false;
  }
}

test("a fresh start and a restart of the same data log no warning and no error", async (t) => {
  const after = cleanupStack(t);
  const data = tempDir(after, "meridian-quiet-");
  const base = await freePortBlock([...REGIONS.flatMap((_, i) => [0, 1, 2, 3, 4].map((o) => 10 * i + o)), 5]);

  const fresh = await up(after, data, base);
  await pushAndConverge(fresh, "fresh", 10);
  await fresh.stop();
  assert.deepEqual(loud(data, fresh.stderr()), [], "a fresh start is quiet");

  const again = await up(after, data, base);
  await pushAndConverge(again, "again", 10);
  await again.stop();
  assert.deepEqual(loud(data, again.stderr()), [], "a restart is quiet");
});
