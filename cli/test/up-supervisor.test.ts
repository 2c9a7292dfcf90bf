/**
 * `meridian up` as a supervisor (issue 13, item 4), with three real regions:
 * `kill -9` of every process of region a (the pids its ready line printed)
 * no longer stops the mesh: `up` keeps running, the front door keeps
 * answering pulls of an image pushed before from the other regions, and
 * region a comes back by itself (new pids in <data>/up.json, its node
 * answering, a push to it replicating). `meridian region stop a` holds it
 * down (its processes stay dead) and `meridian region start a` brings it back.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { processAlive, sleep } from "../../testing/faults.js";
import { cleanupStack, eventually, runCli } from "../../testing/harness.js";
import { startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";
import type { ControlState } from "../supervisor.js";

function state(dataDir: string): ControlState {
  return JSON.parse(readFileSync(join(dataDir, "up.json"), "utf8")) as ControlState;
}

/** Every pid of a region in <data>/up.json (null for one that is not running). */
function regionPids(dataDir: string, region: string): Array<number | null> {
  return Object.values(state(dataDir).regions[region]!.pids).flat();
}

async function digestAt(client: OciClient, repo: string, ref: string): Promise<string | undefined> {
  const res = await client.fetch(`/v2/${repo}/manifests/${ref}`, {
    method: "HEAD",
    headers: { "cache-control": "only-if-cached" },
  });
  return res.status === 200 ? (res.headers.get("docker-content-digest") ?? undefined) : undefined;
}

async function answers(url: string): Promise<boolean> {
  try {
    return (await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(2_000) })).status === 200;
  } catch {
    return false;
  }
}

/** Pull the image through the front door: manifest and every blob, bytes checked. */
async function pullThroughFrontDoor(front: OciClient, digest: string, blobs: string[]): Promise<void> {
  const m = await front.fetch(`/v2/sup/app/manifests/v1`, { headers: { accept: OCI_MANIFEST } });
  assert.equal(m.status, 200, "the front door answers the manifest");
  assert.equal(sha256(Buffer.from(await m.arrayBuffer())), digest);
  for (const d of blobs) {
    const b = await front.fetch(`/v2/sup/app/blobs/${d}`);
    assert.equal(b.status, 200, `the front door answers blob ${d}`);
    assert.equal(sha256(Buffer.from(await b.arrayBuffer())), d);
  }
}

