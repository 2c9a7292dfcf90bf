/**
 * Project quotas end to end (issue 15) against a real node with
 * authentication on and a real nats-server: usage counts distinct bytes once
 * per project (a layer in two repositories of one project, a manifest pushed
 * twice); an over-quota push is refused 403 DENIED "quota exceeded" on every
 * way in (monolithic blob, chunked upload, manifest by tag) and nothing of
 * it is visible (no blob link, no manifest, no tag, usage unchanged); a blob
 * the project holds already costs nothing; raising the quota lets the push
 * through; deletions free usage (and count as reclaimable until collected);
 * the Prometheus gauges; who may set and see a quota; and a second node of
 * the region, whose view replays the log from the start (what a rebuild
 * does), holds exactly the same numbers. The same refusals on a node whose
 * blobs are in S3 (a real S3 protocol server), where the two-request
 * monolithic form and chunked uploads take the S3 store's own paths.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { cleanupStack, eventually, startTestNats, startTestNode, tempDir } from "../../testing/harness.js";
import {
  type Descriptor,
  errorCode,
  OCI_CONFIG,
  OCI_MANIFEST,
  OciClient,
  sha256,
} from "../../testing/oci-client.js";
import { S3RVER_CREDENTIALS, startTestS3 } from "../../testing/s3.js";
import type { RunningNode } from "../server.js";

const cleanup = cleanupStack({ after });
const ADMIN_PASSWORD = "admin-secret-pw";
const PASSWORD = "correct horse battery";
let node: RunningNode;
let natsUrl: string;
let dataDir: string;

const basic = (user: string, password = PASSWORD) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const as = (user: string | undefined, password?: string, base = node.url) =>
  new OciClient(base, user === undefined ? undefined : basic(user, password));
const admin = (base = node.url) => as("admin", ADMIN_PASSWORD, base);

async function adminCall(method: string, path: string, json?: unknown, client = admin()): Promise<Response> {
  return client.fetch(`/admin/v1${path}`, {
    method,
    ...(json === undefined
      ? {}
      : { body: JSON.stringify(json), headers: { "content-type": "application/json" } }),
  });
}

async function ok(res: Response, status = 200): Promise<Record<string, unknown>> {
  const text = await res.text();
  assert.equal(res.status, status, `${res.url}: ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

interface Usage {
  project: string;
  limitBytes: number | null;
  usedBytes: number;
  blobs: number;
  reclaimableBytes: number;
}

async function usage(project: string, base = node.url): Promise<Usage> {
  return (await ok(await adminCall("GET", `/quotas/${project}`, undefined, admin(base)))) as unknown as Usage;
}

async function setQuota(project: string, limitBytes: number | null): Promise<void> {
  await ok(await adminCall("PUT", `/quotas/${project}`, { limitBytes }));
}

/** A refusal of the push for the quota: the exact status, code and message. */
async function assertQuotaRefusal(res: Response): Promise<void> {
  const text = await res.text();
  assert.equal(res.status, 403, text);
  const body = JSON.parse(text) as { errors: Array<{ code: string; message: string }> };
  assert.equal(body.errors[0]!.code, "DENIED");
  assert.match(body.errors[0]!.message, /^quota exceeded/);
}

async function blobStatus(repo: string, digest: string): Promise<number> {
  return (await admin().fetch(`/v2/${repo}/blobs/${digest}`, { method: "HEAD" })).status;
}

const dev = () => as("dev");
let layer: Buffer;
let config: Buffer;
let manifestBytes: number;
let baseline: number;
/** The manifest pushed once the quota was raised (only team/c holds it). */
let v2: { digest: string; size: number };

function manifestOf(cfg: Descriptor, layers: Descriptor[], annotations?: Record<string, string>) {
  return {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: cfg,
    layers,
    ...(annotations === undefined ? {} : { annotations }),
  };
}

