/**
 * Garbage collection (node/data/gc.ts, issue 15 item 1) on real stores with
 * a real nats-server: what goes (a deleted image's own blobs, a link no
 * manifest uses, bytes no event ever linked), what stays byte-for-byte (live
 * images, a layer a deleted image shared with a live one, anything younger
 * than the grace), a dry run that changes nothing, a push of the very bytes
 * being collected racing the sweep and losing nothing, the S3 store, the
 * admin API's refusals (401 without credentials, 403 DENIED for a
 * non-admin), and the run's events and metrics.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { cleanupStack, startTestNats, startTestNode, tempDir } from "../../testing/harness.js";
import { type Descriptor, errorCode, OCI_CONFIG, OciClient, sha256 } from "../../testing/oci-client.js";
import { S3RVER_CREDENTIALS, startTestS3 } from "../../testing/s3.js";

const cleanup = cleanupStack({ after });
/** Grace 3 s: the tests wait it out instead of using `now` where the grace matters. */
const GRACE_MINUTES = 0.05;
const GRACE_MS = GRACE_MINUTES * 60_000;
/** Undelete window 6 s: deleted content is kept that long (longer than the grace, as in production). */
const UNDELETE_MS = 6_000;
const ADMIN_PASSWORD = "gc-admin-secret";
const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

interface RunState {
  runId: string;
  state: string;
  dryRun: boolean;
  error?: string;
  result: {
    scanned: number;
    candidates: number;
    candidateBytes: number;
    collected: number;
    collectedBytes: number;
    restored: number;
    items: Array<{ digest: string; size: number; reason: string }>;
  };
}

/** Start a run through the admin API and wait for its end. */
async function runGc(
  base: string,
  options: { dryRun?: boolean; now?: boolean } = {},
  authorization?: string,
): Promise<RunState> {
  const headers: Record<string, string> = authorization === undefined ? {} : { authorization };
  const res = await fetch(`${base}/admin/v1/gc/runs`, {
    method: "POST",
    headers: { ...headers, "content-type": "application/json" },
    body: JSON.stringify(options),
  });
  assert.equal(res.status, 202, await res.clone().text());
  const { runId } = (await res.json()) as { runId: string };
  for (let i = 0; i < 600; i++) {
    const state = (await (await fetch(`${base}/admin/v1/gc/runs/${runId}`, { headers })).json()) as RunState;
    if (state.state !== "running") {
      assert.equal(state.state, "ok", state.error);
      return state;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gc run ${runId} did not finish`);
}

interface Image {
  repo: string;
  tag: string;
  digest: string;
  manifestBytes: Buffer;
  blobs: Array<{ descriptor: Descriptor; bytes: Buffer }>;
}

/** Push an image whose blobs are `layers` (and a fresh config), by tag. */
async function pushImage(client: OciClient, repo: string, tag: string, layers: Buffer[]): Promise<Image> {
  const configBytes = Buffer.from(JSON.stringify({ os: "linux", nonce: randomBytes(8).toString("hex") }));
  const blobs: Image["blobs"] = [];
  const config = await client.pushBlob(repo, configBytes, OCI_CONFIG);
  blobs.push({ descriptor: config, bytes: configBytes });
  const layerDescs: Descriptor[] = [];
  for (const bytes of layers) {
    const d = await client.pushBlob(repo, bytes);
    layerDescs.push(d);
    blobs.push({ descriptor: d, bytes });
  }
  const manifest = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config,
    layers: layerDescs,
  };
  const { digest, bytes } = await client.pushManifest(repo, tag, manifest);
  return { repo, tag, digest, manifestBytes: bytes, blobs };
}

/** Pull an image by tag and compare every byte. */
async function assertPullsIntact(client: OciClient, image: Image): Promise<void> {
  const m = await client.fetch(`/v2/${image.repo}/manifests/${image.tag}`, {
    headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
  });
  assert.equal(m.status, 200, `${image.repo}:${image.tag}`);
  assert.ok(Buffer.from(await m.arrayBuffer()).equals(image.manifestBytes));
  for (const { descriptor, bytes } of image.blobs) {
    const b = await client.fetch(`/v2/${image.repo}/blobs/${descriptor.digest}`);
    assert.equal(b.status, 200, `${image.repo} ${descriptor.digest}`);
    assert.ok(Buffer.from(await b.arrayBuffer()).equals(bytes), `${descriptor.digest} bytes`);
  }
}

async function deleteManifest(client: OciClient, repo: string, digest: string): Promise<void> {
  const res = await client.fetch(`/v2/${repo}/manifests/${digest}`, { method: "DELETE" });
  assert.equal(res.status, 202);
}

/**
 * A blob collected with `now` while a client pushes it again during the run's
 * settle: set aside (its link dropped), pushed again, then kept, linked and
 * intact; the run counts it put back. Needs a node whose settle is ≥ 2 s.
 */
async function putBackDuringSettle(node: string): Promise<Descriptor> {
  const c = new OciClient(node);
  const bytes = randomBytes(5000);
  const blob = await c.pushBlob("team/settle", bytes);
  const res = await fetch(`${node}/admin/v1/gc/runs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ now: true }),
  });
  const { runId } = (await res.json()) as { runId: string };
  const state = async () =>
    (await (await fetch(`${node}/admin/v1/gc/runs/${runId}`)).json()) as RunState & {
      progress: { phase: string };
    };
  // Set aside (its link dropped: HEAD says absent), then pushed again by a client before the check.
  for (let i = 0; i < 200 && (await state()).progress.phase !== "settle"; i++)
    await new Promise((r) => setTimeout(r, 20));
  assert.equal((await state()).progress.phase, "settle");
  assert.equal((await c.fetch(`/v2/team/settle/blobs/${blob.digest}`, { method: "HEAD" })).status, 404);
  await c.pushBlob("team/settle", bytes);
  let done = await state();
  for (let i = 0; i < 200 && done.state === "running"; i++) {
    await new Promise((r) => setTimeout(r, 50));
    done = await state();
  }
  assert.equal(done.state, "ok");
  assert.equal(done.result.candidates, 1);
  assert.equal(done.result.restored, 1);
  assert.equal(done.result.collected, 0);
  const got = await c.fetch(`/v2/team/settle/blobs/${blob.digest}`);
  assert.equal(got.status, 200);
  assert.ok(Buffer.from(await got.arrayBuffer()).equals(bytes));
  return blob;
}

