/**
 * Faults against real processes: node processes (kill -9 capable) on a real
 * nats-server. Two nodes of one region sharing a stream and a blob store; the
 * region's NATS going away and coming back; a node killed in the middle of a
 * chunked upload, of a manifest push, and right after a burst of pushes.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { test } from "node:test";
import { connect } from "@nats-io/transport-node";
import { streamSubjects } from "../../protocol/events.js";
import { manualRequest, sleep, waitWritable } from "../../testing/faults.js";
import {
  type After,
  cleanupStack,
  eventually,
  freePort,
  type NodeProcess,
  restartNats,
  spawnNodeProcess,
  startTestNats,
  tempDir,
} from "../../testing/harness.js";
import { errorCode, OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";

const MiB = 1024 * 1024;

async function getManifest(
  client: OciClient,
  repo: string,
  ref: string,
): Promise<{ status: number; bytes: Buffer; code?: string }> {
  const res = await client.fetch(`/v2/${repo}/manifests/${ref}`, { headers: { accept: OCI_MANIFEST } });
  const bytes = Buffer.from(await res.arrayBuffer());
  if (res.status === 200) return { status: 200, bytes };
  const body = JSON.parse(bytes.toString()) as { errors?: Array<{ code: string }> };
  return { status: res.status, bytes, code: body.errors?.[0]?.code };
}

async function getBlob(client: OciClient, repo: string, digest: string): Promise<Buffer | number> {
  const res = await client.fetch(`/v2/${repo}/blobs/${digest}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  return res.status === 200 ? bytes : res.status;
}

async function headBlob(client: OciClient, repo: string, digest: string): Promise<number> {
  const res = await client.fetch(`/v2/${repo}/blobs/${digest}`, { method: "HEAD" });
  await res.arrayBuffer();
  return res.status;
}

async function patch(url: URL, bytes: Uint8Array, offset: number): Promise<Response> {
  return fetch(url, {
    method: "PATCH",
    headers: {
      "content-type": "application/octet-stream",
      "content-range": `${offset}-${offset + bytes.byteLength - 1}`,
    },
    body: bytes,
  });
}

/** A manifest over existing blobs, made unique by an annotation. */
function imageManifest(
  config: { mediaType: string; digest: string; size: number },
  layers: Array<{ mediaType: string; digest: string; size: number }>,
  nonce: string,
): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config,
      layers,
      annotations: { "org.example.nonce": nonce },
    }),
  );
}

/** A node process on a fixed port and data dir, restartable after a kill. */
async function restartableNode(after: After, nats: string) {
  const dataDir = tempDir(after, "meridian-node-");
  const port = await freePort();
  const start = async () => {
    const node = await spawnNodeProcess(after, { nats, dataDir, port });
    await waitWritable(node.url);
    return node;
  };
  return { dataDir, port, start };
}

