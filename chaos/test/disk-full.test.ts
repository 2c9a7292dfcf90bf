/**
 * Disk full (issue 15, item 6) against real processes: `meridian up` with one
 * region whose blob store directory (<data>/a/store) is a small tmpfs this
 * test mounts (as root; skipped, saying why, where mounting is not allowed),
 * filled by a file until the kernel answers ENOSPC.
 *
 * - pushes that need the space (a monolithic blob, a chunk into a session)
 *   fail with 507 and the OCI envelope (code STORAGE_FULL, "storage full"),
 *   not a bare 500;
 * - nothing partial becomes visible: the blob is unknown, no leftover in
 *   tmp/, the repository does not exist, a manifest referring to the blob is
 *   refused MANIFEST_BLOB_UNKNOWN;
 * - pulls of what was stored before go on (bytes verified);
 * - once the filler is removed the same node (same pid, no restart) takes
 *   the pushes again, and they pull back intact.
 *
 * The same with the node's view (<data>/a/view, LevelDB) on the full tmpfs:
 * the log takes a push's event but the view cannot apply it, so the push is
 * refused (507, saying the write is in the log; later ones 503 while the
 * view waits); pulls go on; once space returns pushes work again without a
 * restart, and every push that was refused is either whole (its tag, its
 * manifest and every blob pull intact: the log had it) or absent.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, readdirSync, rmSync, truncateSync, writeSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { cleanupStack, eventually, tempDir } from "../../testing/harness.js";
import { startMesh } from "../../testing/mesh.js";
import { errorCode, OCI_CONFIG, OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });

/** Mount a tmpfs of `size` at `dir` (unmounted in cleanup); the reason when it cannot be. */
function mountTmpfs(dir: string, size: string): string | undefined {
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "pipe" });
  } catch (err) {
    return `cannot mount a tmpfs here (${String((err as { stderr?: Buffer }).stderr ?? err).trim()})`;
  }
  cleanup(() => {
    execFileSync("umount", ["-l", dir], { stdio: "pipe" });
  });
  return undefined;
}

/** Fill the filesystem holding `file` until ENOSPC, then give back `leave` bytes. */
function fill(file: string, leave: number): void {
  const fd = openSync(file, "w");
  const chunk = Buffer.alloc(64 * 1024, 1);
  let size = 0;
  try {
    for (let i = 0; i < 1_000_000; i++) size += writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
  } finally {
    closeSync(fd);
  }
  truncateSync(file, Math.max(0, size - leave));
}