const waitOutGrace = () => new Promise((r) => setTimeout(r, GRACE_MS + 300));

describe("gc on the filesystem store", () => {
  let node: string;
  let client: OciClient;
  let store: string;
  const hasBytes = (digest: string) =>
    existsSync(join(store, "blobs", "sha256", digest.slice(7, 9), digest.slice(7)));

  before(async () => {
    const nats = await startTestNats(cleanup);
    const dataDir = tempDir(cleanup);
    store = join(dataDir, "store");
    const running = await startTestNode(cleanup, {
      nats: nats.url,
      dataDir,
      gc: { graceMinutes: GRACE_MINUTES, settleMs: 300, intervalMinutes: 0 },
      undeleteWindowHours: UNDELETE_MS / 3_600_000,
    });
    node = running.url;
    client = new OciClient(node);
  });

  test("collects a deleted image, an unused link and orphan bytes; keeps live images byte-for-byte; a dry run first changes nothing", async () => {
    const shared = randomBytes(3000);
    const live = await pushImage(client, "team/app", "live", [shared, randomBytes(2000)]);
    const gone = await pushImage(client, "team/app", "gone", [shared, randomBytes(2500)]);
    await deleteManifest(client, "team/app", gone.digest);
    const unusedBytes = randomBytes(1500);
    const unused = await client.pushBlob("team/other", unusedBytes);
    // Bytes no event ever linked (a push that died between its bytes and its event).
    const orphanBytes = randomBytes(700);
    const orphan = sha256(orphanBytes);
    mkdirSync(join(store, "blobs", "sha256", orphan.slice(7, 9)), { recursive: true });
    writeFileSync(join(store, "blobs", "sha256", orphan.slice(7, 9), orphan.slice(7)), orphanBytes);
    // Past the undelete window of the deleted image (and so past the grace of everything).
    await new Promise((r) => setTimeout(r, UNDELETE_MS + 300));
    // Pushed after the grace began for the others: young, so kept even though nothing uses it.
    const youngBytes = randomBytes(900);
    const young = await client.pushBlob("team/other", youngBytes);

    const garbage = [gone.digest, gone.blobs[0]!.descriptor.digest, gone.blobs[2]!.descriptor.digest];
    const dry = await runGc(node, { dryRun: true });
    assert.equal(dry.dryRun, true);
    const listed = new Map(dry.result.items.map((i) => [i.digest, i.reason]));
    assert.deepEqual(
      [...listed.keys()].sort(),
      [...garbage, unused.digest, orphan].sort(),
      "the dry run lists exactly the garbage",
    );
    assert.equal(listed.get(orphan), "orphan");
    assert.equal(listed.get(unused.digest), "unreferenced");
    assert.equal(dry.result.collected, 0);
    for (const d of [...garbage, unused.digest, orphan]) assert.ok(hasBytes(d), `dry run removed ${d}`);
    const stillLinked = await client.fetch(`/v2/team/other/blobs/${unused.digest}`, { method: "HEAD" });
    assert.equal(stillLinked.status, 200, "a dry run drops no link");

    const run = await runGc(node);
    assert.equal(run.result.collected, 5);
    assert.equal(run.result.restored, 0);
    const goneBytes = gone.manifestBytes.byteLength + gone.blobs[0]!.bytes.byteLength + 2500;
    assert.equal(run.result.collectedBytes, goneBytes + 1500 + 700);
    for (const d of [...garbage, unused.digest, orphan]) assert.ok(!hasBytes(d), `${d} was not collected`);
    // The collected link is gone too: a client finds no blob and uploads it again.
    const head = await client.fetch(`/v2/team/other/blobs/${unused.digest}`, { method: "HEAD" });
    assert.equal(head.status, 404);
    assert.ok(hasBytes(young.digest), "a blob younger than the grace is kept");
    await assertPullsIntact(client, live);
    assert.ok(hasBytes(sha256(shared)), "the layer the deleted image shared with a live one stays");

    // Why the blob is missing: its collection, by which run, from which repository.
    const why = (await (await fetch(`${node}/admin/v1/gc/collected/${unused.digest}`)).json()) as {
      collections: Array<{ runId: string; reason: string; repos: string[]; region: string }>;
    };
    assert.deepEqual(
      why.collections.map((c) => [c.runId, c.reason, c.repos, c.region]),
      [[run.runId, "unreferenced", ["team/other"], "test"]],
    );
    // The bytes can come back: a push of the collected blob works as a fresh one.
    const again = await client.pushBlob("team/other", unusedBytes);
    assert.equal(again.digest, unused.digest);
    const back = await client.fetch(`/v2/team/other/blobs/${unused.digest}`);
    assert.ok(Buffer.from(await back.arrayBuffer()).equals(unusedBytes));

    // The run is recorded: its events (GET answers from the view on another node) and metrics.
    const metrics = await (await fetch(`${node}/metrics`)).text();
    assert.match(metrics, /meridian_node_gc_runs_total\{[^}]*outcome="ok"[^}]*\} 1/);
    assert.match(metrics, /meridian_node_gc_runs_total\{[^}]*outcome="dry-run"[^}]*\} 1/);
    assert.match(metrics, /meridian_node_gc_reclaimed_blobs_total\{[^}]*\} 5/);
  });

  test("deleted content inside the undelete window is kept unless --now; --now collects it at once", async () => {
    const image = await pushImage(client, "team/undo", "v1", [randomBytes(1200)]);
    await deleteManifest(client, "team/undo", image.digest);
    await waitOutGrace();
    const kept = await runGc(node);
    assert.ok(!kept.result.items.some((i) => i.digest === image.digest), "within the undelete window");
    assert.ok(hasBytes(image.digest));
    const now = await runGc(node, { now: true });
    assert.ok(now.result.items.some((i) => i.digest === image.digest && i.reason === "deleted"));
    assert.ok(!hasBytes(image.digest));
  });

  test("a project's storage usage follows a collection: the freed link leaves usage, the collected bytes leave reclaimable", async () => {
    const usage = async () => {
      const res = await fetch(`${node}/admin/v1/quotas/quotagc`);
      assert.equal(res.status, 200);
      return (await res.json()) as { usedBytes: number; blobs: number; reclaimableBytes: number };
    };
    const image = await pushImage(client, "quotagc/app", "v1", [randomBytes(3000)]);
    const pushed = await usage();
    assert.ok(pushed.usedBytes >= 3000, JSON.stringify(pushed));
    await deleteManifest(client, "quotagc/app", image.digest);
    const run = await runGc(node, { now: true });
    assert.ok(run.result.collected > 0);
    // Nothing of the project is left: its links were collected with the bytes.
    assert.deepEqual(await usage(), { ...(await usage()), usedBytes: 0, blobs: 0, reclaimableBytes: 0 });
  });

  test("pushes of the very bytes being collected, racing the sweep, lose nothing", async () => {
    // Ten images, deleted (their blobs and manifests are garbage once the grace passed)…
    const layers = Array.from({ length: 10 }, () => randomBytes(4000));
    const first = [];
    for (const [i, layer] of layers.entries())
      first.push(await pushImage(client, "team/race", `r${i}`, [layer]));
    for (const image of first) await deleteManifest(client, "team/race", image.digest);
    await waitOutGrace();
    // …then pushed again (the same layers) while a run collects them; a client retries a
    // push the sweep made fail (its link dropped under it), as real clients do.
    const gc = runGc(node, { now: true });
    const acknowledged: Image[] = [];
    await Promise.all(
      layers.map(async (layer, i) => {
        for (let attempt = 0; attempt < 5; attempt++) {
          try {
            acknowledged.push(await pushImage(client, "team/race", `r${i}`, [layer]));
            return;
          } catch {
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        throw new Error(`push r${i} never went through`);
      }),
    );
    const run = await gc;
    assert.ok(run.result.candidates > 0, "the run had garbage to collect");
    assert.equal(acknowledged.length, layers.length);
    for (const image of acknowledged) await assertPullsIntact(client, image);
    // And a second run (past the grace) finds every re-pushed image live.
    await waitOutGrace();
    const second = await runGc(node);
    for (const image of acknowledged) {
      assert.ok(!second.result.items.some((i) => i.digest === image.digest));
      await assertPullsIntact(client, image);
    }
  });
});

