/**
 * The CLI with a frozen region (issue 11, finding 2): region a's four
 * processes stopped with SIGSTOP accept connections and answer nothing.
 * `meridian status` must finish within a bound and exit 1 naming a; an
 * admin read without `--region` (which defaults to the first region, a)
 * must be answered by the next region; with `--region a` it must fail
 * promptly saying so. Real processes (`meridian up --regions a,b`); the
 * frozen processes are resumed (SIGCONT) in cleanup.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { waitWritable } from "../../testing/faults.js";
import { cleanupStack, runCli } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";

const cleanup = cleanupStack({ after });
/** Generous: today's `status` never exits; its bounds make it a few seconds. */
const FINISHES_MS = 25_000;
let mesh: RunningMesh;
let frozen: number[] = [];

const signal = (pids: number[], sig: NodeJS.Signals) => {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
};

before(async () => {
  // Frozen on purpose for the whole file: up's liveness probe would restart them (cli/supervisor.ts).
  process.env.MERIDIAN_UP_LIVENESS = "off";
  mesh = await startMesh(cleanup, ["a", "b"]);
  for (const r of mesh.regions.values()) await waitWritable(r.registry);
  frozen = Object.values(mesh.regions.get("a")!.pids);
  assert.equal(frozen.length, 4);
  // Registered before the freeze: resumed before the mesh is stopped.
  cleanup(() => signal(frozen, "SIGCONT"));
  signal(frozen, "SIGSTOP");
});

async function timedCli(args: string[]) {
  const started = Date.now();
  // Killed after FINISHES_MS + 15 s: a command that never exits fails the assertions below.
  const r = await runCli([...args, "--data", mesh.dataDir], FINISHES_MS + 15_000);
  return { ...r, ms: Date.now() - started };
}

test("status finishes and exits 1 naming the frozen region", async () => {
  const r = await timedCli(["status"]);
  assert.ok(r.ms < FINISHES_MS, `status took ${r.ms} ms (code ${r.code})`);
  assert.equal(r.code, 1, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.match(r.stdout, /^a\s+DOWN/m);
  assert.match(r.stdout, /^b\s+up/m);
  assert.match(r.stderr, /region a .*unreachable/);
  assert.doesNotMatch(r.stderr, /region b/);
});

test("an admin read goes to the next region when the first does not answer", async () => {
  const r = await timedCli(["policy", "list", "--json"]);
  assert.ok(r.ms < FINISHES_MS, `policy list took ${r.ms} ms`);
  assert.equal(r.code, 0, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.ok(Array.isArray(JSON.parse(r.stdout).policies), r.stdout);
  assert.match(r.stderr, /region a did not answer.*trying region b/);

  const rules = await timedCli(["tag", "rules"]);
  assert.equal(rules.code, 0, `stdout: ${rules.stdout}\nstderr: ${rules.stderr}`);
});

test("--region names the frozen region: a prompt failure that says so", async () => {
  const r = await timedCli(["policy", "list", "--region", "a"]);
  assert.ok(r.ms < FINISHES_MS, `policy list --region a took ${r.ms} ms`);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /region a .*did not answer/);
});