test("two nodes of one region: a push on one is pullable on the other within 1 s; uploads are shared", async (t) => {
  const after = cleanupStack(t);
  const nats = await startTestNats(after);
  const root = tempDir(after, "meridian-two-");
  const storageRoot = join(root, "store");
  const [n1, n2] = await Promise.all(
    ["n1", "n2"].map((name) =>
      spawnNodeProcess(after, {
        nats: nats.url,
        dataDir: join(root, name),
        viewDir: join(root, name, "view"),
        storageRoot,
      }),
    ),
  );
  await Promise.all([waitWritable(n1!.url), waitWritable(n2!.url)]);
  const c1 = new OciClient(n1!.url);
  const c2 = new OciClient(n2!.url);

  const lags: number[] = [];
  for (let i = 0; i < 5; i++) {
    const image = await c1.pushRandomImage("shared/app", `v${i}`);
    const pushed = Date.now(); // pushRandomImage returns on the manifest's 201
    const bytes = Buffer.from(JSON.stringify(image.manifest));
    for (;;) {
      const got = await getManifest(c2, "shared/app", `v${i}`);
      if (got.status === 200) {
        assert.deepEqual(got.bytes, bytes);
        break;
      }
      assert.equal(got.status, 404);
      assert.ok(Date.now() - pushed < 1_000, `v${i} not pullable from node 2 within 1 s`);
      await sleep(5);
    }
    lags.push(Date.now() - pushed);
    for (const blob of [image.config, ...image.layers]) {
      const got = await getBlob(c2, "shared/app", blob.digest);
      assert.ok(Buffer.isBuffer(got), `blob ${blob.digest} pullable from node 2`);
      assert.equal(sha256(got), blob.digest);
    }
  }
  t.diagnostic(`node 2 lag after 201 on node 1 (ms): ${lags.join(", ")}`);
  assert.ok(Math.max(...lags) < 1_000);

  // A chunked upload started on node 1 and finished on node 2.
  const data = randomBytes(3 * MiB + 123);
  const digest = sha256(data);
  let res = await c1.fetch("/v2/shared/big/blobs/uploads/", { method: "POST" });
  assert.equal(res.status, 202);
  const location = res.headers.get("location")!;
  res = await patch(new URL(location, n1!.url), data.subarray(0, MiB), 0);
  assert.equal(res.status, 202);
  assert.equal(res.headers.get("range"), `0-${MiB - 1}`);
  res = await c2.fetch(location);
  assert.equal(res.status, 204, "node 2 sees the session started on node 1");
  assert.equal(res.headers.get("range"), `0-${MiB - 1}`);
  res = await patch(new URL(location, n2!.url), data.subarray(MiB, 2 * MiB), MiB);
  assert.equal(res.status, 202);
  assert.equal(res.headers.get("range"), `0-${2 * MiB - 1}`);
  // Back to node 1 for one more chunk (its cached running hash is stale now).
  res = await patch(new URL(location, n1!.url), data.subarray(2 * MiB, 3 * MiB), 2 * MiB);
  assert.equal(res.status, 202);
  assert.equal(res.headers.get("range"), `0-${3 * MiB - 1}`);
  assert.equal(await headBlob(c1, "shared/big", digest), 404, "not visible before completion");
  const put = new URL(location, n2!.url);
  put.searchParams.set("digest", digest);
  res = await fetch(put, {
    method: "PUT",
    headers: { "content-type": "application/octet-stream", "content-range": `${3 * MiB}-${data.length - 1}` },
    body: data.subarray(3 * MiB),
  });
  assert.equal(res.status, 201, await res.text());
  const onTwo = await getBlob(c2, "shared/big", digest);
  assert.ok(Buffer.isBuffer(onTwo));
  assert.equal(sha256(onTwo), digest);
  await eventually(async () => (await headBlob(c1, "shared/big", digest)) === 200, 1_000);
  const onOne = await getBlob(c1, "shared/big", digest);
  assert.ok(Buffer.isBuffer(onOne));
  assert.equal(sha256(onOne), digest);
  res = await c1.fetch(location);
  assert.equal(res.status, 404, "the finished session is gone for node 1 too");
  assert.equal(await errorCode(res), "BLOB_UPLOAD_UNKNOWN");
});