describe("disk full", () => {
  test("a push hitting ENOSPC is a 507 with nothing partial visible, pulls go on, pushes work again once space returns", async (t) => {
    const dir = tempDir(cleanup, "meridian-full-");
    const store = join(dir, "a", "store");
    const unavailable = mountTmpfs(store, "16m");
    if (unavailable !== undefined) {
      t.skip(unavailable);
      return;
    }
    const mesh = await startMesh(cleanup, ["a"], dir);
    const a = mesh.regions.get("a")!;
    const client = new OciClient(a.registry);
    const before = await client.pushRandomImage("full/kept", "v1", 1, 100_000);

    const filler = join(store, "filler");
    fill(filler, 256 * 1024);

    // A monolithic push larger than what is left.
    const big = randomBytes(2 << 20);
    const digest = sha256(big);
    const mono = await client.fetch(`/v2/full/new/blobs/uploads/?digest=${digest}`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: big,
    });
    assert.equal(mono.status, 507);
    const body = (await mono.json()) as { errors: Array<{ code: string; message: string }> };
    assert.equal(body.errors[0]?.code, "STORAGE_FULL");
    assert.match(body.errors[0]!.message, /storage full/);

    // A chunked push: the session opens (it needs a few bytes) or is refused the same way; the chunk is.
    const start = await client.fetch("/v2/full/new/blobs/uploads/", { method: "POST" });
    if (start.status === 202) {
      const location = new URL(start.headers.get("location")!, a.registry);
      const patch = await fetch(location, {
        method: "PATCH",
        headers: { "content-type": "application/octet-stream", "content-range": `0-${big.byteLength - 1}` },
        body: big,
      });
      assert.equal(patch.status, 507);
      assert.equal(await errorCode(patch), "STORAGE_FULL");
    } else {
      assert.equal(start.status, 507);
      assert.equal(await errorCode(start), "STORAGE_FULL");
    }

    // Nothing partial: the blob is unknown, no in-flight file is left, the repository does not exist,
    // and a manifest referring to the blob is refused.
    assert.equal((await client.fetch(`/v2/full/new/blobs/${digest}`, { method: "HEAD" })).status, 404);
    assert.deepEqual(readdirSync(join(store, "tmp")), [], "no leftover of the failed write");
    const tags = await client.fetch("/v2/full/new/tags/list");
    assert.equal(tags.status, 404);
    assert.equal(await errorCode(tags), "NAME_UNKNOWN");
    const configBytes = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux" }));
    const config = { mediaType: OCI_CONFIG, digest: sha256(configBytes), size: configBytes.byteLength };
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config,
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest, size: big.byteLength }],
    };
    const refused = await client.fetch("/v2/full/new/manifests/v1", {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: JSON.stringify(manifest),
    });
    assert.equal(refused.status, 400);
    assert.equal(await errorCode(refused), "MANIFEST_BLOB_UNKNOWN");

    // Pulls go on while the disk is full.
    const pulledManifest = await client.fetch("/v2/full/kept/manifests/v1", {
      headers: { accept: OCI_MANIFEST },
    });
    assert.equal(pulledManifest.status, 200);
    assert.equal(sha256(Buffer.from(await pulledManifest.arrayBuffer())), before.digest);
    const layer = await client.fetch(`/v2/full/kept/blobs/${before.layers[0]!.digest}`);
    assert.equal(layer.status, 200);
    assert.equal(sha256(Buffer.from(await layer.arrayBuffer())), before.layers[0]!.digest);

    // Space returns: the same node takes the pushes again, no restart.
    rmSync(filler);
    const pid = a.pids.node!;
    await client.pushBlob("full/new", big);
    await client.pushBlob("full/new", configBytes, OCI_CONFIG);
    await client.pushBlobChunked("full/new", randomBytes(300_000), 100_000);
    await client.pushManifest("full/new", "v1", manifest);
    const back = await client.fetch(`/v2/full/new/blobs/${digest}`);
    assert.equal(back.status, 200);
    assert.equal(sha256(Buffer.from(await back.arrayBuffer())), digest);
    process.kill(pid, 0); // still the same process
    assert.equal(mesh.regions.get("a")!.pids.node, pid);
  });

  test("a full view: pushes fail 507/503 and none is partly visible, pulls go on, pushes work again once space returns", async (t) => {
    const dir = tempDir(cleanup, "meridian-vfull-");
    const view = join(dir, "a", "view");
    const unavailable = mountTmpfs(view, "16m");
    if (unavailable !== undefined) {
      t.skip(unavailable);
      return;
    }
    const mesh = await startMesh(cleanup, ["a"], dir);
    const a = mesh.regions.get("a")!;
    const client = new OciClient(a.registry);
    const kept = await client.pushRandomImage("vfull/kept", "v1", 1, 1000);
    const filler = join(view, "filler");
    fill(filler, 0);

    // The log takes the events, the view cannot apply them: the first push is refused 507
    // ("in the region's log…"), later ones 503 (accepted, not applied yet) while the view waits.
    const statuses: number[] = [];
    const images: Array<{ repo: string; layers: string[]; config: string }> = [];
    // The view's last log page may take a few events before a write needs a new one: push until
    // two pushes have failed (each 503 waits for the view a few seconds), at most eight.
    for (let i = 0; i < 8 && statuses.filter((x) => x !== 201).length < 2; i++) {
      const repo = `vfull/new${i}`;
      try {
        const pushed = await client.pushRandomImage(repo, "v1", 1, 1000);
        images.push({ repo, layers: pushed.layers.map((l) => l.digest), config: pushed.config.digest });
        statuses.push(201);
      } catch (err) {
        const status = Number(/ (\d{3}):/.exec(String(err))?.[1]);
        assert.ok(status === 507 || status === 503, String(err));
        if (status === 507) assert.match(String(err), /storage full: the write is in the region's log/);
        statuses.push(status);
        images.push({ repo, layers: [], config: "" });
      }
    }
    assert.ok(statuses.includes(507), `a push met the full view: ${statuses}`);

    // Pulls go on.
    const pulled = await client.fetch("/v2/vfull/kept/manifests/v1", { headers: { accept: OCI_MANIFEST } });
    assert.equal(pulled.status, 200);
    assert.equal(sha256(Buffer.from(await pulled.arrayBuffer())), kept.digest);

    // Space returns: pushes work again on the same node, and every earlier push is whole or absent.
    rmSync(filler);
    const pid = a.pids.node!;
    await eventually(
      async () => {
        try {
          await client.pushRandomImage("vfull/after", "v1", 1, 1000);
          return true;
        } catch {
          return false;
        }
      },
      30_000,
      200,
    );
    for (const { repo } of images) {
      const res = await client.fetch(`/v2/${repo}/manifests/v1`, { headers: { accept: OCI_MANIFEST } });
      if (res.status !== 200) {
        assert.equal(res.status, 404, repo);
        continue;
      }
      // A visible tag: its manifest and everything it refers to pull, verified.
      const manifest = JSON.parse(await res.text()) as {
        config: { digest: string };
        layers: Array<{ digest: string }>;
      };
      for (const d of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
        const blob = await client.fetch(`/v2/${repo}/blobs/${d}`);
        assert.equal(blob.status, 200, `${repo} ${d}`);
        assert.equal(sha256(Buffer.from(await blob.arrayBuffer())), d);
      }
    }
    process.kill(pid, 0);
  });
});