before(async () => {
  const nats = await startTestNats(cleanup);
  natsUrl = nats.url;
  dataDir = tempDir(cleanup);
  const passwordFile = join(dataDir, "admin-password");
  writeFileSync(passwordFile, `${ADMIN_PASSWORD}\n`);
  node = await startTestNode(cleanup, {
    nats: nats.url,
    dataDir,
    auth: { enabled: true, adminPasswordFile: passwordFile, loginFailures: 1000 },
  });
  await ok(await adminCall("PUT", "/projects/team", { public: false }));
  for (const [name, role] of [
    ["dev", "developer"],
    ["padmin", "projectAdmin"],
  ] as const) {
    await ok(await adminCall("PUT", `/users/${name}`, { password: PASSWORD }));
    await ok(await adminCall("PUT", `/projects/team/members/${name}`, { role }));
  }
  await ok(await adminCall("PUT", "/users/outsider", { password: PASSWORD }));
  layer = randomBytes(4096);
  config = Buffer.from('{"architecture":"amd64","os":"linux"}');
});

describe("project quotas", () => {
  test("usage counts each blob once per project: the same layer and manifest in two repositories", async () => {
    assert.deepEqual(await usage("team"), {
      region: "test",
      project: "team",
      limitBytes: null,
      usedBytes: 0,
      blobs: 0,
      reclaimableBytes: 0,
    });
    const cfg = await dev().pushBlob("team/a", config, OCI_CONFIG);
    const lay = await dev().pushBlob("team/a", layer);
    const put = await dev().pushManifest("team/a", "v1", manifestOf(cfg, [lay]));
    manifestBytes = put.bytes.byteLength;
    baseline = config.byteLength + layer.byteLength + manifestBytes;
    let u = await usage("team");
    assert.equal(u.usedBytes, baseline);
    assert.equal(u.blobs, 3);
    // The same content in a second repository of the project: stored once, counted once.
    await dev().pushBlob("team/b", config, OCI_CONFIG);
    await dev().pushBlob("team/b", layer);
    await dev().pushManifest("team/b", "v1", manifestOf(cfg, [lay]));
    u = await usage("team");
    assert.equal(u.usedBytes, baseline);
    assert.equal(u.blobs, 3);
    // Another project holding the layer pays for it itself.
    await admin().pushBlob("other/x", layer);
    assert.equal((await usage("other")).usedBytes, layer.byteLength);
    assert.equal((await usage("team")).usedBytes, baseline);
  });

  test("only a system admin sets a quota; members see their project's, nobody else", async () => {
    for (const user of ["dev", "padmin", "outsider"]) {
      const res = await adminCall("PUT", "/quotas/team", { limitBytes: 1 }, as(user));
      assert.equal(res.status, 403, user);
      assert.equal(await errorCode(res), "DENIED");
    }
    const anonymous = await adminCall("PUT", "/quotas/team", { limitBytes: 1 }, as(undefined));
    assert.equal(anonymous.status, 401);
    assert.equal(await errorCode(anonymous), "UNAUTHORIZED");
    for (const body of [{ limitBytes: -1 }, { limitBytes: 1.5 }, { limitBytes: "1" }, {}, { limit: 1 }]) {
      const res = await adminCall("PUT", "/quotas/team", body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(await errorCode(res), "UNSUPPORTED");
    }
    const badName = await adminCall("PUT", "/quotas/Team", { limitBytes: 1 });
    assert.equal(badName.status, 400);
    // Nothing was set by any of them.
    assert.equal((await usage("team")).limitBytes, null);
    assert.equal((await ok(await adminCall("GET", "/quotas/team", undefined, dev()))).usedBytes, baseline);
    const outsider = await adminCall("GET", "/quotas/team", undefined, as("outsider"));
    assert.equal(outsider.status, 403);
    assert.equal(await errorCode(outsider), "DENIED");
    assert.equal((await adminCall("GET", "/quotas", undefined, dev())).status, 403);
    const list = (await ok(await adminCall("GET", "/quotas"))).quotas as Usage[];
    assert.deepEqual(
      list.map((q) => q.project),
      ["other", "team"],
    );
  });

  test("an over-quota push is refused 403 DENIED before anything of it is visible", async () => {
    await setQuota("team", baseline + 1000);
    assert.equal((await usage("team")).limitBytes, baseline + 1000);
    const big = randomBytes(2048);
    const digest = sha256(big);
    // Monolithic: POST ?digest= with the whole body.
    const mono = await dev().fetch(`/v2/team/a/blobs/uploads/?digest=${digest}`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: big,
    });
    await assertQuotaRefusal(mono);
    assert.equal(await blobStatus("team/a", digest), 404);
    // Chunked: POST, PATCH, then PUT ?digest= (refused at completion).
    const start = await dev().fetch("/v2/team/a/blobs/uploads/", { method: "POST" });
    assert.equal(start.status, 202);
    const patch = await dev().fetch(start.headers.get("location")!, {
      method: "PATCH",
      headers: { "content-type": "application/octet-stream", "content-range": `0-${big.byteLength - 1}` },
      body: big,
    });
    assert.equal(patch.status, 202);
    const finish = new URL(patch.headers.get("location")!, node.url);
    finish.searchParams.set("digest", digest);
    await assertQuotaRefusal(await dev().fetch(finish.pathname + finish.search, { method: "PUT" }));
    assert.equal(await blobStatus("team/a", digest), 404);
    // A cross-repository mount of a blob only another project holds is a new blob for this one.
    const foreign = randomBytes(2048);
    await admin().pushBlob("other/x", foreign);
    const refusedMount = await admin().fetch(
      `/v2/team/c/blobs/uploads/?mount=${sha256(foreign)}&from=other/x`,
      {
        method: "POST",
      },
    );
    await assertQuotaRefusal(refusedMount);
    assert.equal(await blobStatus("team/c", sha256(foreign)), 404);
    // One the project holds costs nothing.
    const mount = await dev().fetch(`/v2/team/c/blobs/uploads/?mount=${sha256(layer)}&from=team/a`, {
      method: "POST",
    });
    assert.equal(mount.status, 201, "a blob the project holds costs nothing, at any usage");
    assert.equal((await usage("team")).usedBytes, baseline);
    assert.equal((await usage("team")).blobs, 3);
  });

  test("a manifest over the quota: no manifest, no tag; a blob the project holds is free", async () => {
    const u = await usage("team");
    await setQuota("team", u.usedBytes);
    // Re-pushing held blobs into a third repository costs nothing.
    const cfg = await dev().pushBlob("team/c", config, OCI_CONFIG);
    const lay = await dev().pushBlob("team/c", layer);
    const bytes = Buffer.from(JSON.stringify(manifestOf(cfg, [lay], { "org.example.build": "2" })));
    const res = await dev().fetch("/v2/team/c/manifests/v2", {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: bytes,
    });
    await assertQuotaRefusal(res);
    assert.equal((await dev().fetch("/v2/team/c/manifests/v2", { method: "HEAD" })).status, 404);
    assert.equal(
      (await dev().fetch(`/v2/team/c/manifests/${sha256(bytes)}`, { method: "HEAD" })).status,
      404,
    );
    const tags = await dev().fetch("/v2/team/c/tags/list");
    assert.ok(tags.status === 404 || !((await tags.json()) as { tags: string[] }).tags.includes("v2"));
    // The same manifest the project holds already, tagged in another repository: free.
    const again = await dev().fetch("/v2/team/c/manifests/v1", {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: Buffer.from(JSON.stringify(manifestOf(cfg, [lay]))),
    });
    assert.equal(again.status, 201, await again.text());
    assert.deepEqual(await usage("team"), { ...u, limitBytes: u.usedBytes });

    // Raising the quota lets the refused push through.
    await setQuota("team", u.usedBytes + bytes.byteLength);
    const retried = await dev().pushManifest("team/c", "v2", JSON.parse(bytes.toString()));
    assert.equal(retried.digest, sha256(bytes));
    v2 = { digest: retried.digest, size: bytes.byteLength };
    assert.equal((await usage("team")).usedBytes, u.usedBytes + bytes.byteLength);
    // Exactly at the quota now: one more byte is refused, removing the quota lets it in.
    const one = Buffer.from("x");
    await assertQuotaRefusal(
      await dev().fetch(`/v2/team/c/blobs/uploads/?digest=${sha256(one)}`, { method: "POST", body: one }),
    );
    await setQuota("team", null);
    await dev().pushBlob("team/c", one);
    assert.equal((await usage("team")).usedBytes, u.usedBytes + bytes.byteLength + 1);
  });

  test("deleting content frees usage once its last holder in the project goes", async () => {
    const was = await usage("team");
    const extra = was.usedBytes - baseline;
    // team/b holds only what team/a and team/c hold too: nothing is freed.
    await ok(await adminCall("DELETE", "/repositories/team/b"), 202);
    assert.deepEqual(await usage("team"), was);
    // A manifest deleted through the OCI API: its bytes leave the usage, and wait for collection.
    const del = await admin().fetch(`/v2/team/c/manifests/${v2.digest}`, { method: "DELETE" });
    assert.equal(del.status, 202);
    assert.equal((await usage("team")).usedBytes, was.usedBytes - v2.size);
    assert.equal((await usage("team")).reclaimableBytes, was.reclaimableBytes + v2.size);
    await ok(await adminCall("DELETE", "/repositories/team/c"), 202);
    const left = await usage("team");
    // team/a still holds config, layer and the v1 manifest; team/c's own content is gone.
    assert.equal(left.usedBytes, baseline);
    assert.equal(left.blobs, 3);
    assert.equal(left.reclaimableBytes, extra);
    await ok(await adminCall("DELETE", "/repositories/team/a"), 202);
    const gone = await usage("team");
    assert.equal(gone.usedBytes, 0);
    assert.equal(gone.blobs, 0);
    assert.equal(gone.reclaimableBytes, was.usedBytes);
  });

  test("the Prometheus gauges", async () => {
    await setQuota("team", 5_000_000);
    const text = await (await fetch(`${node.url}/metrics`)).text();
    const value = (name: string, project: string) =>
      Number(new RegExp(`^${name}\\{[^}]*project="${project}"[^}]*\\} (\\S+)$`, "m").exec(text)?.[1]);
    const team = await usage("team");
    const other = await usage("other");
    assert.equal(value("meridian_project_storage_bytes", "team"), team.usedBytes);
    assert.equal(value("meridian_project_storage_bytes", "other"), other.usedBytes);
    assert.equal(value("meridian_project_blobs", "other"), 2);
    assert.equal(value("meridian_project_reclaimable_bytes", "team"), team.reclaimableBytes);
    assert.equal(value("meridian_project_quota_bytes", "team"), 5_000_000);
    assert.ok(Number.isNaN(value("meridian_project_quota_bytes", "other")), "no quota, no gauge");
    assert.match(text, /meridian_project_storage_bytes\{project="team",region="test"\}/);
  });

  test("concurrent pushes through one node never take the project over its quota together", async () => {
    const size = 10_000;
    await setQuota("conc", Math.floor(2.5 * size));
    const blobs = Array.from({ length: 8 }, () => randomBytes(size));
    const answers = await Promise.all(
      blobs.map((b) =>
        admin().fetch(`/v2/conc/app/blobs/uploads/?digest=${sha256(b)}`, { method: "POST", body: b }),
      ),
    );
    let admitted = 0;
    for (const res of answers) {
      if (res.status === 201) admitted++;
      else await assertQuotaRefusal(res);
    }
    assert.ok(admitted <= 2, `${admitted} admitted`);
    const u = await usage("conc");
    assert.equal(u.usedBytes, admitted * size);
    // Refusals may be conservative under contention; one at a time, what fits goes in.
    for (const b of blobs) {
      if ((await usage("conc")).usedBytes + size > 2.5 * size) break;
      await admin().pushBlob("conc/app", b);
    }
    assert.equal((await usage("conc")).usedBytes, 2 * size);
  });

  test("another node of the region, its view replayed from the whole log, holds the same numbers", async () => {
    const second = await startTestNode(cleanup, {
      nats: natsUrl,
      dataDir: tempDir(cleanup),
      storage: { root: join(dataDir, "store"), fsync: false },
      auth: { enabled: true, tokenKeyFile: join(dataDir, "token-key.pem"), loginFailures: 1000 },
    });
    const expected = (await ok(await adminCall("GET", "/quotas"))).quotas;
    await eventually(
      async () =>
        JSON.stringify((await ok(await adminCall("GET", "/quotas", undefined, admin(second.url)))).quotas) ===
        JSON.stringify(expected),
      10_000,
    );
    // And its pushes are held to the same quota.
    const otherUsed = (await usage("other")).usedBytes;
    await setQuota("other", otherUsed);
    await eventually(async () => (await usage("other", second.url)).limitBytes === otherUsed, 10_000);
    const more = Buffer.from("more bytes");
    await assertQuotaRefusal(
      await admin(second.url).fetch(`/v2/other/x/blobs/uploads/?digest=${sha256(more)}`, {
        method: "POST",
        body: more,
      }),
    );
  });
});

