/**
 * Signature verification of a stored manifest, read-only, mounted under
 * /admin/v1 by ../admin.ts (system admins and operators, the gate's default):
 *
 *   GET /verify/<repo>@<digest>[?key=NAME]
 *     → 200 {repo, digest, ok, results: [{gate, ok, reason}], signatures: [where each was found]}
 *
 * The node reads, from its own store only, the cosign signature manifests
 * of the digest (the `sha256-<hex>.sig` tag and the referrers of artifactType
 * `application/vnd.dev.cosign.artifact.sig.v1+json`, protocol/cosign.ts
 * signatureLocations) and their payload blobs, and evaluates the signature
 * gate (protocol/gates.ts) with the key NAME, or with any key configured in
 * `verification.keys` (node/config.ts) when no key is named. A signature that
 * fails answers ok:false with the reason (tampered payload, wrong key, …);
 * the digest not stored here is 404 MANIFEST_UNKNOWN.
 *
 * This is the check promotion and block-pull policies (issues 17, 18) call
 * before acting: the same pure code, fed from this node's store.
 */
import type { FastifyPluginAsync } from "fastify";
import {
  COSIGN_SIGNATURE_ARTIFACT,
  type FoundSignature,
  signatureLayers,
  signatureLocations,
} from "../../../protocol/cosign.js";
import { parseDigest } from "../../../protocol/digest.js";
import { BlobNotFoundError, ManifestNotFoundError, UnsupportedError } from "../../../protocol/errors.js";
import { type GateEvidence, signatureGate } from "../../../protocol/gates.js";
import type { Registry } from "../../data/registry.js";
import { Fixed, Type, want } from "./schema.js";

/** A simple-signing payload is a few hundred bytes; a larger "payload" is not read. */
const MAX_PAYLOAD_BYTES = 64 * 1024;
/** Signature manifests looked at per digest (referrers are client-supplied: bounded). */
const MAX_SIGNATURES = 32;

const VerifyQuery = Fixed({
  key: Type.Optional(want(Type.String({ minLength: 1 }), "a key name of verification.keys")),
});

export const verifyRoutes: FastifyPluginAsync<{
  registry: Registry;
  keys: ReadonlyMap<string, string>;
}> = async (admin, { registry, keys }) => {
  admin.get<{ Params: { "*": string }; Querystring: { key?: string } }>(
    "/verify/*",
    { schema: { querystring: VerifyQuery } },
    async (req) => {
      const target = req.params["*"];
      const at = target.lastIndexOf("@");
      if (at <= 0)
        throw new UnsupportedError("expected /verify/<repo>@<digest>", {
          detail: { target: target.slice(0, 300) },
        });
      const repo = target.slice(0, at);
      const digest = parseDigest(target.slice(at + 1));
      await registry.resolveManifest(repo, { digest }); // 404 MANIFEST_UNKNOWN when not stored here
      const key = req.query.key;
      const signatures = await findSignatures(registry, repo, digest);
      const evidence: GateEvidence = {
        subject: digest,
        signatures,
        keys,
        reports: [],
        annotations: {},
        labels: {},
        now: Date.now(),
      };
      const result = signatureGate(key === undefined ? [...keys.keys()] : [key], evidence);
      return { repo, digest, ok: result.ok, results: [result], signatures: signatures.map((s) => s.source) };
    },
  );
};

async function findSignatures(
  registry: Registry,
  repo: string,
  digest: ReturnType<typeof parseDigest>,
): Promise<FoundSignature[]> {
  const { tag } = signatureLocations(digest);
  const manifests: { source: string; bytes: Buffer }[] = [];
  const tagged = await registry.resolveManifest(repo, { tag }).catch(notFound);
  if (tagged !== undefined) manifests.push({ source: `tag ${tag}`, bytes: tagged.bytes });
  for (const r of (await registry.referrers(repo, digest, COSIGN_SIGNATURE_ARTIFACT)).slice(
    0,
    MAX_SIGNATURES,
  )) {
    if (r.digest === tagged?.digest) continue;
    const m = await registry.resolveManifest(repo, { digest: r.digest }).catch(notFound);
    if (m !== undefined) manifests.push({ source: `referrer ${r.digest}`, bytes: m.bytes });
  }
  const found: FoundSignature[] = [];
  for (const { source, bytes } of manifests) {
    let manifest: unknown;
    try {
      manifest = JSON.parse(bytes.toString("utf8"));
    } catch {
      manifest = {};
    }
    const blobs = new Map<string, Uint8Array>();
    for (const layer of signatureLayers(manifest).slice(0, MAX_SIGNATURES)) {
      if (typeof layer.digest !== "string" || blobs.has(layer.digest)) continue;
      const bytes = await readPayload(registry, repo, layer.digest);
      if (bytes !== undefined) blobs.set(layer.digest, bytes);
    }
    found.push({ source, manifest, blob: (d) => blobs.get(d) });
  }
  return found;
}

/** A payload blob linked into `repo`, when small enough; undefined otherwise (the gate says "not stored"). */
async function readPayload(registry: Registry, repo: string, value: string): Promise<Uint8Array | undefined> {
  let digest: ReturnType<typeof parseDigest>;
  try {
    digest = parseDigest(value);
  } catch {
    return undefined;
  }
  const size = await registry.linkedBlobSize(repo, digest);
  if (size === undefined || size > MAX_PAYLOAD_BYTES) return undefined;
  return registry.store.readAll(digest).catch((err) => {
    if (err instanceof BlobNotFoundError) return undefined;
    throw err;
  });
}

function notFound(err: unknown): undefined {
  if (err instanceof ManifestNotFoundError) return undefined;
  throw err;
}
