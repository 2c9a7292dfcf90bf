/**
 * cosign's signature format, verified for real (pure: no IO; the caller
 * reads the manifests and blobs).
 *
 * What `cosign sign --key` writes for an image `repo@D` (sigstore/cosign
 * pkg/oci/static, pkg/signature/payload, pkg/cosign/verify.go):
 *
 * - a signature manifest: an OCI image manifest with one layer per
 *   signature, each of media type `application/vnd.dev.cosign.simplesigning.v1+json`
 *   and carrying the base64 DER ECDSA signature in the layer annotation
 *   `dev.cosignproject.cosign/signature`;
 * - the layer's bytes, the "simple signing" payload:
 *   `{"critical":{"identity":{"docker-reference":R},"image":{"docker-manifest-digest":D},
 *   "type":"cosign container image signature"},"optional":…}`;
 * - the signature is ECDSA P-256 over SHA-256 of exactly those bytes.
 *
 * The manifest is found under the tag `sha256-<hex>.sig` in the same
 * repository (the tag scheme, every cosign version), or as an OCI 1.1
 * referrer of D whose artifactType is `application/vnd.dev.cosign.artifact.sig.v1+json`
 * (`signatureLocations` names both).
 *
 * A signature counts only when all of these hold: the layer's bytes hash to
 * the layer's digest, the payload is the cosign type and names D, and the
 * signature verifies with the key. Presence alone never counts.
 */
import { createHash, createPublicKey, type KeyObject, verify } from "node:crypto";

export const COSIGN_SIGNATURE_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json";
export const COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature";
export const COSIGN_SIGNATURE_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json";
export const COSIGN_PAYLOAD_TYPE = "cosign container image signature";

/** The outcome of checking one signature; `reason` is for a person. */
export type SignatureResult = { ok: true; keyId?: string } | { ok: false; reason: string };

/** A layer of a signature manifest, as the manifest describes it. */
export interface SignatureLayer {
  mediaType?: string;
  digest?: string;
  size?: number;
  annotations?: Record<string, string>;
}

/** A public key, by the name the configuration gives it. */
export interface NamedKey {
  name: string;
  pem: string;
}

/** Where cosign signatures of `subject` live in its repository: a tag and a referrers filter. */
export function signatureLocations(subject: string): { tag: string; referrersArtifactType: string } {
  const colon = subject.indexOf(":");
  if (colon <= 0 || !/^[a-z0-9]+:[a-f0-9]+$/.test(subject)) throw new Error(`not a digest: ${subject}`);
  return {
    tag: `${subject.slice(0, colon)}-${subject.slice(colon + 1)}.sig`,
    referrersArtifactType: COSIGN_SIGNATURE_ARTIFACT,
  };
}

/**
 * A PEM public key checked to be ECDSA P-256 (the only kind cosign's
 * `--key` signatures use here). Returns the key or why it cannot be used.
 */
export function parseCosignKey(pem: string): KeyObject | { reason: string } {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    return { reason: `not a PEM public key (${(err as Error).message})` };
  }
  if (key.asymmetricKeyType !== "ec") return { reason: `a ${key.asymmetricKeyType} key, not ECDSA P-256` };
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (curve !== "prime256v1") return { reason: `an ECDSA key on curve ${curve}, not P-256` };
  return key;
}

/** The layer of a parsed signature manifest that holds the simple-signing payload, if any. */
export function signatureLayers(manifest: unknown): SignatureLayer[] {
  const layers = (manifest as { layers?: unknown } | null)?.layers;
  if (!Array.isArray(layers)) return [];
  return layers.filter(
    (l): l is SignatureLayer =>
      typeof l === "object" && l !== null && (l as SignatureLayer).mediaType === COSIGN_SIGNATURE_LAYER,
  );
}

/**
 * Verify one cosign signature of `subject`: `layer` is the signature layer
 * (from `signatureLayers`), `payload` its bytes as stored, `key` a named PEM
 * public key. Never throws.
 */