test("NATS down: writes answer 503 UNAVAILABLE at once, reads keep working, writes resume after restart", async (t) => {
  const after = cleanupStack(t);
  const natsDir = tempDir(after, "meridian-nats-");
  let nats = await startTestNats(after, natsDir);
  const dataDir = tempDir(after);
  const node = await spawnNodeProcess(after, { nats: nats.url, dataDir });
  await waitWritable(node.url);
  const client = new OciClient(node.url);
  const image = await client.pushRandomImage("down/app", "v1", 2, 4096);
  const manifestBytes = Buffer.from(JSON.stringify(image.manifest));

  // Writes go out at once, without waiting for the node to notice the outage.
  await nats.stop();

  const timed = async (fn: () => Promise<Response>) => {
    const started = Date.now();
    const res = await fn();
    return { res, ms: Date.now() - started };
  };
  const newBlob = randomBytes(2048);
  const blobWrite = await timed(() =>
    client.fetch(`/v2/down/app/blobs/uploads/?digest=${sha256(newBlob)}`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: newBlob,
    }),
  );
  assert.equal(blobWrite.res.status, 503);
  assert.equal(await errorCode(blobWrite.res), "UNAVAILABLE");
  assert.ok(blobWrite.ms < 3_000, `blob POST answered in ${blobWrite.ms} ms`);

  const newManifest = imageManifest(image.config, image.layers, "during-outage");
  const manifestWrite = await timed(() =>
    client.fetch("/v2/down/app/manifests/v2", {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: newManifest,
    }),
  );
  assert.equal(manifestWrite.res.status, 503);
  assert.equal(await errorCode(manifestWrite.res), "UNAVAILABLE");
  assert.ok(manifestWrite.ms < 3_000, `manifest PUT answered in ${manifestWrite.ms} ms`);

  const tagMove = await timed(() =>
    client.fetch("/v2/down/app/manifests/v1-copy", {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: manifestBytes,
    }),
  );
  assert.equal(tagMove.res.status, 503, "a tag write on an existing manifest fails too");
  assert.equal(await errorCode(tagMove.res), "UNAVAILABLE");
  assert.ok(tagMove.ms < 3_000);

  const health = (await (await client.fetch("/healthz")).json()) as { writable: boolean };
  assert.equal(health.writable, false, "/healthz reports the node read-only");

  // Reads are served from the view.
  const byTag = await getManifest(client, "down/app", "v1");
  assert.equal(byTag.status, 200);
  assert.deepEqual(byTag.bytes, manifestBytes);
  for (const blob of [image.config, ...image.layers]) {
    const got = await getBlob(client, "down/app", blob.digest);
    assert.ok(Buffer.isBuffer(got));
    assert.equal(sha256(got), blob.digest);
  }
  const tags = await client.fetch("/v2/down/app/tags/list");
  assert.equal(tags.status, 200);
  assert.deepEqual(((await tags.json()) as { tags: string[] }).tags, ["v1"]);
  assert.equal((await getManifest(client, "down/app", "v2")).status, 404, "the failed push left no tag");
  assert.equal(await headBlob(client, "down/app", sha256(newBlob)), 404, "the failed blob is not linked");

  // NATS back on the same port and store: the same node process takes writes again.
  nats = await restartNats(after, nats, natsDir);
  await eventually(
    async () => {
      const res = await client.fetch(`/v2/down/app/blobs/uploads/?digest=${sha256(newBlob)}`, {
        method: "POST",
        headers: { "content-type": "application/octet-stream" },
        body: newBlob,
      });
      await res.arrayBuffer();
      return res.status === 201;
    },
    15_000,
    100,
  );
  const again = await client.pushManifest(
    "down/app",
    "v2",
    imageManifest(
      image.config,
      [...image.layers, { ...image.layers[0]!, digest: sha256(newBlob), size: 2048 }],
      "after",
    ).toString(),
  );
  const pulled = await getManifest(client, "down/app", "v2");
  assert.equal(pulled.status, 200);
  assert.deepEqual(pulled.bytes, again.bytes);
  assert.deepEqual((await getManifest(client, "down/app", "v1")).bytes, manifestBytes, "old data survived");

  // The node's log tail survived the outage too: a second node's write reaches it.
  const other = await spawnNodeProcess(after, {
    nats: nats.url,
    dataDir: tempDir(after),
    storageRoot: join(dataDir, "store"),
  });
  await waitWritable(other.url);
  const fromOther = await new OciClient(other.url).pushRandomImage("down/app", "v3", 1);
  await eventually(async () => (await getManifest(client, "down/app", "v3")).status === 200, 5_000);
  assert.deepEqual(
    (await getManifest(client, "down/app", "v3")).bytes,
    Buffer.from(JSON.stringify(fromOther.manifest)),
  );
});

