/**
 * GET /admin/v1/verify/<repo>@<digest> against a real region (`meridian up`,
 * one region): the node reads the cosign signature manifests of a digest
 * from its own store (the `sha256-<hex>.sig` tag and the OCI 1.1 referrer),
 * and verifies them for real with the keys of `verification.keys`. A valid
 * signature passes through either place; a tampered payload, a signature of
 * another digest, a wrong key and no signature at all are ok:false with the
 * reason naming the signature gate. Bad key configuration is refused at
 * start (loadNodeConfig), naming the key.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { cosignSign, generateCosignKey } from "../../testing/cosign.js";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_CONFIG, OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";
import { ConfigError, loadNodeConfig } from "../config.js";

const cleanup = cleanupStack({ after });
const release = generateCosignKey();
const stranger = generateCosignKey();
let mesh: RunningMesh;
let client: OciClient;
let registry: string;
let keyDir: string;

before(async () => {
  keyDir = tempDir(cleanup, "meridian-keys-");
  writeFileSync(join(keyDir, "release.pub"), release.publicPem);
  writeFileSync(join(keyDir, "stranger.pub"), stranger.publicPem);
  const keys = { release: join(keyDir, "release.pub"), stranger: join(keyDir, "stranger.pub") };
  mesh = await startMesh(cleanup, ["a"], undefined, [], { MERIDIAN_VERIFICATION_KEYS: JSON.stringify(keys) });
  registry = mesh.regions.get("a")!.registry;
  client = new OciClient(registry);
});

interface Verdict {
  repo: string;
  digest: string;
  ok: boolean;
  results: { gate: string; ok: boolean; reason: string }[];
  signatures: string[];
}

async function verify(repo: string, digest: string, key?: string): Promise<Verdict> {
  const res = await fetch(
    `${registry}/admin/v1/verify/${repo}@${digest}${key === undefined ? "" : `?key=${key}`}`,
  );
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as Verdict;
}

/** Push the signature's payload and config blobs, then its manifest as the .sig tag or as a referrer. */
async function pushSignature(
  repo: string,
  sig: ReturnType<typeof cosignSign>,
  how: "tag" | "referrer",
  subject: { digest: string; size: number },
) {
  await client.pushBlob(repo, sig.payload, sig.layer.mediaType);
  await client.pushBlob(repo, sig.config, OCI_CONFIG);
  if (how === "tag")
    return client.pushManifest(repo, `sha256-${subject.digest.slice(7)}.sig`, sig.tagManifest.toString());
  const bytes = sig.referrerManifest({ mediaType: OCI_MANIFEST, ...subject });
  const { createHash } = await import("node:crypto");
  return client.pushManifest(
    repo,
    `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
    bytes.toString(),
  );
}

async function image(repo: string) {
  const img = await client.pushRandomImage(repo, "v1", 1, 256);
  const size = Buffer.byteLength(JSON.stringify(img.manifest));
  return { digest: img.digest, size };
}

describe("GET /admin/v1/verify", () => {
  test("a signature under the .sig tag verifies with the configured key; a stranger's key does not", async () => {
    const subject = await image("app/tagged");
    const sig = cosignSign(release.privateKey, `${registry}/app/tagged`, subject.digest);
    await pushSignature("app/tagged", sig, "tag", subject);
    const v = await verify("app/tagged", subject.digest, "release");
    assert.deepEqual(v.results, [
      { gate: "signature", ok: true, reason: "signature: verified with key release" },
    ]);
    assert.equal(v.ok, true);
    assert.deepEqual(v.signatures, [`tag sha256-${subject.digest.slice(7)}.sig`]);
    const any = await verify("app/tagged", subject.digest);
    assert.equal(any.ok, true);
    const wrong = await verify("app/tagged", subject.digest, "stranger");
    assert.equal(wrong.ok, false);
    assert.equal(
      wrong.results[0]?.reason,
      `signature: tag sha256-${subject.digest.slice(7)}.sig: signature does not verify with key stranger`,
    );
    const unknown = await verify("app/tagged", subject.digest, "nobody");
    assert.equal(unknown.results[0]?.reason, "signature: key nobody is not configured");
  });

  test("a signature pushed as an OCI 1.1 referrer verifies", async () => {
    const subject = await image("app/referred");
    const sig = cosignSign(release.privateKey, `${registry}/app/referred`, subject.digest);
    const pushed = await pushSignature("app/referred", sig, "referrer", subject);
    const v = await verify("app/referred", subject.digest, "release");
    assert.equal(v.ok, true, JSON.stringify(v));
    assert.deepEqual(v.signatures, [`referrer ${pushed.digest}`]);
  });

  test("a tampered payload (signed bytes changed, digest fixed up) is refused with the reason", async () => {
    const subject = await image("app/tampered");
    const good = cosignSign(release.privateKey, `${registry}/app/tampered`, subject.digest);
    const tampered = Buffer.from(good.payload.toString().replace("app/tampered", "app/tamperex"));
    // Same signature over different bytes: the layer names the new bytes' digest, as an attacker would.
    const forged = cosignSign(release.privateKey, "x", subject.digest, tampered);
    const layer = { ...forged.layer, annotations: good.layer.annotations };
    const manifest = JSON.parse(forged.tagManifest.toString());
    manifest.layers = [layer];
    await client.pushBlob("app/tampered", tampered);
    await client.pushBlob("app/tampered", forged.config, OCI_CONFIG);
    await client.pushManifest("app/tampered", `sha256-${subject.digest.slice(7)}.sig`, manifest);
    const v = await verify("app/tampered", subject.digest, "release");
    assert.equal(v.ok, false);
    assert.match(
      v.results[0]?.reason ?? "",
      /^signature: tag sha256-\w+\.sig: signature does not verify with key release$/,
    );
  });

  test("a valid signature of another digest, and no signature at all, are refused", async () => {
    const subject = await image("app/other");
    const elsewhere = await client.pushRandomImage("app/other", "v2", 1, 256);
    const sig = cosignSign(release.privateKey, "app/other", elsewhere.digest);
    await pushSignature("app/other", sig, "tag", subject);
    const v = await verify("app/other", subject.digest, "release");
    assert.equal(v.ok, false);
    assert.match(
      v.results[0]?.reason ?? "",
      new RegExp(`payload names ${elsewhere.digest} not ${subject.digest}$`),
    );
    const none = await verify("app/other", elsewhere.digest, "release");
    assert.deepEqual(none.results, [
      {
        gate: "signature",
        ok: false,
        reason: `signature: no cosign signature found for ${elsewhere.digest}`,
      },
    ]);
  });

  test("a digest not stored is 404 MANIFEST_UNKNOWN; a malformed target is 400", async () => {
    const missing = await fetch(`${registry}/admin/v1/verify/app/tagged@sha256:${"0".repeat(64)}`);
    assert.equal(missing.status, 404);
    assert.equal(
      ((await missing.json()) as { errors: { code: string }[] }).errors[0]?.code,
      "MANIFEST_UNKNOWN",
    );
    const bad = await fetch(`${registry}/admin/v1/verify/app/tagged@sha256:nothex`);
    assert.equal(bad.status, 400);
    const noDigest = await fetch(`${registry}/admin/v1/verify/app/tagged`);
    assert.equal(noDigest.status, 400);
    const digest = (await image("app/query")).digest;
    for (const query of ["key=release&key=stranger", "key=", "keys=release"]) {
      const res = await fetch(`${registry}/admin/v1/verify/app/query@${digest}?${query}`);
      assert.equal(res.status, 400, query);
      assert.equal(
        ((await res.json()) as { errors: { code: string }[] }).errors[0]?.code,
        "UNSUPPORTED",
        query,
      );
    }
  });
});

describe("verification.keys configuration", () => {
  test("a missing file, a non-key and a key of another curve are refused at load, naming the key", () => {
    const dir = tempDir(cleanup, "meridian-badkeys-");
    writeFileSync(join(dir, "junk.pub"), "not a key");
    writeFileSync(join(dir, "p384.pub"), generateCosignKey("secp384r1").publicPem);
    const keys = { gone: join(dir, "gone.pub"), junk: join(dir, "junk.pub"), big: join(dir, "p384.pub") };
    assert.throws(
      () => loadNodeConfig({ overrides: { dataDir: dir, verification: { keys } } }),
      (err: ConfigError) => {
        assert.match(err.message, /verification\.keys\.gone .*gone\.pub: does not exist/);
        assert.match(err.message, /verification\.keys\.junk .*junk\.pub: not a PEM public key/);
        assert.match(
          err.message,
          /verification\.keys\.big .*p384\.pub: an ECDSA key on curve secp384r1, not P-256/,
        );
        return err instanceof ConfigError;
      },
    );
  });
});