describe("project quotas on the S3 store", () => {
  test("over-quota chunked and two-request pushes are refused; nothing linked; within quota succeeds", async () => {
    const s3 = await startTestS3(["quota-bucket"]);
    cleanup(() => s3.stop());
    const work = tempDir(cleanup);
    const credentials = join(work, "s3-credentials.json");
    writeFileSync(credentials, JSON.stringify(S3RVER_CREDENTIALS));
    const s3Node = await startTestNode(cleanup, {
      nats: (await startTestNats(cleanup)).url,
      dataDir: work,
      storage: {
        type: "s3",
        s3: {
          bucket: "quota-bucket",
          endpoint: s3.endpoint,
          forcePathStyle: true,
          credentialsFile: credentials,
        },
      },
    });
    const c = new OciClient(s3Node.url);
    // Without auth, admin writes come from loopback (auth.adminWriteAddresses).
    const set = await c.fetch("/admin/v1/quotas/s3p", {
      method: "PUT",
      body: JSON.stringify({ limitBytes: 10_000 }),
      headers: { "content-type": "application/json" },
    });
    assert.equal(set.status, 200, await set.text());
    const fits = randomBytes(6000);
    await c.pushBlobChunked("s3p/app", fits, 2500);
    const tooBig = randomBytes(5000);
    const digest = sha256(tooBig);
    // Chunked: refused at the PUT that completes it.
    const start = await c.fetch("/v2/s3p/app/blobs/uploads/", { method: "POST" });
    const patch = await c.fetch(start.headers.get("location")!, {
      method: "PATCH",
      headers: { "content-type": "application/octet-stream", "content-range": `0-${tooBig.byteLength - 1}` },
      body: tooBig,
    });
    assert.equal(patch.status, 202);
    const done = new URL(patch.headers.get("location")!, s3Node.url);
    done.searchParams.set("digest", digest);
    await assertQuotaRefusal(await c.fetch(done.pathname + done.search, { method: "PUT" }));
    // Two requests: an empty POST, then PUT ?digest= with the whole blob (docker's and skopeo's form).
    const empty = await c.fetch("/v2/s3p/app/blobs/uploads/", { method: "POST" });
    const put = new URL(empty.headers.get("location")!, s3Node.url);
    put.searchParams.set("digest", digest);
    await assertQuotaRefusal(
      await c.fetch(put.pathname + put.search, {
        method: "PUT",
        headers: { "content-type": "application/octet-stream" },
        body: tooBig,
      }),
    );
    assert.equal((await c.fetch(`/v2/s3p/app/blobs/${digest}`, { method: "HEAD" })).status, 404);
    const shown = (await (await c.fetch("/admin/v1/quotas/s3p")).json()) as Usage;
    assert.equal(shown.usedBytes, fits.byteLength);
    assert.equal(shown.blobs, 1);
  });
});