test("kill -9 in the middle of a chunked upload: the upload resumes (or is unknown), never a partial blob", async (t) => {
  const after = cleanupStack(t);
  const nats = await startTestNats(after);
  const nodeDef = await restartableNode(after, nats.url);
  let node: NodeProcess = await nodeDef.start();
  let client = new OciClient(node.url);
  const repo = "kill/upload";
  const data = randomBytes(6 * MiB + 4321);
  const digest = sha256(data);

  let res = await client.fetch(`/v2/${repo}/blobs/uploads/`, { method: "POST" });
  assert.equal(res.status, 202);
  const location = res.headers.get("location")!;
  let offset = 0;
  for (let i = 0; i < 3; i++) {
    res = await patch(new URL(location, node.url), data.subarray(offset, offset + MiB), offset);
    assert.equal(res.status, 202);
    offset += MiB;
    assert.equal(res.headers.get("range"), `0-${offset - 1}`);
  }

  // A PATCH whose body trickles in; the node is killed while it is mid-stream.
  const slow = manualRequest(new URL(location, node.url).href, "PATCH", {
    "content-type": "application/octet-stream",
  });
  let sent = offset;
  // More than one 1 MiB coalesced write, so part of this chunk reaches the file.
  const piece = 256 * 1024;
  for (let i = 0; i < 6; i++) {
    await slow.write(data.subarray(sent, sent + piece));
    sent += piece;
  }
  // Wait until the node has written part of the stream to the session.
  await eventually(async () => {
    const r = await client.fetch(location);
    const end = Number(r.headers.get("range")?.split("-")[1]);
    return r.status === 204 && end + 1 > offset;
  }, 5_000);
  assert.equal(await headBlob(client, repo, digest), 404, "not visible mid-upload");
  await slow.write(data.subarray(sent, sent + 1000));
  sent += 1000;
  await node.kill();
  const outcome = await slow.response;
  assert.ok(outcome instanceof Error, "the in-flight PATCH never got an answer");

  node = await nodeDef.start();
  client = new OciClient(node.url);
  assert.equal(await headBlob(client, repo, digest), 404, "no blob after the crash");
  res = await client.fetch(location);
  if (res.status === 404) {
    assert.equal(await errorCode(res), "BLOB_UPLOAD_UNKNOWN");
    t.diagnostic("upload unknown after restart; pushing again");
    await client.pushBlobChunked(repo, data, 2 * MiB);
  } else {
    assert.equal(res.status, 204);
    const range = /^0-(\d+)$/.exec(res.headers.get("range") ?? "");
    assert.ok(range, `Range header: ${res.headers.get("range")}`);
    const resumeAt = Number(range[1]) + 1;
    assert.ok(resumeAt > offset && resumeAt <= sent, `resume offset ${resumeAt} in (${offset}, ${sent}]`);
    t.diagnostic(`resuming at ${resumeAt} of ${data.length}`);
    // A chunk that does not start at the reported offset is refused.
    res = await patch(new URL(location, node.url), data.subarray(offset, offset + 10), offset);
    assert.equal(res.status, 416);
    await res.arrayBuffer();
    res = await patch(new URL(location, node.url), data.subarray(resumeAt, 5 * MiB), resumeAt);
    assert.equal(res.status, 202);
    assert.equal(res.headers.get("range"), `0-${5 * MiB - 1}`);
    assert.equal(await headBlob(client, repo, digest), 404, "still not visible before completion");
    const put = new URL(res.headers.get("location")!, node.url);
    put.searchParams.set("digest", digest);
    res = await fetch(put, {
      method: "PUT",
      headers: {
        "content-type": "application/octet-stream",
        "content-range": `${5 * MiB}-${data.length - 1}`,
      },
      body: data.subarray(5 * MiB),
    });
    assert.equal(res.status, 201, await res.text());
    assert.equal(res.headers.get("docker-content-digest"), digest);
  }
  res = await client.fetch(`/v2/${repo}/blobs/${digest}`, { method: "HEAD" });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-length"), String(data.length));
  const pulled = await getBlob(client, repo, digest);
  assert.ok(Buffer.isBuffer(pulled));
  assert.equal(sha256(pulled), digest);
});

test("kill -9 with half a manifest body received: nothing of the manifest exists", async (t) => {
  const after = cleanupStack(t);
  const nats = await startTestNats(after);
  const nodeDef = await restartableNode(after, nats.url);
  let node = await nodeDef.start();
  let client = new OciClient(node.url);
  const repo = "kill/manifest";
  const config = await client.pushBlob(repo, Buffer.from('{"architecture":"amd64","os":"linux"}'));
  const layer = await client.pushBlob(repo, randomBytes(1024));

  const half = imageManifest(config, [layer], "half");
  const partial = manualRequest(`${node.url}/v2/${repo}/manifests/half`, "PUT", {
    "content-type": OCI_MANIFEST,
    "content-length": half.length,
  });
  await partial.write(half.subarray(0, half.length >> 1));
  await sleep(100);
  await node.kill();
  assert.ok((await partial.response) instanceof Error, "the PUT never got an answer");
  node = await nodeDef.start();
  client = new OciClient(node.url);
  const byTag = await getManifest(client, repo, "half");
  const byDigest = await getManifest(client, repo, sha256(half));
  assert.deepEqual([byTag.status, byTag.code], [404, "MANIFEST_UNKNOWN"]);
  assert.deepEqual([byDigest.status, byDigest.code], [404, "MANIFEST_UNKNOWN"]);
  // The node is healthy: the same push goes through now.
  await client.pushManifest(repo, "half", half.toString());
  assert.deepEqual((await getManifest(client, repo, "half")).bytes, half);
});

