import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { describe, test } from "node:test";
import { cosignSign, generateCosignKey, simpleSigningPayload } from "../../testing/cosign.js";
import {
  COSIGN_SIGNATURE_ANNOTATION,
  COSIGN_SIGNATURE_ARTIFACT,
  type FoundSignature,
  signatureLayers,
  signatureLocations,
  verifyAnySignature,
  verifySignatureLayer,
} from "../cosign.js";
import { digestOf } from "../digest.js";

const subject = digestOf("an image manifest");
const other = digestOf("another image manifest");
const key = generateCosignKey();
const pub = { name: "release", pem: key.publicPem };

function found(sig: { tagManifest: Buffer; payload: Buffer; payloadDigest: string }, payload = sig.payload) {
  const manifest = JSON.parse(sig.tagManifest.toString());
  return {
    source: "tag",
    manifest,
    blob: (d: string) => (d === sig.payloadDigest ? payload : undefined),
  } satisfies FoundSignature;
}

describe("signatureLocations", () => {
  test("names the .sig tag and the referrers artifact type", () => {
    const hex = subject.slice("sha256:".length);
    assert.deepEqual(signatureLocations(subject), {
      tag: `sha256-${hex}.sig`,
      referrersArtifactType: COSIGN_SIGNATURE_ARTIFACT,
    });
  });
  test("refuses what is not a digest", () => {
    assert.throws(() => signatureLocations("latest"), /not a digest/);
  });
});

describe("verifySignatureLayer", () => {
  test("a signature made as cosign makes it verifies", () => {
    const sig = cosignSign(key.privateKey, "localhost/app", subject);
    const [layer] = signatureLayers(JSON.parse(sig.tagManifest.toString()));
    assert.deepEqual(verifySignatureLayer(subject, layer, sig.payload, pub), { ok: true, keyId: "release" });
  });

  test("the referrer form verifies too", () => {
    const sig = cosignSign(key.privateKey, "localhost/app", subject);
    const m = JSON.parse(sig.referrerManifest({ mediaType: "x", digest: subject, size: 1 }).toString());
    assert.equal(m.artifactType, COSIGN_SIGNATURE_ARTIFACT);
    assert.equal(verifySignatureLayer(subject, signatureLayers(m)[0], sig.payload, pub).ok, true);
  });

  const refusals: [string, () => ReturnType<typeof verifySignatureLayer>, RegExp][] = [
    [
      "a payload with one byte changed (digest fixed up to match)",
      () => {
        const sig = cosignSign(key.privateKey, "localhost/app", subject);
        const tampered = Buffer.from(sig.payload);
        const i = tampered.indexOf("localhost");
        tampered[i] = "L".charCodeAt(0);
        const layer = { ...sig.layer, digest: digestOf(tampered), size: tampered.length };
        return verifySignatureLayer(subject, layer, tampered, pub);
      },
      /^signature does not verify with key release$/,
    ],
    [
      "a payload with one byte changed (layer digest left as signed)",
      () => {
        const sig = cosignSign(key.privateKey, "localhost/app", subject);
        const tampered = Buffer.from(sig.payload);
        tampered[tampered.length - 2] = (tampered[tampered.length - 2] ?? 0) ^ 1;
        return verifySignatureLayer(subject, sig.layer, tampered, pub);
      },
      /^layer bytes do not match their digest$/,
    ],
    [
      "a valid signature of another digest",
      () => {
        const sig = cosignSign(key.privateKey, "localhost/app", other);
        return verifySignatureLayer(subject, sig.layer, sig.payload, pub);
      },
      new RegExp(`^payload names ${other} not ${subject}$`),
    ],
    [
      "the wrong key",
      () => {
        const sig = cosignSign(generateCosignKey().privateKey, "localhost/app", subject);
        return verifySignatureLayer(subject, sig.layer, sig.payload, pub);
      },
      /^signature does not verify with key release$/,
    ],
    [
      "no signature layer",
      () => verifySignatureLayer(subject, undefined, undefined, pub),
      /^no signature layer$/,
    ],
    [
      "a signature that is not base64",
      () => {
        const sig = cosignSign(key.privateKey, "localhost/app", subject);
        const layer = { ...sig.layer, annotations: { [COSIGN_SIGNATURE_ANNOTATION]: "not*base64!" } };
        return verifySignatureLayer(subject, layer, sig.payload, pub);
      },
      /^signature annotation is not base64$/,
    ],
    [
      "base64 that is not a DER signature",
      () => {
        const sig = cosignSign(key.privateKey, "localhost/app", subject);
        const layer = { ...sig.layer, annotations: { [COSIGN_SIGNATURE_ANNOTATION]: "AAAA" } };
        return verifySignatureLayer(subject, layer, sig.payload, pub);
      },
      /^signature does not verify with key release$/,
    ],
    [
      "no signature annotation",
      () => {
        const sig = cosignSign(key.privateKey, "localhost/app", subject);
        return verifySignatureLayer(subject, { ...sig.layer, annotations: {} }, sig.payload, pub);
      },
      /has no dev\.cosignproject\.cosign\/signature annotation/,
    ],
    [
      "a key on another curve (P-384)",
      () => {
        const p384 = generateCosignKey("secp384r1");
        const sig = cosignSign(p384.privateKey, "localhost/app", subject);
        return verifySignatureLayer(subject, sig.layer, sig.payload, { name: "big", pem: p384.publicPem });
      },
      /^key big is an ECDSA key on curve secp384r1, not P-256$/,
    ],
    [
      "an RSA key",
      () => {
        const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
        const pem = rsa.publicKey.export({ type: "spki", format: "pem" }).toString();
        const sig = cosignSign(key.privateKey, "localhost/app", subject);
        return verifySignatureLayer(subject, sig.layer, sig.payload, { name: "rsa", pem });
      },
      /^key rsa is a rsa key, not ECDSA P-256$/,
    ],
    [
      "a key that is not PEM",
      () => {
        const sig = cosignSign(key.privateKey, "localhost/app", subject);
        return verifySignatureLayer(subject, sig.layer, sig.payload, { name: "junk", pem: "hello" });
      },
      /^key junk is not a PEM public key/,
    ],
    [
      "a payload of another type",
      () => {
        const payload = Buffer.from(
          JSON.stringify({
            critical: { image: { "docker-manifest-digest": subject }, type: "something else" },
          }),
        );
        const sig = cosignSign(key.privateKey, "localhost/app", subject, payload);
        return verifySignatureLayer(subject, sig.layer, sig.payload, pub);
      },
      /^signature payload type is "something else", not "cosign container image signature"$/,
    ],
    [
      "a payload that is not JSON",
      () => {
        const sig = cosignSign(key.privateKey, "localhost/app", subject, Buffer.from("{nope"));
        return verifySignatureLayer(subject, sig.layer, sig.payload, pub);
      },
      /^signature payload is not JSON$/,
    ],
    [
      "a payload blob not stored",
      () => {
        const sig = cosignSign(key.privateKey, "localhost/app", subject);
        return verifySignatureLayer(subject, sig.layer, undefined, pub);
      },
      /is not stored$/,
    ],
  ];
  for (const [name, run, reason] of refusals) {
    test(`refuses ${name}`, () => {
      const r = run();
      assert.equal(r.ok, false);
      assert.match((r as { reason: string }).reason, reason);
    });
  }
});