export function verifySignatureLayer(
  subject: string,
  layer: SignatureLayer | undefined,
  payload: Uint8Array | undefined,
  key: NamedKey,
): SignatureResult {
  if (layer === undefined) return { ok: false, reason: "no signature layer" };
  const parsedKey = parseCosignKey(key.pem);
  if ("reason" in parsedKey) return { ok: false, reason: `key ${key.name} is ${parsedKey.reason}` };
  if (payload === undefined) return { ok: false, reason: `signature payload ${layer.digest} is not stored` };
  const [alg, hex] = String(layer.digest).split(":");
  if ((alg !== "sha256" && alg !== "sha512") || hex === undefined)
    return { ok: false, reason: `signature layer has no usable digest (${layer.digest})` };
  if (createHash(alg).update(payload).digest("hex") !== hex)
    return { ok: false, reason: "layer bytes do not match their digest" };
  const encoded = layer.annotations?.[COSIGN_SIGNATURE_ANNOTATION];
  if (encoded === undefined || encoded === "")
    return { ok: false, reason: `signature layer has no ${COSIGN_SIGNATURE_ANNOTATION} annotation` };
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded) || encoded.length % 4 !== 0)
    return { ok: false, reason: "signature annotation is not base64" };
  const claim = parsePayload(payload);
  if ("reason" in claim) return { ok: false, reason: claim.reason };
  if (claim.digest !== subject) return { ok: false, reason: `payload names ${claim.digest} not ${subject}` };
  let good = false;
  try {
    good = verify("sha256", payload, parsedKey, Buffer.from(encoded, "base64"));
  } catch {
    good = false; // a malformed DER signature is just a signature that does not verify
  }
  if (!good) return { ok: false, reason: `signature does not verify with key ${key.name}` };
  return { ok: true, keyId: key.name };
}

/** The digest a simple-signing payload names, after checking its type. */
function parsePayload(payload: Uint8Array): { digest: string } | { reason: string } {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(payload).toString("utf8"));
  } catch {
    return { reason: "signature payload is not JSON" };
  }
  const critical = (doc as { critical?: Record<string, unknown> } | null)?.critical;
  if (typeof critical !== "object" || critical === null)
    return { reason: "signature payload has no critical section" };
  if (critical.type !== COSIGN_PAYLOAD_TYPE)
    return {
      reason: `signature payload type is ${JSON.stringify(critical.type)}, not "${COSIGN_PAYLOAD_TYPE}"`,
    };
  const digest = (critical.image as { "docker-manifest-digest"?: unknown } | undefined)?.[
    "docker-manifest-digest"
  ];
  if (typeof digest !== "string") return { reason: "signature payload names no docker-manifest-digest" };
  return { digest };
}

/** One signature manifest found for a subject: its parsed JSON and a way to read a layer's bytes. */
export interface FoundSignature {
  /** Where it was found (a tag or a referrer's digest), for the reason. */
  source: string;
  manifest: unknown;
  /** The bytes of a blob by digest, or undefined when not stored. */
  blob: (digest: string) => Uint8Array | undefined;
}

/**
 * Whether one of `keys` verifies one of the signatures in `found`. On
 * failure the reason lists each key's and signature's, so a person sees the
 * tampered payload rather than just "no valid signature".
 */
export function verifyAnySignature(
  subject: string,
  found: readonly FoundSignature[],
  keys: readonly NamedKey[],
): SignatureResult {
  if (keys.length === 0) return { ok: false, reason: "no public key configured" };
  if (found.length === 0) return { ok: false, reason: `no cosign signature found for ${subject}` };
  const reasons: string[] = [];
  for (const sig of found) {
    const layers = signatureLayers(sig.manifest);
    if (layers.length === 0) {
      reasons.push(`${sig.source}: no signature layer`);
      continue;
    }
    for (const layer of layers) {
      const bytes = typeof layer.digest === "string" ? sig.blob(layer.digest) : undefined;
      for (const key of keys) {
        const r = verifySignatureLayer(subject, layer, bytes, key);
        if (r.ok) return r;
        if (!reasons.includes(`${sig.source}: ${r.reason}`)) reasons.push(`${sig.source}: ${r.reason}`);
      }
    }
  }
  return { ok: false, reason: reasons.join("; ") };
}
