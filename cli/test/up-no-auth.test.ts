/**
 * Issue 11, finding 9, as an operator meets it: a mesh that once ran with
 * `meridian up --auth` (so <data>/auth exists) is not restarted open by
 * forgetting the flag. `up` without `--auth` refuses at once (exit 1, naming
 * the flags), `--auth --no-auth` is a usage error, and `--no-auth` starts it
 * open on purpose: every node is told MERIDIAN_NO_AUTH=true (its view holds
 * the admin user, so the node would refuse otherwise), and anonymous reads
 * work again.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { cleanupStack, freePortBlock, runCli, tempDir } from "../../testing/harness.js";
import { startMesh } from "../../testing/mesh.js";

const cleanup = cleanupStack({ after });

describe("meridian up on a data directory that once had authentication", () => {
  const dir = tempDir(cleanup);

  test("up without --auth refuses; --no-auth starts it open, explicitly", async (t) => {
    const first = await startMesh(cleanupStack(t), ["a"], dir, ["--auth"]);
    const reg = first.regions.get("a")!.registry;
    assert.equal((await fetch(`${reg}/v2/_catalog`)).status, 401);
    assert.equal(await first.stop(), 0);

    const base = String(await freePortBlock([0, 1, 2, 3, 4, 5]));
    const refused = await runCli(["up", "--regions", "a", "--base-port", base, "--data", dir], 30_000);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /refusing to start without authentication: .*auth exists/);
    assert.match(refused.stderr, /--no-auth/);

    const both = await runCli([
      "up",
      "--regions",
      "a",
      "--base-port",
      base,
      "--data",
      dir,
      "--auth",
      "--no-auth",
    ]);
    assert.equal(both.code, 2, both.stderr);

    const open = await startMesh(cleanupStack(t), ["a"], dir, ["--no-auth"]);
    assert.equal((await fetch(`${open.regions.get("a")!.registry}/v2/_catalog`)).status, 200);
    await open.stop();
  });
});