describe("gc authorization", () => {
  let node: string;
  before(async () => {
    const nats = await startTestNats(cleanup);
    const dir = tempDir(cleanup);
    const passwordFile = join(dir, "admin-password");
    writeFileSync(passwordFile, `${ADMIN_PASSWORD}\n`);
    node = (
      await startTestNode(cleanup, {
        nats: nats.url,
        auth: { enabled: true, adminPasswordFile: passwordFile, loginFailures: 1000 },
        gc: { graceMinutes: GRACE_MINUTES, settleMs: 100, intervalMinutes: 0 },
      })
    ).url;
  });

  test("no credentials is 401, a user who is not a system admin is 403 DENIED, a system admin runs it", async () => {
    const admin = basic("admin", ADMIN_PASSWORD);
    const created = await fetch(`${node}/admin/v1/users/carol`, {
      method: "PUT",
      headers: { authorization: admin, "content-type": "application/json" },
      body: JSON.stringify({ password: "carol-password-1", systemAdmin: false }),
    });
    assert.equal(created.status, 200, await created.clone().text());
    const now = JSON.stringify({ now: true });
    const anonymous = await fetch(`${node}/admin/v1/gc/runs`, { method: "POST", body: now });
    assert.equal(anonymous.status, 401);
    const carol = await fetch(`${node}/admin/v1/gc/runs`, {
      method: "POST",
      headers: { authorization: basic("carol", "carol-password-1"), "content-type": "application/json" },
      body: now,
    });
    assert.equal(carol.status, 403);
    assert.equal(await errorCode(carol), "DENIED");
    for (const body of ['{"now":"yes"}', '{"everything":true}', "[1]"]) {
      const bad = await fetch(`${node}/admin/v1/gc/runs`, {
        method: "POST",
        headers: { authorization: admin, "content-type": "application/json" },
        body,
      });
      assert.equal(bad.status, 400, body);
      assert.equal(await errorCode(bad), "UNSUPPORTED", body);
    }
    const run = await runGc(node, { dryRun: true }, admin);
    assert.equal(run.dryRun, true);
  });
});