test("kill -9 the moment a manifest PUT's first event reaches the log: all of it or none of it", async (t) => {
  const after = cleanupStack(t);
  const nats = await startTestNats(after);
  const nodeDef = await restartableNode(after, nats.url);
  let node = await nodeDef.start();
  let client = new OciClient(node.url);
  const repo = "kill/commit";
  const config = await client.pushBlob(repo, Buffer.from('{"architecture":"amd64","os":"linux"}'));
  const layer = await client.pushBlob(repo, randomBytes(1024));
  const bytes = imageManifest(config, [layer], "commit-point");
  const digest = sha256(bytes);

  // Watch the region's stream like any NATS client; SIGKILL the node as soon
  // as the manifest's event is published (before the node hears the ack).
  const watcher = await connect({ servers: nats.url, name: "faults-test-watcher" });
  after(() => watcher.close());
  const pid = node.child.pid!;
  let seen: string | undefined;
  watcher.subscribe(streamSubjects("test"), {
    callback: (err, msg) => {
      if (err || seen !== undefined) return;
      const event = JSON.parse(Buffer.from(msg.data).toString()) as { type: string; digest?: string };
      if (event.digest === digest) {
        seen = event.type;
        process.kill(pid, "SIGKILL");
      }
    },
  });
  await watcher.flush();

  const res = await client
    .fetch(`/v2/${repo}/manifests/v1`, {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: bytes,
    })
    .then(
      (r) => r.status,
      (err: Error) => err,
    );
  assert.ok(res instanceof Error, `the PUT was cut off (got ${res})`);
  assert.ok(seen !== undefined, "killed at the first event naming the manifest");
  t.diagnostic(`killed when ${seen} reached the log`);
  await node.kill(); // reap

  node = await nodeDef.start();
  client = new OciClient(node.url);
  const byTag = await getManifest(client, repo, "v1");
  const byDigest = await getManifest(client, repo, digest);
  t.diagnostic(`after restart: by tag ${byTag.status}, by digest ${byDigest.status}`);
  assert.equal(
    byTag.status,
    byDigest.status,
    `half a manifest: by tag ${byTag.status} (${byTag.code ?? "ok"}), by digest ${byDigest.status}`,
  );
  if (byTag.status === 200) {
    assert.deepEqual(byTag.bytes, bytes);
    assert.deepEqual(byDigest.bytes, bytes);
  }
});

