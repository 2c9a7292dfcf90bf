/**
 * A stray SIGHUP stops no Meridian process (issue 11): the node, the peer and
 * the worker of a region, and the front door, each get one and go on serving.
 * SIGHUP re-reads TLS files where they are configured; elsewhere it is only
 * logged. (The kernel sends one to every process of an orphaned process
 * group with a stopped member, which is what a SIGSTOP drill made of
 * `meridian up`'s group: cli/test/up-lifecycle.test.ts.)
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { processAlive, sleep } from "../../testing/faults.js";
import { cleanupStack, spawnMeridian } from "../../testing/harness.js";
import { startProxiedMesh } from "../../testing/mesh.js";

const cleanup = cleanupStack({ after });

test("the node, peer, worker and front door each survive SIGHUP and keep serving", async () => {
  const mesh = await startProxiedMesh(cleanup, ["a", "b"]);
  const door = await spawnMeridian(cleanup, "control-plane/front-door.js", { MERIDIAN_MESH: mesh.meshFile });
  const a = mesh.regions.get("a")!;
  const processes = { node: a.node, peer: a.peer, worker: a.worker, frontDoor: door };
  for (const p of Object.values(processes)) p.child.kill("SIGHUP");
  await sleep(1_000);
  for (const [name, p] of Object.entries(processes)) {
    assert.ok(processAlive(p.child.pid!), `${name} survived SIGHUP:\n${p.log().slice(-2000)}`);
    assert.equal(p.child.exitCode, null, name);
  }
  assert.equal((await fetch(`${a.registry}/v2/`)).status, 200);
  assert.equal((await fetch(`${door.info.frontDoor}/v2/`)).status, 200);
});