describe("gc puts back what a write needed during the settle", () => {
  test("a blob pushed again while its old copy is set aside is kept, linked and intact", async () => {
    const nats = await startTestNats(cleanup);
    const dataDir = tempDir(cleanup);
    const node = (
      await startTestNode(cleanup, {
        nats: nats.url,
        dataDir,
        gc: { graceMinutes: GRACE_MINUTES, settleMs: 2_000, intervalMinutes: 0 },
      })
    ).url;
    const blob = await putBackDuringSettle(node);
    assert.ok(
      existsSync(join(dataDir, "store", "blobs", "sha256", blob.digest.slice(7, 9), blob.digest.slice(7))),
    );
  });
});

describe("scheduled gc", () => {
  test("with gc.intervalMinutes set, runs start by themselves (metrics count them) and collect", async () => {
    const nats = await startTestNats(cleanup);
    const node = (
      await startTestNode(cleanup, {
        nats: nats.url,
        gc: { graceMinutes: 0, settleMs: 50, intervalMinutes: 0.01 },
        undeleteWindowHours: 1 / 3_600_000,
      })
    ).url;
    const c = new OciClient(node);
    const image = await pushImage(c, "team/sched", "v1", [randomBytes(800)]);
    await deleteManifest(c, "team/sched", image.digest);
    let metrics = "";
    for (let i = 0; i < 100; i++) {
      metrics = await (await fetch(`${node}/metrics`)).text();
      if (/meridian_node_gc_reclaimed_blobs_total\{[^}]*\} [1-9]/.test(metrics)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(metrics, /meridian_node_gc_runs_total\{[^}]*outcome="ok"[^}]*\} [1-9]/);
    assert.match(metrics, /meridian_node_gc_reclaimed_blobs_total\{[^}]*\} [1-9]/);
    const gone = await c.fetch(`/v2/team/sched/blobs/${image.blobs[1]!.descriptor.digest}`);
    assert.equal(gone.status, 404);
  });
});

