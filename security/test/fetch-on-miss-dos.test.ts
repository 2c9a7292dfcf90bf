/**
 * Issue 10, finding 6: fetch on miss coupled clients. One client that
 * stopped reading a 64 MiB blob fetched from a peer stalled every other
 * client asking for that digest in that region for as long as it held on,
 * because the store's copy waited on that client's backpressure. Regions a
 * and b as real processes with authentication on, b's replication cut off
 * (the blob is only in a), b's node fetching on miss in proxy mode.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { type IncomingMessage, request } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { writeTokenKey } from "../../mesh-client/token-key-file.js";
import { FsBlobStore } from "../../node/data/fs-blob-store.js";
import type { Digest } from "../../protocol/digest.js";
import { cleanupStack, eventually, tempDir } from "../../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../../testing/mesh.js";
import { OciClient, sha256 } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });
const SIZE = 64 << 20;
let mesh: ProxiedMesh;
let admin: string;
const registry = (region: string) => mesh.regions.get(region)!.registry;

before(async () => {
  const dir = tempDir(cleanup, "meridian-auth-");
  const keyFile = join(dir, "token-key.pem");
  await writeTokenKey(keyFile);
  const password = randomBytes(18).toString("base64url");
  const passwordFile = join(dir, "admin-password");
  writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  admin = `Basic ${Buffer.from(`admin:${password}`).toString("base64")}`;
  mesh = await startProxiedMesh(cleanup, ["a", "b"], {
    node: {
      MERIDIAN_FETCH_ON_MISS: "proxy",
      MERIDIAN_AUTH: "true",
      MERIDIAN_TOKEN_KEY_FILE: keyFile,
      MERIDIAN_ADMIN_PASSWORD_FILE: passwordFile,
    },
    peer: { MERIDIAN_TOKEN_KEY_FILE: keyFile },
  });
  // b's worker no longer reaches a: what is pushed to a from now on stays only there.
  mesh.partition("b");
});

/** A GET through node:http, so the test decides when (and whether) the body is read. */
function open(url: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { authorization: admin } }, resolve);
    req.once("error", reject);
    req.end();
  });
}

test("a client that stops reading a fetched blob does not hold back the others asking for it", async () => {
  const a = new OciClient(registry("a"), admin);
  // Anonymous requests are refused: the attack runs as an authenticated puller.
  assert.equal((await fetch(`${registry("b")}/v2/`)).status, 401);
  const bytes = randomBytes(SIZE);
  const { digest } = await a.pushBlob("dos/big", bytes);
  const url = `${registry("b")}/v2/dos/big/blobs/${digest}`;

  // The first client gets its answer, then stops reading.
  const stalled = await open(url);
  assert.equal(stalled.statusCode, 200);
  assert.equal(stalled.headers["meridian-fetched-from"], "a");
  stalled.pause();
  await new Promise((r) => setTimeout(r, 500));

  // Another client asking for the same digest through b finishes (before the fix: not while the first held on).
  const second = await fetch(url, { headers: { authorization: admin }, signal: AbortSignal.timeout(60_000) });
  assert.equal(second.status, 200);
  assert.equal(sha256(Buffer.from(await second.arrayBuffer())), digest);

  // The copy went into b's store at its own pace.
  const store = new FsBlobStore(join(mesh.regions.get("b")!.dir, "store"));
  await eventually(async () => (await store.stat(digest as Digest)) === SIZE, 10_000, 100);

  // The stalled client can still finish: the rest comes from the store once it reads again.
  const hash = createHash("sha256");
  let received = 0;
  stalled.on("data", (chunk: Buffer) => {
    hash.update(chunk);
    received += chunk.byteLength;
  });
  stalled.resume();
  await new Promise<void>((resolve, reject) => {
    stalled.once("end", resolve);
    stalled.once("error", reject);
    setTimeout(() => reject(new Error("the stalled client did not finish")), 60_000).unref();
  });
  assert.equal(received, SIZE);
  assert.equal(`sha256:${hash.digest("hex")}`, digest);
});

test("a client that goes away mid-blob releases it; the fetch completes for the others", async () => {
  const a = new OciClient(registry("a"), admin);
  const bytes = randomBytes(16 << 20);
  const { digest } = await a.pushBlob("dos/gone", bytes);
  const url = `${registry("b")}/v2/dos/gone/blobs/${digest}`;
  const leaving = await open(url);
  assert.equal(leaving.statusCode, 200);
  await new Promise<void>((resolve) => leaving.once("data", () => resolve()));
  leaving.destroy();
  const other = await fetch(url, { headers: { authorization: admin }, signal: AbortSignal.timeout(60_000) });
  assert.equal(other.status, 200);
  assert.equal(sha256(Buffer.from(await other.arrayBuffer())), digest);
  const store = new FsBlobStore(join(mesh.regions.get("b")!.dir, "store"));
  await eventually(async () => (await store.stat(digest as Digest)) === bytes.byteLength, 10_000, 100);
});
