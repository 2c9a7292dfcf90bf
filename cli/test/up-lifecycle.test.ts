/**
 * `meridian up`'s safety interlocks and lifecycle (issue 11, findings 5 and 6):
 * a second `up` on the same data refuses at once naming the first's pid and
 * starts no nats-server on the live store; a process that fails to start
 * shows its last log lines; and the mesh dies with its supervisor, whoever is
 * signalled: the parent of `up` going away, or `up` itself killed with SIGKILL.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { processAlive, waitWritable, within } from "../../testing/faults.js";
import {
  type After,
  CLI_ENTRY,
  cleanupStack,
  eventually,
  REPO_ROOT,
  runCli,
  tempDir,
} from "../../testing/harness.js";
import { freePortBlock } from "../../testing/ports.js";

interface Started {
  child: ChildProcess;
  base: number;
  /** Every pid the status lines printed. */
  pids: number[];
  registries: string[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: () => string;
}

async function upPorts(regions: number): Promise<number> {
  return freePortBlock([
    ...Array.from({ length: regions }, (_, i) => [0, 1, 2, 3, 4].map((o) => 10 * i + o)).flat(),
    5,
  ]);
}

/**
 * Start `meridian up` (directly, or under `parent`: a node process that runs
 * it as its child, as npm runs `npm start`), read its lines up to ready, and
 * kill whatever is left afterwards.
 */
async function start(
  after: After,
  regions: string[],
  data: string,
  via: "direct" | "parent" | "npm" = "direct",
): Promise<Started> {
  const base = await upPorts(regions.length);
  const args = [CLI_ENTRY, "up", "--regions", regions.join(","), "--base-port", String(base), "--data", data];
  // npm runs the start script with `sh -c` and passes SIGINT/SIGTERM on to that shell.
  const npmScript = (
    JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")).scripts.start as string
  )
    .replace("node scripts/bootstrap.mjs", "true")
    .replace("--data .meridian", `--regions ${regions.join(",")} --base-port ${base} --data ${data}`);
  const npmLike = `const c = require("node:child_process").spawn("sh", ["-c", ${JSON.stringify(npmScript)}], { stdio: "inherit", cwd: ${JSON.stringify(REPO_ROOT)} });
for (const s of ["SIGINT", "SIGTERM"]) process.on(s, () => c.kill(s));
c.on("exit", (code) => process.exit(code ?? 1));`;
  const child =
    via === "npm"
      ? spawn(process.execPath, ["-e", npmLike], { stdio: ["ignore", "pipe", "pipe"] })
      : via === "parent"
        ? spawn(
            process.execPath,
            [
              "-e",
              `require("node:child_process").spawn(process.execPath, ${JSON.stringify(args)}, { stdio: "inherit" }); setInterval(() => {}, 1e6);`,
            ],
            { stdio: ["ignore", "pipe", "pipe"] },
          )
        : spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr = (stderr + d).slice(-8000);
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const pids: number[] = [];
  const registries: string[] = [];
  after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exit;
    for (const pid of pids) if (processAlive(pid)) process.kill(pid, "SIGKILL");
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`up not ready in 60 s: ${stderr}`)), 60_000);
    void exit.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`up exited (${code ?? signal}) before ready: ${stderr}`));
    });
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const msg = JSON.parse(line) as { ready?: true; registry?: string; pids?: Record<string, number> };
      pids.push(...Object.values(msg.pids ?? {}));
      if (msg.registry !== undefined) registries.push(msg.registry);
      if (msg.ready) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return { child, base, pids, registries, exit, stderr: () => stderr };
}

function natsStarts(data: string, region: string): number {
  return readFileSync(join(data, region, "nats.log"), "utf8").split("Starting nats-server").length - 1;
}

test("a second up on the same data refuses at once, naming the first's pid, and starts no nats-server on its store", async (t) => {
  const after = cleanupStack(t);
  const data = tempDir(after, "meridian-up-lock-");
  const first = await start(after, ["solo"], data);
  const upPid = first.child.pid!;
  const startsBefore = natsStarts(data, "solo");
  assert.equal(startsBefore, 1);

  const base = await upPorts(1);
  const second = await runCli(
    ["up", "--regions", "solo", "--base-port", String(base), "--data", data],
    30_000,
  );
  assert.notEqual(second.code, 0, "the second up fails");
  assert.match(second.stderr, new RegExp(`in use by process ${upPid}`), second.stderr);
  assert.equal(natsStarts(data, "solo"), startsBefore, "no second nats-server opened the store");
  await waitWritable(first.registries[0]!);
  for (const pid of first.pids) assert.ok(processAlive(pid), `the first mesh's pid ${pid} still runs`);
});