describe("gc on the S3 store", () => {
  const BUCKET = "meridian-gc";
  let node: string;
  let client: OciClient;
  let s3: S3Client;
  const objects = async () => {
    const res = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "reg/blobs/" }));
    return new Set((res.Contents ?? []).map((o) => `sha256:${o.Key!.split("/").at(-1)}`));
  };

  before(async () => {
    const server = await startTestS3([BUCKET]);
    cleanup(() => server.stop());
    const nats = await startTestNats(cleanup);
    const dir = tempDir(cleanup);
    const credentials = join(dir, "s3-credentials.json");
    writeFileSync(credentials, JSON.stringify(S3RVER_CREDENTIALS));
    s3 = new S3Client({
      endpoint: server.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: S3RVER_CREDENTIALS,
    });
    cleanup(() => s3.destroy());
    node = (
      await startTestNode(cleanup, {
        nats: nats.url,
        storage: {
          type: "s3",
          s3: {
            bucket: BUCKET,
            prefix: "reg/",
            endpoint: server.endpoint,
            forcePathStyle: true,
            credentialsFile: credentials,
          },
        },
        gc: { graceMinutes: GRACE_MINUTES, settleMs: 2_000, intervalMinutes: 0 },
      })
    ).url;
    client = new OciClient(node);
  });

  test("collects a deleted image's objects and keeps a live one byte-for-byte; nothing left aside", async () => {
    const shared = randomBytes(2048);
    const live = await pushImage(client, "team/s3", "live", [shared]);
    const gone = await pushImage(client, "team/s3", "gone", [shared, randomBytes(1024)]);
    await deleteManifest(client, "team/s3", gone.digest);
    const garbage = [gone.digest, gone.blobs[0]!.descriptor.digest, gone.blobs[2]!.descriptor.digest];
    const dry = await runGc(node, { dryRun: true, now: true });
    assert.deepEqual(dry.result.items.map((i) => i.digest).sort(), [...garbage].sort());
    for (const d of garbage) assert.ok((await objects()).has(d), "the dry run removed nothing");
    const run = await runGc(node, { now: true });
    assert.equal(run.result.collected, garbage.length);
    const left = await objects();
    for (const d of garbage) assert.ok(!left.has(d), `${d} still stored`);
    await assertPullsIntact(client, live);
    const aside = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "reg/gc/" }));
    assert.equal(aside.Contents?.length ?? 0, 0, "nothing stays set aside after a run");
  });

  test("a blob pushed again while set aside (copy then delete on S3) is kept, linked and intact", async () => {
    const blob = await putBackDuringSettle(node);
    assert.ok((await objects()).has(blob.digest));
    const aside = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "reg/gc/" }));
    assert.equal(aside.Contents?.length ?? 0, 0);
  });
});
