/**
 * Test support: cosign signatures made the way `cosign sign --key` makes
 * them (sigstore/cosign pkg/signature/payload: the simple-signing payload;
 * pkg/oci/static: one layer of media type simplesigning with the base64 DER
 * ECDSA P-256/SHA-256 signature in its annotation), with a key the test
 * generates. Nothing here is used by product code.
 */
import { createHash, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import {
  COSIGN_PAYLOAD_TYPE,
  COSIGN_SIGNATURE_ANNOTATION,
  COSIGN_SIGNATURE_ARTIFACT,
  COSIGN_SIGNATURE_LAYER,
} from "../protocol/cosign.js";

export interface TestKey {
  privateKey: KeyObject;
  /** The public key as PEM (SPKI), what `cosign.pub` holds. */
  publicPem: string;
}

export function generateCosignKey(curve = "prime256v1"): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: curve });
  return { privateKey, publicPem: publicKey.export({ type: "spki", format: "pem" }).toString() };
}

/** The simple-signing payload for `digest` pushed as `reference`, as cosign marshals it. */
export function simpleSigningPayload(reference: string, digest: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      critical: {
        identity: { "docker-reference": reference },
        image: { "docker-manifest-digest": digest },
        type: COSIGN_PAYLOAD_TYPE,
      },
      optional: null,
    }),
  );
}

export interface CosignSignature {
  payload: Buffer;
  payloadDigest: string;
  signature: string;
  config: Buffer;
  configDigest: string;
  /** The signature manifest's layer descriptor. */
  layer: { mediaType: string; digest: string; size: number; annotations: Record<string, string> };
  /** The signature manifest (the `sha256-<hex>.sig` tag's), as bytes. */
  tagManifest: Buffer;
  /** The same signature as an OCI 1.1 referrer of the subject. */
  referrerManifest: (subject: { mediaType: string; digest: string; size: number }) => Buffer;
}

const sha = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** Sign `digest` with `key`; `payload` overrides the bytes signed (to build tampered cases). */
export function cosignSign(
  key: KeyObject,
  reference: string,
  digest: string,
  payload?: Buffer,
): CosignSignature {
  const bytes = payload ?? simpleSigningPayload(reference, digest);
  const signature = sign("sha256", bytes, key).toString("base64");
  const layer = {
    mediaType: COSIGN_SIGNATURE_LAYER,
    digest: sha(bytes),
    size: bytes.length,
    annotations: { [COSIGN_SIGNATURE_ANNOTATION]: signature },
  };
  const config = Buffer.from(
    JSON.stringify({
      architecture: "",
      os: "",
      config: {},
      rootfs: { type: "layers", diff_ids: [sha(bytes)] },
    }),
  );
  const configDesc = {
    mediaType: "application/vnd.oci.image.config.v1+json",
    digest: sha(config),
    size: config.length,
  };
  const tagManifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: configDesc,
      layers: [layer],
    }),
  );
  const referrerManifest = (subject: { mediaType: string; digest: string; size: number }) =>
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        artifactType: COSIGN_SIGNATURE_ARTIFACT,
        config: configDesc,
        layers: [layer],
        subject,
      }),
    );
  return {
    payload: bytes,
    payloadDigest: layer.digest,
    signature,
    config,
    configDigest: configDesc.digest,
    layer,
    tagManifest,
    referrerManifest,
  };
}
