/**
 * cli/supervisor.ts's Supervised with real child processes: a process that
 * dies is restarted; failed restarts (a crash loop at start) are retried
 * with a doubling backoff and logged; `hold` cancels a pending restart and
 * keeps the process down until `release`; a process that stops answering
 * its liveness probe (frozen) is killed and restarted.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { processAlive, sleep } from "../../testing/faults.js";
import { cleanupStack, eventually } from "../../testing/harness.js";
import { httpAnswers, livenessProbe, type Started, Supervised } from "../supervisor.js";
import { stopChild } from "../up-processes.js";

function sleeper(): Started {
  const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 600_000)"], { stdio: "ignore" });
  return { child, stop: () => stopChild(child) };
}

test("a dead process is restarted; failing restarts are retried with doubling backoff; hold keeps it down", async (t) => {
  const after = cleanupStack(t);
  const logs: string[] = [];
  let failuresLeft = 0;
  let starts = 0;
  const p = new Supervised(
    "sleeper",
    "sleeper",
    "/nonexistent.log",
    async () => {
      starts++;
      if (failuresLeft > 0) {
        failuresLeft--;
        throw new Error("port taken");
      }
      return sleeper();
    },
    (line) => logs.push(line),
    () => {},
  );
  after(() => p.shutdown());
  await p.start();
  const first = p.pid!;
  failuresLeft = 2;
  process.kill(first, "SIGKILL");
  await eventually(() => p.pid !== undefined && p.pid !== first, 15_000, 50);
  assert.equal(starts, 4, "the first start, two failed restarts, one that worked");
  assert.match(logs[0]!, new RegExp(`sleeper \\(pid ${first}\\) exited \\(SIGKILL\\); restarting in 0.5 s`));
  assert.match(logs[1]!, /failed to restart: port taken; retrying in 1 s/);
  assert.match(logs[2]!, /failed to restart: port taken; retrying in 2 s/);
  assert.match(logs[3]!, /sleeper restarted \(pid \d+\)/);

  // Held while a restart is pending: nothing starts until release.
  const second = p.pid!;
  process.kill(second, "SIGKILL");
  await eventually(() => logs.length === 5, 5_000, 10);
  await p.hold();
  assert.equal(p.held, true);
  await sleep(3_000);
  assert.equal(p.pid, undefined, "held: not restarted");
  assert.equal(starts, 4);
  await p.release();
  assert.ok(p.pid !== undefined && processAlive(p.pid), "released: running again");
  const third = p.pid;
  await p.hold();
  assert.equal(processAlive(third), false, "hold stops a running process");
});

test("a process that finishes starting (region start) after up began stopping is stopped, not left running", async (t) => {
  const after = cleanupStack(t);
  const spawned: number[] = [];
  let slow = false;
  const p = new Supervised(
    "slow",
    "slow",
    "/nonexistent.log",
    async () => {
      const s = sleeper();
      spawned.push(s.child.pid!);
      if (slow) await sleep(1_500);
      return s;
    },
    () => {},
    () => {},
  );
  after(async () => {
    for (const pid of spawned) if (processAlive(pid)) process.kill(pid, "SIGKILL");
  });
  await p.start();
  await p.hold();
  // `region start` under way (a slow start) when `up` is told to stop.
  slow = true;
  const released = p.release().then(
    () => "started",
    (err: Error) => err.message,
  );
  await eventually(() => spawned.length === 2, 5_000, 10);
  await p.shutdown();
  assert.match(await released, /stopped while it started/);
  assert.equal(p.pid, undefined);
  await eventually(() => !processAlive(spawned[1]!), 5_000, 50);
});

test("the backoff doubles for short-lived runs and resets after a run that lasted", async (t) => {
  const after = cleanupStack(t);
  const logs: string[] = [];
  const p = new Supervised(
    "flaky",
    "flaky",
    "/nonexistent.log",
    async () => sleeper(),
    (line) => logs.push(line),
    () => {},
    1_000,
  );
  after(() => p.shutdown());
  const crash = async () => {
    const pid = p.pid!;
    process.kill(pid, "SIGKILL");
    await eventually(() => p.pid !== undefined && p.pid !== pid, 10_000, 20);
  };
  await p.start();
  await sleep(1_200);
  await crash(); // after a run that lasted: 0.5 s
  await crash(); // at once: doubled
  await sleep(1_200);
  await crash(); // lasted again: back to 0.5 s
  const delays = logs.filter((l) => l.includes("exited")).map((l) => /restarting in ([\d.]+) s/.exec(l)![1]);
  assert.deepEqual(delays, ["0.5", "1", "0.5"]);
});

/** A child serving HTTP on a free port, answering `status` to everything; resolves once it listens. */
async function server(status: number): Promise<Started & { url: string }> {
  const code = `const s = require("node:http").createServer((q, r) => r.writeHead(${status}).end());
    s.listen(0, "127.0.0.1", () => console.log(s.address().port));`;
  const child = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "ignore"] });
  const port = await new Promise<number>((resolve) => child.stdout!.once("data", (d) => resolve(Number(d))));
  const url = `http://127.0.0.1:${port}`;
  return { child, url, stop: () => stopChild(child), probe: () => httpAnswers(`${url}/healthz`, 500) };
}