test("kill -9 at moments around a manifest PUT's commit: acknowledged means whole, nothing is half", async (t) => {
  const after = cleanupStack(t);
  const nats = await startTestNats(after);
  const nodeDef = await restartableNode(after, nats.url);
  let node = await nodeDef.start();
  let client = new OciClient(node.url);
  const repo = "kill/sweep";
  const config = await client.pushBlob(repo, Buffer.from('{"architecture":"amd64","os":"linux"}'));
  const layer = await client.pushBlob(repo, randomBytes(1024));

  // Each round times a warm-up PUT on the fresh node, sends the whole body of
  // the next one and kills the node at a growing fraction of that time.
  const outcomes: string[] = [];
  const rounds = 10;
  for (let i = 0; i < rounds; i++) {
    const warm = imageManifest(config, [layer], `warm-${i}`);
    const warmStart = performance.now();
    await client.pushManifest(repo, `warm-${i}`, warm.toString());
    const delayMs = ((performance.now() - warmStart) * 1.2 * i) / (rounds - 1);
    const bytes = imageManifest(config, [layer], `race-${i}`);
    const tag = `race-${i}`;
    const req = manualRequest(`${node.url}/v2/${repo}/manifests/${tag}`, "PUT", {
      "content-type": OCI_MANIFEST,
      "content-length": bytes.length,
    });
    await req.write(bytes);
    req.end();
    const killAt = performance.now() + delayMs;
    while (performance.now() < killAt) await new Promise((r) => setImmediate(r));
    await node.kill();
    const answer = await req.response;
    node = await nodeDef.start();
    client = new OciClient(node.url);
    const tagged = await getManifest(client, repo, tag);
    const direct = await getManifest(client, repo, sha256(bytes));
    const acked = !(answer instanceof Error) && answer.status === 201;
    outcomes.push(`${tag}@${delayMs.toFixed(1)}ms:${acked ? "201" : "-"}:${tagged.status}/${direct.status}`);
    if (acked) {
      assert.equal(tagged.status, 200, `${tag} was acknowledged, so it is there by tag`);
      assert.equal(direct.status, 200, `${tag} was acknowledged, so it is there by digest`);
    }
    assert.equal(
      tagged.status,
      direct.status,
      `${tag} is half there: by tag ${tagged.status}, by digest ${direct.status} (${outcomes.join(" ")})`,
    );
    if (tagged.status === 200) {
      assert.deepEqual(tagged.bytes, bytes);
      assert.deepEqual(direct.bytes, bytes);
    } else {
      assert.deepEqual([tagged.code, direct.code], ["MANIFEST_UNKNOWN", "MANIFEST_UNKNOWN"]);
    }
  }
  t.diagnostic(`outcomes (tag@kill delay:ack:byTag/byDigest): ${outcomes.join(" ")}`);
});

test("kill -9 right after a burst of pushes: every acknowledged push survives", async (t) => {
  const after = cleanupStack(t);
  const nats = await startTestNats(after);
  const nodeDef = await restartableNode(after, nats.url);
  let node = await nodeDef.start();
  let client = new OciClient(node.url);
  const repo = "kill/burst";
  const config = await client.pushBlob(repo, Buffer.from('{"architecture":"arm64","os":"linux"}'));

  const ackedBlobs: Array<{ digest: string; bytes: Buffer }> = [];
  const ackedManifests: Array<{ tag: string; digest: string; bytes: Buffer }> = [];
  let failures = 0;
  let next = 0;
  let killing: Promise<void> | undefined;
  const target = 30;
  const worker = async () => {
    while (killing === undefined) {
      const i = next++;
      try {
        const blob = randomBytes(4096);
        const layer = await client.pushBlob(repo, blob);
        ackedBlobs.push({ digest: layer.digest, bytes: blob });
        const bytes = imageManifest(config, [layer], `burst-${i}`);
        const res = await client.fetch(`/v2/${repo}/manifests/t${i}`, {
          method: "PUT",
          headers: { "content-type": OCI_MANIFEST },
          body: bytes,
        });
        await res.arrayBuffer();
        if (res.status === 201) ackedManifests.push({ tag: `t${i}`, digest: sha256(bytes), bytes });
        else failures++;
      } catch {
        failures++; // the node died under this request
      }
      if (ackedManifests.length >= target) killing ??= node.kill();
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  await killing;
  t.diagnostic(
    `acknowledged: ${ackedBlobs.length} blobs, ${ackedManifests.length} manifests; ${failures} cut off`,
  );
  assert.ok(ackedManifests.length >= target);

  node = await nodeDef.start();
  client = new OciClient(node.url);
  for (const m of ackedManifests) {
    const byTag = await getManifest(client, repo, m.tag);
    assert.equal(byTag.status, 200, `${m.tag} lost`);
    assert.deepEqual(byTag.bytes, m.bytes);
    const byDigest = await getManifest(client, repo, m.digest);
    assert.equal(byDigest.status, 200, `${m.digest} lost`);
  }
  for (const b of ackedBlobs) {
    const got = await getBlob(client, repo, b.digest);
    assert.ok(Buffer.isBuffer(got), `blob ${b.digest} lost`);
    assert.equal(sha256(got), b.digest);
  }
  // Whatever was cut off is either whole or absent: no tag names a missing manifest.
  const tags = await client.fetch(`/v2/${repo}/tags/list`);
  for (const tag of ((await tags.json()) as { tags: string[] }).tags) {
    assert.equal((await getManifest(client, repo, tag)).status, 200, `tag ${tag} dangles`);
  }
});
