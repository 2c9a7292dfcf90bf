/**
 * Issue 15, item 7: `meridian backup` and `meridian restore` against real
 * processes. A region with content is backed up to a directory (twice:
 * the second copies only the new blobs), wiped (every process killed, its
 * log, store and view deleted, started again empty), and restored: every
 * image acknowledged before the snapshot pulls intact, byte for byte, a tag
 * deleted before the snapshot stays deleted, and the log is back at the
 * snapshot's sequence. Then the refusals: a region whose log is not the
 * snapshot's, a directory that is no backup, a snapshot whose blob was
 * damaged (nothing appended). And the same round trip through an S3
 * target on the bundled S3 server.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after as afterAll, before, describe, test } from "node:test";
import { cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { type ProxiedMesh, startMesh, startProxiedMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";
import { S3RVER_CREDENTIALS, startTestS3 } from "../../testing/s3.js";

type Image = Awaited<ReturnType<OciClient["pushRandomImage"]>> & { repo: string; tag: string };

const sha = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

async function pullsIntact(client: OciClient, image: Image): Promise<void> {
  const res = await client.fetch(`/v2/${image.repo}/manifests/${image.tag}`, {
    headers: { accept: OCI_MANIFEST },
  });
  assert.equal(res.status, 200, `${image.repo}:${image.tag}`);
  assert.equal(sha(Buffer.from(await res.arrayBuffer())), image.digest);
  for (const d of [image.config, ...image.layers]) {
    const blob = await client.fetch(`/v2/${image.repo}/blobs/${d.digest}`);
    assert.equal(blob.status, 200);
    const bytes = Buffer.from(await blob.arrayBuffer());
    assert.equal(bytes.length, d.size);
    assert.equal(sha(bytes), d.digest);
  }
}

describe("backup and restore of a region with no peer to rebuild from", () => {
  let mesh: ProxiedMesh;
  let dir: string;
  const after = cleanupStack({ after: afterAll });
  const images: Image[] = [];
  const regionArgs = () => {
    const a = mesh.regions.get("a")!;
    return ["--region", "a", "--nats", a.nats.url, "--store", join(a.dir, "store")];
  };
  const client = () => new OciClient(mesh.regions.get("a")!.registry);
  const push = async (repo: string, tag: string, layerSize = 50_000) => {
    const image = { ...(await client().pushRandomImage(repo, tag, 2, layerSize)), repo, tag };
    images.push(image);
    return image;
  };

  before(async () => {
    mesh = await startProxiedMesh(after, ["a"]);
    dir = tempDir(after, "meridian-backup-");
  });

  test("a backup writes the log and every blob it names; a second one copies only what is new", async () => {
    await push("app/web", "v1", 300_000);
    await push("app/web", "v2");
    await push("tools/cli", "1.0");
    const gone = await client().pushRandomImage("app/web", "tmp");
    assert.ok(gone.digest);
    assert.equal((await client().fetch("/v2/app/web/manifests/tmp", { method: "DELETE" })).status, 202);

    const first = await runCli(["backup", "--to", dir, ...regionArgs()], 60_000);
    assert.equal(first.code, 0, first.stderr);
    const m = /^backup of a: (\d+) events up to seq (\d+), (\d+) blobs \(([\d.]+) MiB, (\d+) new\)/.exec(
      first.stdout,
    );
    assert.ok(m, first.stdout);
    assert.equal(Number(m[5]), Number(m[3]), "the first backup copies every blob");
    // 3 images of config + 2 layers + manifest, and the deleted tag's image (its bytes are still stored).
    assert.equal(Number(m[3]), 16);
    assert.match(first.stderr, /^backup of a: blobs: 16\/16 blobs, 100%, .*16 new$/m);
    assert.equal(statSync(dir).mode & 0o777, 0o700, "the backup directory is private");

    await push("app/web", "v3");
    const second = await runCli(["backup", "--to", dir, ...regionArgs()], 60_000);
    assert.equal(second.code, 0, second.stderr);
    assert.match(
      second.stdout,
      /, 20 blobs \([\d.]+ MiB, 4 new\)/,
      "only the new image's four blobs are copied",
    );
    const description = JSON.parse(readFileSync(join(dir, "backup.json"), "utf8"));
    assert.ok(description.lastSeq > Number(m[2]));
    assert.equal(description.region, "a");
  });

  test("a wiped region comes back to the snapshot: every image pulls intact, a deleted tag stays deleted", async () => {
    const { lastSeq } = JSON.parse(readFileSync(join(dir, "backup.json"), "utf8"));
    await mesh.killRegion("a");
    await mesh.restartRegion("a", { fresh: true });
    assert.equal((await client().fetch("/v2/app/web/manifests/v1", { method: "HEAD" })).status, 404);

    const r = await runCli(["restore", "--from", dir, ...regionArgs()], 60_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      new RegExp(`^restore of a: \\d+ events appended .*log at seq ${lastSeq}; 20 blobs`),
    );
    for (const image of images) await pullsIntact(client(), image);
    assert.equal((await client().fetch("/v2/app/web/manifests/tmp", { method: "HEAD" })).status, 404);

    // Run again (as after a restore cut short): nothing appended twice.
    const again = await runCli(["restore", "--from", dir, ...regionArgs()], 60_000);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^restore of a: 0 events appended \(\d+ in the snapshot, \d+ already there\)/);
  });

  test("a region whose log is not the snapshot's is refused, and nothing changes", async () => {
    await push("app/new", "v1");
    const r = await runCli(["restore", "--from", dir, ...regionArgs()], 60_000);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /log holds 4 writes of its own that are not this snapshot's \(blob.pushed/);
    await pullsIntact(client(), images.at(-1)!);
  });

  test("a directory that is no backup, and a backup whose blob was damaged, are refused", async () => {
    const empty = tempDir(after, "meridian-nobackup-");
    const none = await runCli(["restore", "--from", empty, ...regionArgs()], 60_000);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no backup\.json/);

    await mesh.killRegion("a");
    await mesh.restartRegion("a", { fresh: true });
    // Flip a byte of the biggest blob of the snapshot.
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true }))
        e.isDirectory() ? walk(join(d, e.name)) : files.push(join(d, e.name));
    };
    walk(join(dir, "blobs"));
    const biggest = files.sort((x, y) => statSync(y).size - statSync(x).size)[0]!;
    const bytes = readFileSync(biggest);
    bytes[1000] = bytes[1000]! ^ 0xff;
    writeFileSync(biggest, bytes);
    const r = await runCli(["restore", "--from", dir, ...regionArgs()], 60_000);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /digest/i);
    // Blobs go first: no event was appended, the region is still empty.
    assert.equal((await client().fetch("/v2/tools/cli/manifests/1.0", { method: "HEAD" })).status, 404);
  });
});

describe("backup to S3", () => {
  const after = cleanupStack({ after: afterAll });

  test("round trip through an s3:// target, with a live peer replicating into the wiped region", async () => {
    const s3 = await startTestS3(["backups"]);
    after(() => s3.stop());
    const mesh = await startProxiedMesh(after, ["a", "b"]);
    const a = mesh.regions.get("a")!;
    const creds = join(tempDir(after), "s3.json");
    writeFileSync(creds, JSON.stringify(S3RVER_CREDENTIALS));
    const s3Args = ["--s3-endpoint", s3.endpoint, "--s3-credentials-file", creds, "--s3-path-style"];
    const args = ["--region", "a", "--nats", a.nats.url, "--store", join(a.dir, "store"), ...s3Args];
    const image: Image = {
      ...(await new OciClient(a.registry).pushRandomImage("s3/app", "v1", 2, 100_000)),
      repo: "s3/app",
      tag: "v1",
    };

    const b = await runCli(["backup", "--to", "s3://backups/region-a", ...args], 60_000);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /, 4 blobs \([\d.]+ MiB, 4 new\) .* to s3:\/\/backups\/region-a/);

    await mesh.killRegion("a");
    await mesh.restartRegion("a", { fresh: true });
    // Pushed into b after the wipe: replicated into the empty a before its restore, which must
    // not stop the restore (only a's own writes outside the snapshot do).
    const fromB: Image = {
      ...(await new OciClient(mesh.regions.get("b")!.registry).pushRandomImage("s3/b", "v1")),
      repo: "s3/b",
      tag: "v1",
    };
    const wiped = new OciClient(mesh.regions.get("a")!.registry);
    const inA = async () => (await wiped.fetch("/v2/s3/b/manifests/v1", { method: "HEAD" })).status === 200;
    await eventually(inA, 30_000);
    const r = await runCli(["restore", "--from", "s3://backups/region-a", ...args], 60_000);
    assert.equal(r.code, 0, r.stderr);
    await pullsIntact(wiped, image);
    await pullsIntact(wiped, fromB);
  });
});

describe("backup and restore of a region of `meridian up`, found by its data directory", () => {
  const after = cleanupStack({ after: afterAll });

  test("the defaults find the region, its NATS (signing in as the operator) and its store", async () => {
    const data = tempDir(after, "meridian-up-backup-");
    const target = tempDir(after, "meridian-up-target-");
    const first = await startMesh(after, ["a"], data);
    const image: Image = {
      ...(await new OciClient(first.regions.get("a")!.registry).pushRandomImage("up/app", "v1")),
      repo: "up/app",
      tag: "v1",
    };
    const b = await runCli(["backup", "--data", data, "--to", target], 60_000);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /^backup of a: \d+ events up to seq \d+, 4 blobs/);

    // The region lost: `up` stopped, its data deleted, started again empty.
    assert.equal(await first.stop(), 0);
    rmSync(join(data, "a"), { recursive: true, force: true });
    const second = await startMesh(after, ["a"], data);
    const client = new OciClient(second.regions.get("a")!.registry);
    assert.equal((await client.fetch("/v2/up/app/manifests/v1", { method: "HEAD" })).status, 404);
    const r = await runCli(["restore", "--data", data, "--from", target], 60_000);
    assert.equal(r.code, 0, r.stderr);
    await eventually(
      async () => (await client.fetch("/v2/up/app/manifests/v1", { method: "HEAD" })).status === 200,
    );
    await pullsIntact(client, image);
  });

  test("`--s3` backs up a mesh of `up --s3` from its bucket; without it the wrong store is refused", async () => {
    const data = tempDir(after, "meridian-up-s3-");
    const target = tempDir(after, "meridian-up-s3-target-");
    const mesh = await startMesh(after, ["a"], data, ["--s3"]);
    await new OciClient(mesh.regions.get("a")!.registry).pushRandomImage("up/s3", "v1");
    // up.ts's layout: the S3 server at B + 10 × regions + 9.
    const base = Number(new URL(mesh.s3!).port) - 19;
    const wrong = await runCli(["backup", "--data", data, "--to", target], 60_000);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /none of the 4 blobs .* is in its store .*add --s3/);
    const b = await runCli(
      ["backup", "--data", data, "--s3", "--base-port", String(base), "--to", target],
      60_000,
    );
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /, 4 blobs \([\d.]+ MiB, 4 new\)/);
  });
});