test("liveness: a frozen process is SIGKILLed after its probes fail in a row and restarted; one answering 503 is left alone", async (t) => {
  const after = cleanupStack(t);
  const logs: string[] = [];
  const liveness = { intervalMs: 200, failures: 3 };
  const make = (status: number) =>
    new Supervised(
      "srv",
      "srv",
      "/nonexistent.log",
      () => server(status),
      (l) => logs.push(l),
      () => {},
      30_000,
      liveness,
    );
  const frozen = make(200);
  const sick = make(503);
  after(() => frozen.shutdown());
  after(() => sick.shutdown());
  await frozen.start();
  await sick.start();
  const [frozenPid, sickPid] = [frozen.pid!, sick.pid!];
  after(() => {
    if (processAlive(frozenPid)) process.kill(frozenPid, "SIGCONT");
  });
  process.kill(frozenPid, "SIGSTOP");
  await eventually(() => frozen.pid !== undefined && frozen.pid !== frozenPid, 15_000, 50);
  assert.equal(processAlive(frozenPid), false, "the frozen process was killed");
  assert.match(logs.join("\n"), new RegExp(`srv \\(pid ${frozenPid}\\) answered none of 3 liveness probes`));
  assert.match(logs.join("\n"), new RegExp(`srv \\(pid ${frozenPid}\\) exited \\(SIGKILL\\); restarting`));
  await sleep(1_500);
  assert.equal(sick.pid, sickPid, "a process that answers, whatever its status, is not restarted");
  // Held: no probe kills it, nothing restarts it.
  await frozen.hold();
  assert.equal(frozen.pid, undefined);
});

test("liveness probes ask every kind of process for /healthz, never /metrics (rendering every metric each probe cost an idle mesh CPU)", async (t) => {
  const after = cleanupStack(t);
  const paths: string[] = [];
  const s = createServer((q, r) => {
    paths.push(q.url ?? "");
    r.writeHead(q.url === "/healthz" ? 200 : 404).end();
  });
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  after(() => new Promise<void>((resolve) => s.close(() => resolve())));
  const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  // The fields of each kind's listening line: node, front door, peer and worker (metrics server).
  const infos: Array<Record<string, string>> = [{ registry: url }, { frontDoor: url }, { metrics: url }];
  for (const info of infos) {
    const probe = livenessProbe(info, 2_000, {});
    assert.ok(probe, `a probe for ${JSON.stringify(info)}`);
    assert.equal(await probe(), true);
  }
  assert.deepEqual(paths, ["/healthz", "/healthz", "/healthz"]);
  assert.equal(livenessProbe({}, 2_000, {}), undefined, "nothing to probe without an address");
  assert.equal(livenessProbe({ metrics: url }, 2_000, { MERIDIAN_UP_LIVENESS: "off" }), undefined);
});
