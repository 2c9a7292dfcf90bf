/**
 * What the gates (protocol/gates.ts) decide on, read from this node's own
 * store: the cosign signatures of a digest (the `sha256-<hex>.sig` tag and
 * the referrers of the cosign signature artifact type, with their payload
 * blobs), the reports attached as referrers of configured artifact types,
 * the manifest's annotations and its image config's labels, and when the
 * tag got the digest it holds. Used by GET /admin/v1/verify (signatures
 * only) and by promotion (node/promotion.ts).
 *
 * Everything here is client-supplied content: each read is bounded (counts
 * of referrers, sizes of blobs read whole); what is over a bound is left
 * out, and the gate then says what it misses.
 */
import {
  COSIGN_SIGNATURE_ARTIFACT,
  type FoundSignature,
  signatureLayers,
  signatureLocations,
} from "../protocol/cosign.js";
import { type Digest, parseDigest } from "../protocol/digest.js";
import { BlobNotFoundError, ManifestNotFoundError } from "../protocol/errors.js";
import type { FoundReport } from "../protocol/gates.js";
import type { Registry } from "./data/registry.js";

/** A simple-signing payload is a few hundred bytes; a larger "payload" is not read. */
const MAX_PAYLOAD_BYTES = 64 * 1024;
/** Signature manifests looked at per digest (referrers are client-supplied: bounded). */
const MAX_SIGNATURES = 32;
/** Reports read per digest, and the largest report layer or image config read whole. */
const MAX_REPORTS = 16;
const MAX_DOCUMENT_BYTES = 8 * 1024 * 1024;

export async function findSignatures(
  registry: Registry,
  repo: string,
  digest: Digest,
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
    const manifest = parseJson(bytes);
    const blobs = new Map<string, Uint8Array>();
    for (const layer of signatureLayers(manifest).slice(0, MAX_SIGNATURES)) {
      if (typeof layer.digest !== "string" || blobs.has(layer.digest)) continue;
      const bytes = await readBlob(registry, repo, layer.digest, MAX_PAYLOAD_BYTES);
      if (bytes !== undefined) blobs.set(layer.digest, bytes);
    }
    found.push({ source, manifest, blob: (d) => blobs.get(d) });
  }
  return found;
}

/**
 * The reports attached to `digest` whose artifactType is one of `types`:
 * each layer of each such referrer is one report (an unreadable layer is
 * handed on empty, so the gate calls it malformed rather than missing).
 */
export async function findReports(
  registry: Registry,
  repo: string,
  digest: Digest,
  types: readonly string[],
): Promise<FoundReport[]> {
  const out: FoundReport[] = [];
  for (const type of new Set(types)) {
    for (const r of (await registry.referrers(repo, digest, type)).slice(0, MAX_REPORTS)) {
      const m = await registry.resolveManifest(repo, { digest: r.digest }).catch(notFound);
      if (m === undefined) continue;
      const layers = (parseJson(m.bytes) as { layers?: Array<{ digest?: unknown }> }).layers ?? [];
      for (const layer of layers.slice(0, MAX_REPORTS)) {
        const bytes =
          typeof layer?.digest === "string"
            ? await readBlob(registry, repo, layer.digest, MAX_DOCUMENT_BYTES)
            : undefined;
        out.push({ artifactType: type, source: r.digest, bytes: bytes ?? new Uint8Array() });
      }
    }
  }
  return out;
}

/** The manifest's annotations and, for an image, its config's labels (`config.Labels`). */
export async function annotationsAndLabels(
  registry: Registry,
  repo: string,
  manifestBytes: Buffer,
): Promise<{ annotations: Record<string, string>; labels: Record<string, string> }> {
  const m = parseJson(manifestBytes) as { annotations?: unknown; config?: { digest?: unknown } };
  const annotations = stringRecord(m.annotations);
  let labels: Record<string, string> = {};
  if (typeof m.config?.digest === "string") {
    const bytes = await readBlob(registry, repo, m.config.digest, MAX_DOCUMENT_BYTES);
    if (bytes !== undefined)
      labels = stringRecord(
        (parseJson(Buffer.from(bytes)) as { config?: { Labels?: unknown } }).config?.Labels,
      );
  }
  return { annotations, labels };
}

/**
 * When (ms since the epoch, at the writing region) `repo:tag` was last set
 * to `digest` after holding anything else: the first write of the latest
 * unbroken run of writes of `digest` in the tag's history. Undefined when
 * the history has no write of it.
 */
export async function tagSetAt(registry: Registry, repo: string, tag: string, digest: string) {
  const history = await registry.view.content.tagHistory(repo, tag);
  let since: number | undefined;
  for (const h of history) {
    if (h.digest !== digest) since = undefined;
    else since ??= Date.parse(h.w.at);
  }
  return since;
}

function stringRecord(value: unknown): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return {};
  return Object.fromEntries(Object.entries(value).filter(([, v]) => typeof v === "string")) as Record<
    string,
    string
  >;
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    return {};
  }
}

/** A blob linked into `repo`, when at most `max` bytes; undefined otherwise. */
async function readBlob(
  registry: Registry,
  repo: string,
  value: string,
  max: number,
): Promise<Uint8Array | undefined> {
  let digest: Digest;
  try {
    digest = parseDigest(value);
  } catch {
    return undefined;
  }
  const size = await registry.linkedBlobSize(repo, digest);
  if (size === undefined || size > max) return undefined;
  return registry.store.readAll(digest).catch((err) => {
    if (err instanceof BlobNotFoundError) return undefined;
    throw err;
  });
}

function notFound(err: unknown): undefined {
  if (err instanceof ManifestNotFoundError) return undefined;
  throw err;
}
