/**
 * `meridian up`'s liveness probe (cli/supervisor.ts LIVENESS): a process
 * frozen with SIGSTOP never exits, so restarting on exit alone left the
 * region's registry silent for as long as it stayed frozen. With two real
 * regions, region a's node and peer are frozen: `up` kills each (SIGKILL)
 * after its probes go unanswered, logs why, and starts it again; the node
 * answers again with a new pid, and no other process was touched.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { processAlive } from "../../testing/faults.js";
import { cleanupStack, eventually } from "../../testing/harness.js";
import { startMesh } from "../../testing/mesh.js";
import { type ControlState, LIVENESS } from "../supervisor.js";

function state(dataDir: string): ControlState {
  return JSON.parse(readFileSync(join(dataDir, "up.json"), "utf8")) as ControlState;
}

async function answers(url: string): Promise<boolean> {
  try {
    return (await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(2_000) })).status === 200;
  } catch {
    return false;
  }
}

test("a frozen node and peer under up are killed after their liveness probes fail, and restarted", async (t) => {
  const after = cleanupStack(t);
  const mesh = await startMesh(after, ["a", "b"]);
  let upLog = "";
  mesh.child.stderr!.on("data", (d: Buffer) => {
    upLog += d.toString();
  });
  const before = state(mesh.dataDir);
  const a = before.regions.a!.pids;
  const frozen = [a.node as number, a.peer as number];
  after(() => {
    for (const pid of frozen) if (processAlive(pid)) process.kill(pid, "SIGCONT");
  });
  const registry = mesh.regions.get("a")!.registry;
  assert.ok(await answers(registry));
  const frozenAt = Date.now();
  for (const pid of frozen) process.kill(pid, "SIGSTOP");

  // The stated window: LIVENESS.failures probes in a row unanswered, each given
  // timeoutMs, intervalMs apart; then a restart (backoff 0.5 s) and the node's start.
  const window = LIVENESS.failures * (LIVENESS.intervalMs + LIVENESS.timeoutMs);
  await eventually(
    () => {
      const pids = state(mesh.dataDir).regions.a!.pids;
      return [pids.node, pids.peer].every((p) => typeof p === "number" && !frozen.includes(p));
    },
    window + 30_000,
    250,
  );
  await eventually(() => answers(registry), 30_000, 250);
  const backMs = Date.now() - frozenAt;
  t.diagnostic(`the frozen node answers again (new pid) ${backMs} ms after SIGSTOP`);
  assert.ok(backMs >= (LIVENESS.failures - 1) * LIVENESS.intervalMs, "not before its probes had failed");
  for (const pid of frozen) assert.equal(processAlive(pid), false, `frozen pid ${pid} was killed`);
  for (const what of ["node of a", "peer of a"]) {
    assert.match(
      upLog,
      new RegExp(`${what} \\(pid \\d+\\) answered none of ${LIVENESS.failures} liveness probes`),
    );
  }
  // Nothing else was touched: region a's nats-server and worker, every process of b.
  const now = state(mesh.dataDir);
  assert.deepEqual(now.regions.b!.pids, before.regions.b!.pids);
  assert.equal(now.regions.a!.pids.nats, a.nats);
  assert.equal(now.regions.a!.pids.worker, a.worker);
  assert.deepEqual(now.frontDoor, before.frontDoor);
  assert.equal(mesh.child.exitCode, null, "up keeps running");
});
