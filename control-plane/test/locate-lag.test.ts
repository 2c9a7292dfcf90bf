/**
 * Read-after-push across regions when the holder's peer is behind its own log
 * (control-plane/peer-service.ts `caughtUp`): region a's peer reaches a's
 * nats-server through a link slowed to 400 ms each way (its node directly),
 * so the peer applies a push to its view well after the node acknowledged it.
 * Region b, cut off from replication, asked for that content at once, must
 * still find it in a (before: "not here" from a's lagging view, a 404).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, test } from "node:test";
import { TcpProxy } from "../../chaos/tcp-proxy.js";
import { cleanupStack, eventually } from "../../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });
let mesh: ProxiedMesh;
const client = (region: string) => new OciClient(mesh.regions.get(region)!.registry);

before(async () => {
  mesh = await startProxiedMesh(cleanup, ["a", "b"], { node: { MERIDIAN_FETCH_ON_MISS: "proxy" } });
  mesh.partition("b");
  const a = mesh.regions.get("a")!;
  const slow = await TcpProxy.start({ target: { host: "127.0.0.1", port: a.nats.port } });
  cleanup(() => slow.close());
  slow.setDelay(400);
  await mesh.killProcess("a", "peer");
  a.peerEnv.MERIDIAN_NATS_SERVERS = `nats://${slow.address}`;
  await mesh.restartProcess("a", "peer");
  // Until b's heartbeats see the restarted peer up, b does not ask a at all: wait for that
  // with content a's peer has long applied.
  const warm = await client("a").pushBlob("lag/warm", randomBytes(1024));
  await eventually(
    async () =>
      (await client("b").fetch(`/v2/lag/warm/blobs/${warm.digest}`, { method: "HEAD" })).status === 200,
    20_000,
    100,
  );
});

test("a blob pushed to a is found from b at once, though a's peer has not applied the push yet", async () => {
  const layer = randomBytes(64 << 10);
  const desc = await client("a").pushBlob("lag/blob", layer);
  const res = await client("b").fetch(`/v2/lag/blob/blobs/${desc.digest}`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("meridian-fetched-from"), "a");
  assert.equal(sha256(Buffer.from(await res.arrayBuffer())), desc.digest);
});

test("a manifest pushed to a is found from b at once, by tag and by digest", async () => {
  const image = await client("a").pushRandomImage("lag/app", "v1");
  for (const ref of ["v1", image.digest]) {
    const res = await client("b").fetch(`/v2/lag/app/manifests/${ref}`, {
      headers: { accept: OCI_MANIFEST },
    });
    assert.equal(res.status, 200, ref);
    assert.equal(res.headers.get("docker-content-digest"), image.digest);
  }
});

test("content no region holds is still a 404, promptly", async () => {
  const started = Date.now();
  const res = await client("b").fetch(`/v2/lag/none/blobs/${sha256(randomBytes(8))}`);
  assert.equal(res.status, 404);
  // One catch-up per region asked (its view is at most a link's delay behind), not a hang.
  assert.ok(Date.now() - started < 10_000);
});