test("up shows the last log lines of a process that fails to start", async (t) => {
  const after = cleanupStack(t);
  const data = tempDir(after, "meridian-up-fail-");
  const base = await upPorts(1);
  // Something else holds the registry port.
  const squatter = createServer();
  await new Promise<void>((resolve) => squatter.listen(base, "127.0.0.1", resolve));
  after(() => new Promise<void>((resolve) => squatter.close(() => resolve())));
  const run = await runCli(["up", "--regions", "solo", "--base-port", String(base), "--data", data], 30_000);
  assert.notEqual(run.code, 0);
  assert.match(run.stderr, /node of solo exited/);
  assert.match(run.stderr, /EADDRINUSE|address already in use/, `the cause is on stderr: ${run.stderr}`);
});

test("up shows nats-server's log lines when it fails to start (its port is taken)", async (t) => {
  const after = cleanupStack(t);
  const data = tempDir(after, "meridian-up-natsfail-");
  const base = await upPorts(1);
  const squatter = createServer();
  await new Promise<void>((resolve) => squatter.listen(base + 1, "127.0.0.1", resolve));
  after(() => new Promise<void>((resolve) => squatter.close(() => resolve())));
  const run = await runCli(["up", "--regions", "solo", "--base-port", String(base), "--data", data], 30_000);
  assert.notEqual(run.code, 0);
  assert.match(run.stderr, /address already in use/, `the cause is on stderr: ${run.stderr}`);
});

test("SIGTERM to the process running up (as npm runs `npm start`) stops every process up printed", async (t) => {
  const after = cleanupStack(t);
  const data = tempDir(after, "meridian-up-parent-");
  const up = await start(after, ["solo"], data, "parent");
  assert.equal(up.pids.length, 2, "nats and node");
  for (const pid of up.pids) assert.ok(processAlive(pid));
  // The parent dies without passing the signal on (the worst case: npm's shell killed).
  up.child.kill("SIGTERM");
  await up.exit;
  await eventually(() => up.pids.every((pid) => !processAlive(pid)), 30_000, 200);
});

test("SIGKILL to up itself: every process it started exits", async (t) => {
  const after = cleanupStack(t);
  const data = tempDir(after, "meridian-up-kill9-");
  const up = await start(after, ["a", "b"], data);
  assert.equal(up.pids.length, 9, "per region nats, node, peer, worker; and the front door");
  for (const pid of up.pids) assert.ok(processAlive(pid));
  up.child.kill("SIGKILL");
  await up.exit;
  await eventually(() => up.pids.every((pid) => !processAlive(pid)), 30_000, 200);
  // And the data is free again: a new up on it starts.
  const again = await start(after, ["a", "b"], data);
  assert.equal(again.pids.length, 9);
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  test(`${signal} to npm running the package's start script stops every process up printed`, async (t) => {
    const after = cleanupStack(t);
    const data = tempDir(after, "meridian-up-npm-");
    const up = await start(after, ["solo"], data, "npm");
    for (const pid of up.pids) assert.ok(processAlive(pid));
    up.child.kill(signal);
    await eventually(() => up.pids.every((pid) => !processAlive(pid)), 30_000, 200);
    assert.notEqual(await within(up.exit, 10_000), "timeout", "and npm itself exits");
  });
}

/** The process group of `pid` (the fifth field of /proc/PID/stat). */
function processGroup(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
}

test("up's children each run in a process group of their own", async (t) => {
  // Sharing up's group, a child stopped with SIGSTOP (a gray-failure drill) made the
  // group an orphaned one with a stopped member; the next exit in it had the kernel
  // send the whole group SIGHUP, which killed the nodes and had up stop the mesh.
  // That Meridian's processes also survive a stray SIGHUP: node/test/sighup.test.ts.
  const after = cleanupStack(t);
  const data = tempDir(after, "meridian-up-groups-");
  const mesh = await start(after, ["a", "b"], data);
  const upGroup = processGroup(mesh.child.pid!);
  assert.ok(mesh.pids.length >= 9, `pids: ${mesh.pids}`);
  for (const pid of mesh.pids) {
    assert.equal(processGroup(pid), pid, `pid ${pid} leads its own group`);
    assert.notEqual(processGroup(pid), upGroup);
  }
});
