/**
 * Issue 10, finding 10: region data was world-readable. As `nobody` the
 * pentest read every user's scrypt hash from the level view files (0644 in
 * 0755 directories: view, peer-view, replication/view) and layers of a
 * private repository from the blob store. Against a real `meridian up --auth`
 * mesh of two regions whose data directory sits in a directory anyone may
 * enter: after a push (and its replication), nothing under the data
 * directory is readable, writable or enterable by group or others, and
 * (where `setpriv` exists) `nobody` can neither list a region's view nor
 * read a blob.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { chmodSync, lstatSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { cleanupStack, eventually, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
let layerDigest: string;

/** Every path under `dir` (itself included), without following links. */
function walk(dir: string, out: string[] = [dir]): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    out.push(path);
    if (entry.isDirectory()) walk(path, out);
  }
  return out;
}

const setpriv = spawnSync("sh", ["-c", "command -v setpriv"], { encoding: "utf8" }).stdout.trim();
const canDropPrivileges = setpriv !== "" && process.getuid?.() === 0;

/** Run `argv` as uid/gid nobody; resolves with its exit code. */
async function asNobody(argv: string[]): Promise<number> {
  try {
    await run(setpriv, ["--reuid=nobody", "--regid=nogroup", "--clear-groups", ...argv]);
    return 0;
  } catch (err) {
    return (err as { code?: number }).code ?? -1;
  }
}

before(async () => {
  // The attacker can reach the data directory's parent (as with ./.meridian in a shared home).
  const parent = tempDir(cleanup, "meridian-perms-");
  chmodSync(parent, 0o755);
  mesh = await startMesh(cleanup, ["a", "b"], join(parent, "data"), ["--auth"]);
  const password = readFileSync(mesh.adminPasswordFile!, "utf8").trim();
  const admin = `Basic ${Buffer.from(`admin:${password}`).toString("base64")}`;
  const a = new OciClient(mesh.regions.get("a")!.registry, admin);
  const b = new OciClient(mesh.regions.get("b")!.registry, admin);
  const pushed = await a.pushRandomImage("secret/app", "v1");
  layerDigest = pushed.layers[0]!.digest;
  await eventually(
    async () => {
      const res = await b.fetch("/v2/secret/app/manifests/v1", { headers: { accept: OCI_MANIFEST } });
      await res.arrayBuffer();
      return res.status === 200;
    },
    30_000,
    200,
  );
});

describe("data directory of a meridian up mesh", () => {
  test("no file or directory is open to group or others", () => {
    const paths = walk(mesh.dataDir);
    const open = paths
      .map((p) => ({ p, st: lstatSync(p) }))
      .filter(({ st }) => !st.isSymbolicLink() && (st.mode & 0o077) !== 0)
      .map(({ p, st }) => `${(st.mode & 0o777).toString(8)} ${p.slice(mesh.dataDir.length)}`);
    // The walk did reach the views and the blob store.
    for (const part of ["/a/view/", "/a/peer-view/", "/a/replication/view/", "/b/store/", "/a/nats/"])
      assert.ok(
        paths.some((p) => p.includes(part)),
        `walk reached ${part}`,
      );
    assert.deepEqual(open, []);
  });

  test("nobody can list a view or read a blob", {
    skip: !canDropPrivileges && "needs root and setpriv",
  }, async () => {
    // Control: nobody can run a command and read a file meant for everyone.
    assert.equal(await asNobody(["cat", "/etc/passwd"]), 0);
    assert.notEqual(await asNobody(["ls", join(mesh.dataDir, "a", "view")]), 0);
    assert.notEqual(await asNobody(["ls", join(mesh.dataDir, "b", "replication", "view")]), 0);
    const blob = walk(join(mesh.dataDir, "a", "store")).find((p) => p.includes(layerDigest.slice(7)));
    assert.ok(blob !== undefined, "the layer is in a's store");
    assert.notEqual(await asNobody(["cat", blob]), 0);
    assert.notEqual(await asNobody(["cat", join(mesh.dataDir, "nats-auth", "a-node.seed")]), 0);
  });
});