describe("verifyAnySignature", () => {
  test("passes when one key verifies one signature, among bad ones", () => {
    const bad = cosignSign(generateCosignKey().privateKey, "localhost/app", subject);
    const good = cosignSign(key.privateKey, "localhost/app", subject);
    const other = generateCosignKey();
    const r = verifyAnySignature(
      subject,
      [found(bad), found(good)],
      [{ name: "old", pem: other.publicPem }, pub],
    );
    assert.deepEqual(r, { ok: true, keyId: "release" });
  });
  test("a .sig manifest with several layers (cosign appends one per signing): any verifying layer passes", () => {
    const stale = cosignSign(generateCosignKey().privateKey, "localhost/app", subject);
    const fresh = cosignSign(key.privateKey, "localhost/app", subject);
    const manifest = JSON.parse(stale.tagManifest.toString());
    manifest.layers.push(fresh.layer);
    const blobs = new Map([
      [stale.payloadDigest, stale.payload],
      [fresh.payloadDigest, fresh.payload],
    ]);
    const sig: FoundSignature = { source: "tag", manifest, blob: (d) => blobs.get(d) };
    assert.deepEqual(verifyAnySignature(subject, [sig], [pub]), { ok: true, keyId: "release" });
    manifest.layers.pop();
    assert.equal(verifyAnySignature(subject, [sig], [pub]).ok, false);
  });
  test("fails with each reason when none verifies", () => {
    const bad = cosignSign(generateCosignKey().privateKey, "localhost/app", subject);
    const r = verifyAnySignature(subject, [found(bad)], [pub]);
    assert.deepEqual(r, { ok: false, reason: "tag: signature does not verify with key release" });
  });
  test("no signature, no layer, no key", () => {
    assert.match(
      (verifyAnySignature(subject, [], [pub]) as { reason: string }).reason,
      /^no cosign signature found for sha256:/,
    );
    const noLayer: FoundSignature = { source: "tag", manifest: { layers: [] }, blob: () => undefined };
    assert.deepEqual(verifyAnySignature(subject, [noLayer], [pub]), {
      ok: false,
      reason: "tag: no signature layer",
    });
    const good = cosignSign(key.privateKey, "localhost/app", subject);
    assert.deepEqual(verifyAnySignature(subject, [found(good)], []), {
      ok: false,
      reason: "no public key configured",
    });
  });
  test("the payload names the subject as cosign writes it", () => {
    const p = JSON.parse(simpleSigningPayload("r/a", subject).toString());
    assert.equal(p.critical.image["docker-manifest-digest"], subject);
    assert.equal(p.critical.identity["docker-reference"], "r/a");
  });
});
