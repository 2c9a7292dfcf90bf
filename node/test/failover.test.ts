/**
 * Durability, fencing, failover and rebuild against real processes: three
 * regions (nats-server, node, peer, worker each; heartbeats every 250 ms, so
 * a lease of 750 ms), driven through the admin API and the `meridian` CLI.
 *
 * One mesh for the file; the steps run in order: sync(1) pushes; a home whose
 * control plane stops answering refuses home writes; failover refused while
 * the home is up, done once it is dead; the old home returns fenced and
 * converges; a region that lost all its data is rebuilt from its peers.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { PeerClient, peerCredentials } from "../../mesh-client/peer-client.js";
import { parseMesh, regionOf } from "../../protocol/mesh.js";
import { type After, cleanupStack, eventually, runCli, spawnMeridian } from "../../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";

let mesh: ProxiedMesh;
let cleanup: After;
const client = (region: string) => new OciClient(mesh.regions.get(region)!.registry);

async function admin(region: string, method: string, path: string, body?: unknown): Promise<Response> {
  return client(region).fetch(`/admin/v1${path}`, {
    method,
    ...(body === undefined
      ? {}
      : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
  });
}

async function digestAt(region: string, repo: string, ref: string): Promise<string | undefined> {
  const res = await client(region)
    .fetch(`/v2/${repo}/manifests/${ref}`, { method: "HEAD", headers: { "cache-control": "only-if-cached" } })
    .catch(() => undefined);
  return res?.status === 200 ? (res.headers.get("docker-content-digest") ?? undefined) : undefined;
}

/** Push config and layer, then PUT the manifest by tag; the raw answer of the PUT. */
async function push(region: string, repo: string, tag: string): Promise<{ res: Response; digest: string }> {
  const c = client(region);
  const config = await c.pushBlob(repo, Buffer.from(JSON.stringify({ tag, region, at: Date.now() })));
  const layer = await c.pushBlob(repo, Buffer.from(`${repo}:${tag} from ${region}`));
  const bytes = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] }),
  );
  const res = await c.fetch(`/v2/${repo}/manifests/${tag}`, {
    method: "PUT",
    headers: { "content-type": OCI_MANIFEST },
    body: bytes,
  });
  const { createHash } = await import("node:crypto");
  return { res, digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}` };
}

const errorOf = async (res: Response) =>
  ((await res.json()) as { errors: Array<{ code: string; message: string }> }).errors[0]!;

describe("durability, fencing, failover and rebuild", () => {
  cleanup = cleanupStack({ after });

  before(async () => {
    mesh = await startProxiedMesh(cleanup, ["a", "b", "c"], { node: { MERIDIAN_SYNC_TIMEOUT_MS: "1500" } });
  });

  test("sync(1): a push is acknowledged once another region holds it, and not while none can", async () => {
    const tooMany = await admin("a", "PUT", "/rules", {
      scope: "sync/",
      tagMerge: "lww",
      durability: "sync(3)",
    });
    assert.equal(tooMany.status, 400);
    assert.match((await errorOf(tooMany)).message, /2 besides a/);
    const rule = await admin("a", "PUT", "/rules", {
      scope: "sync/",
      tagMerge: "lww",
      durability: "sync(1)",
    });
    assert.equal(rule.status, 200);

    const first = await push("a", "sync/app", "v1");
    assert.equal(first.res.status, 201);
    // Acknowledged: at that moment b or c already holds the manifest (these nodes never fetch on miss).
    const holders = [
      await digestAt("b", "sync/app", first.digest),
      await digestAt("c", "sync/app", first.digest),
    ];
    assert.ok(
      holders.includes(first.digest),
      "no other region held the manifest when the push was acknowledged",
    );

    mesh.partition("a");
    const cut = await push("a", "sync/app", "v2");
    assert.equal(cut.res.status, 503);
    const error = await errorOf(cut.res);
    assert.equal(error.code, "UNAVAILABLE");
    assert.match(error.message, /not acknowledged/);
    mesh.heal("a");
    // The same push again: acknowledged once replication resumes.
    await eventually(async () => (await push("a", "sync/app", "v2")).res.status === 201, 30_000, 200);
    assert.ok((await digestAt("b", "sync/app", "v2")) ?? (await digestAt("c", "sync/app", "v2")));
  });

  test("a home refuses home writes while its control plane cannot vouch for it", async () => {
    const rule = await admin("a", "PUT", "/rules", { scope: "app/", tagMerge: "home-region", home: "a" });
    assert.equal(rule.status, 200);
    await eventually(async () => {
      const res = await admin("b", "GET", "/rules");
      const { rules } = (await res.json()) as { rules: Array<{ scope: string }> };
      return rules.some((r) => r.scope === "app/");
    }, 15_000);
    assert.equal((await push("a", "app/x", "v1")).res.status, 201);
    const elsewhere = await push("b", "app/x", "v1");
    assert.equal(elsewhere.res.status, 403);
    assert.match((await errorOf(elsewhere.res)).message, /homed in region a/);

    // a's peer stops: a's node can no longer tell whether a was failed over, so it refuses.
    const a = mesh.regions.get("a")!;
    await a.peer.kill();
    await eventually(async () => (await push("a", "app/x", "v1")).res.status === 503, 15_000, 200);
    const fenced = await push("a", "app/x", "v1");
    assert.equal((await errorOf(fenced.res)).code, "UNAVAILABLE");
    a.peer = await spawnMeridian(cleanup, "control-plane/peer.js", a.peerEnv);
    await eventually(async () => (await push("a", "app/x", "v1")).res.status === 201, 15_000, 200);
  });

  test("failover is refused while the home is up, done once it is dead; the new home takes writes", async () => {
    // a's peer was just restarted: wait until b's peer hears from it again (b judges the failover).
    const file = parseMesh(JSON.parse(readFileSync(mesh.meshFile, "utf8")));
    const b = new PeerClient("b", regionOf(file, "b").grpc, peerCredentials(file, "b"));
    try {
      await eventually(
        async () =>
          (await b.status("test").catch(() => undefined))?.peers.find((p) => p.region === "a")?.up === true,
        15_000,
        100,
      );
    } finally {
      b.close();
    }
    const refused = await runCli(["failover", "--from", "a", "--to", "b", "--mesh", mesh.meshFile]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /region a is up/);

    await mesh.killRegion("a");
    let done = "";
    await eventually(
      async () => {
        const r = await runCli(["failover", "--from", "a", "--to", "b", "--mesh", mesh.meshFile]);
        done = r.stdout;
        return r.code === 0;
      },
      20_000,
      250,
    );
    assert.match(done, /failed over 1 scope\(s\) from a to b at epoch 1: app\//);
    // Operators see it at a glance: a down, b (and soon c) at epoch 1.
    await eventually(
      async () => {
        const status = await runCli(["status", "--mesh", mesh.meshFile, "--json"]);
        const regions = JSON.parse(status.stdout).regions as Array<{
          region: string;
          up: boolean;
          epoch?: number;
        }>;
        return (
          regions.map((r) => `${r.region}:${r.up}:${r.epoch ?? "-"}`).join(" ") ===
          "a:false:- b:true:1 c:true:1"
        );
      },
      15_000,
      200,
    );
    const moved = await push("b", "app/x", "v2");
    assert.equal(moved.res.status, 201);
    await eventually(async () => (await digestAt("c", "app/x", "v2")) === moved.digest, 20_000, 100);
  });

  test("the old home returns fenced: its writes are refused, and it converges on the new home's", async () => {
    await mesh.restartRegion("a");
    const moved = await digestAt("b", "app/x", "v2");
    let message = "";
    await eventually(
      async () => {
        const attempt = await push("a", "app/x", "v3");
        assert.notEqual(attempt.res.status, 201, "the old home accepted a home write after the failover");
        message = (await errorOf(attempt.res)).message;
        return attempt.res.status === 403;
      },
      30_000,
      250,
    );
    assert.match(message, /homed in region b \(epoch 1\)/);
    await eventually(async () => (await digestAt("a", "app/x", "v2")) === moved, 30_000, 100);
    const rules = (await (await admin("a", "GET", "/rules")).json()) as {
      rules: Array<{ scope: string; homes: Record<string, string> }>;
    };
    assert.deepEqual(rules.rules.find((r) => r.scope === "app/")?.homes, { "0": "a", "1": "b" });
  });

  test("rebuild-region fills a region that lost all its data, its own earlier pushes included", async () => {
    const own = await push("c", "own/c", "v1");
    assert.equal(own.res.status, 201);
    await eventually(async () => (await digestAt("a", "own/c", "v1")) === own.digest, 20_000, 100);
    await mesh.killRegion("c");
    await mesh.restartRegion("c", { fresh: true });
    assert.equal(await digestAt("c", "app/x", "v2"), undefined);

    const r = await runCli(["rebuild-region", "--region", "c", "--mesh", mesh.meshFile], 120_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^rebuild of c: ok after [\d.]+ s; /m);
    assert.match(r.stderr, /^rebuilding c: \d+\/\d+ repositories in step, .*with a \d+\/\d+, b \d+\/\d+$/m);
    // The run is recorded once the worker appended everything; c's node applies its log a moment later.
    const inC = async () =>
      (await digestAt("c", "own/c", "v1")) === own.digest &&
      (await digestAt("c", "app/x", "v2")) === (await digestAt("b", "app/x", "v2"));
    await eventually(inC, 30_000, 100).catch((err) => {
      throw new Error(
        `${(err as Error).message}: not in c after the rebuild\n${r.stdout}\n${r.stderr.slice(-2_000)}`,
      );
    });
    assert.ok(await digestAt("c", "sync/app", "v2"));
  });
});