test("kill -9 of region a's processes: up keeps running, the front door keeps answering, a comes back; region stop/start hold it down and bring it back", async (t) => {
  const after = cleanupStack(t);
  const mesh = await startMesh(after, ["a", "b", "c"]);
  const data = mesh.dataDir;
  const regionA = mesh.regions.get("a")!;
  const a = new OciClient(regionA.registry);
  const b = new OciClient(mesh.regions.get("b")!.registry);
  const c = new OciClient(mesh.regions.get("c")!.registry);
  const front = new OciClient(mesh.frontDoor!);

  const img = await a.pushRandomImage("sup/app", "v1", 2, 4096);
  const blobs = [img.config.digest, ...img.layers.map((l) => l.digest)];
  for (const client of [b, c])
    await eventually(async () => (await digestAt(client, "sup/app", "v1")) === img.digest, 30_000, 100);

  // The pids the ready line printed for a.
  const printed = Object.values(regionA.pids).flat();
  assert.equal(printed.length, 4, "nats, node, peer, worker");
  for (const pid of printed) process.kill(pid, "SIGKILL");

  // The rest keeps serving while a is down and restarting.
  for (let i = 0; i < 5; i++) {
    await pullThroughFrontDoor(front, img.digest, blobs);
    await sleep(200);
  }
  assert.equal(mesh.child.exitCode, null, "up keeps running");
  assert.equal(statSync(join(data, "up.json")).mode & 0o777, 0o600, "up.json is the owner's only");

  // Region a comes back by itself: new pids, all alive, its node answering.
  await eventually(
    () => {
      const now = regionPids(data, "a");
      return now.every((p) => p !== null && !printed.includes(p) && processAlive(p));
    },
    60_000,
    200,
  );
  await eventually(() => answers(regionA.registry), 30_000, 200);
  const after1 = await a.pushRandomImage("sup/back", "v1", 1, 2048);
  for (const client of [b, c])
    await eventually(async () => (await digestAt(client, "sup/back", "v1")) === after1.digest, 30_000, 100);

  // region stop a: every process gone and held down (not restarted), the front door still answers.
  const running = regionPids(data, "a") as number[];
  const stopped = await runCli(["region", "stop", "a", "--data", data]);
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.match(stopped.stdout, /stopping node of a/);
  assert.match(stopped.stdout, /region a: stopped/);
  for (const pid of running) assert.equal(processAlive(pid), false, `pid ${pid} is gone`);
  for (let i = 0; i < 5; i++) {
    await sleep(1_000);
    assert.equal(await answers(regionA.registry), false, "a's node stays down");
    assert.ok(
      regionPids(data, "a").every((p) => p === null),
      "no process of a is restarted",
    );
    assert.equal(state(data).regions.a!.held, true);
  }
  await pullThroughFrontDoor(front, img.digest, blobs);
  const st = await runCli(["status", "--data", data]);
  assert.equal(st.code, 1, "status names a as down");
  assert.match(st.stderr, /region a is unreachable: .*held down by 'meridian region stop'/);

  // region start a: back, ready when the command returns.
  const started = await runCli(["region", "start", "a", "--data", data]);
  assert.equal(started.code, 0, started.stderr);
  assert.match(started.stdout, /node of a is ready/);
  assert.equal(await answers(regionA.registry), true, "a's node answers once region start returns");
  assert.ok(regionPids(data, "a").every((p) => p !== null && processAlive(p)));
  assert.equal(state(data).regions.a!.held, false);
  assert.equal(mesh.child.exitCode, null, "up still runs");

  // Only the node held down (NATS stays up): the way to `meridian rebuild` a view under `up`.
  const natsPid = state(data).regions.a!.pids.nats as number;
  const nodePid = state(data).regions.a!.pids.node as number;
  const nodeOnly = await runCli(["region", "stop", "a", "--only", "node", "--data", data]);
  assert.equal(nodeOnly.code, 0, nodeOnly.stderr);
  assert.equal(processAlive(nodePid), false, "the node is stopped");
  assert.ok(processAlive(natsPid), "the nats-server is left running");
  assert.equal(state(data).regions.a!.pids.node, null);
  const rebuilt = await runCli(["rebuild", "--data", data, "--region", "a"]);
  assert.equal(rebuilt.code, 0, rebuilt.stderr);
  assert.equal((await runCli(["region", "start", "a", "--data", data])).code, 0);
  assert.equal(await digestAt(a, "sup/back", "v1"), after1.digest, "the rebuilt view serves what a held");
  const badRole = await runCli(["region", "stop", "a", "--only", "nodes", "--data", data]);
  assert.equal(badRole.code, 1);
  assert.match(badRole.stderr, /no process nodes/);

  // Unknown region and a wrong token are refused.
  const unknown = await runCli(["region", "stop", "nope", "--data", data]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no region nope/);
  const denied = await fetch(`${state(data).control}/regions/a/stop`, {
    method: "POST",
    headers: { authorization: "Bearer wrong" },
  });
  assert.equal(denied.status, 401);
  const malformed = await fetch(`${state(data).control}/regions/%E0/stop`, {
    method: "POST",
    headers: { authorization: `Bearer ${state(data).token}` },
  });
  assert.equal(malformed.status, 400, "a malformed name is refused, not a crash of up");

  const last = Object.values(state(data).regions).flatMap((r) => Object.values(r.pids).flat()) as number[];
  assert.equal(await mesh.stop(), 0, "up stops cleanly on SIGTERM");
  for (const pid of last) assert.equal(processAlive(pid), false, `pid ${pid} is gone`);
  assert.equal(existsSync(join(data, "up.json")), false, "up.json goes with up");
});

test("a restarted nats-server is still stopped by the watchdog when up is SIGKILLed", async (t) => {
  const after = cleanupStack(t);
  const mesh = await startMesh(after, ["solo"]);
  const first = mesh.regions.get("solo")!.pids.nats!;
  process.kill(first, "SIGKILL");
  let restarted = 0;
  after(() => {
    if (restarted > 0 && processAlive(restarted)) process.kill(restarted, "SIGKILL");
  });
  await eventually(
    () => {
      restarted = state(mesh.dataDir).regions.solo!.pids.nats as number;
      return restarted > 0 && restarted !== first && processAlive(restarted);
    },
    30_000,
    100,
  );
  const node = state(mesh.dataDir).regions.solo!.pids.node as number;
  mesh.child.kill("SIGKILL");
  await eventually(() => !processAlive(restarted) && !processAlive(node), 20_000, 100);
});
