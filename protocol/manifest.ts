/**
 * Manifest parsing and validation: what a registry must check before it
 * accepts a manifest (OCI image spec, Docker schema2), and the references it
 * carries (blobs, child manifests, subject) for the closure checks. The bytes
 * are never re-serialized: callers keep exactly what they received.
 */
import { type Digest, parseDigest } from "./digest.js";
import { ManifestInvalidError } from "./errors.js";
import { isIndexType, MANIFEST_MEDIA_TYPES, MediaType } from "./media-types.js";

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  platform?: Record<string, unknown>;
}

export interface ParsedManifest {
  mediaType: string;
  /** Blobs the manifest needs: config and layers (empty for an index). */
  blobs: Digest[];
  /** Child manifests of an index (empty for an image manifest). */
  manifests: Digest[];
  subject?: Digest;
  /** `artifactType`, else the config's media type (as the referrers API reports it). */
  artifactType?: string;
  annotations?: Record<string, string>;
  /** For an index: each child's platform as "os/architecture[/variant]", where it states one. */
  platforms?: Record<Digest, string>;
}

/**
 * Parse manifest bytes received with `contentType` (may be undefined).
 * Throws ManifestInvalidError naming the first problem found.
 */
export function parseManifest(bytes: Uint8Array, contentType: string | undefined): ParsedManifest {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"));
  } catch (err) {
    throw new ManifestInvalidError("manifest is not valid JSON", { cause: err });
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new ManifestInvalidError("manifest is not a JSON object");
  }
  if (doc.schemaVersion !== 2) throw new ManifestInvalidError("schemaVersion must be 2");

  const declared = doc.mediaType;
  if (declared !== undefined && typeof declared !== "string")
    throw new ManifestInvalidError("mediaType must be a string");
  const type = normalizeContentType(contentType);
  let mediaType: string;
  if (type !== undefined && MANIFEST_MEDIA_TYPES.has(type)) {
    if (declared !== undefined && declared !== type) {
      throw new ManifestInvalidError(`Content-Type ${type} does not match mediaType ${declared}`);
    }
    mediaType = type;
  } else if (type !== undefined && type !== "application/json" && type !== "application/octet-stream") {
    throw new ManifestInvalidError(`unsupported manifest media type: ${type}`);
  } else if (declared !== undefined) {
    mediaType = declared;
  } else {
    mediaType = Array.isArray(doc.manifests) ? MediaType.OciIndex : MediaType.OciManifest;
  }
  if (!MANIFEST_MEDIA_TYPES.has(mediaType))
    throw new ManifestInvalidError(`unsupported manifest media type: ${mediaType}`);

  const parsed: ParsedManifest = { mediaType, blobs: [], manifests: [] };
  if (isIndexType(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw new ManifestInvalidError("index has no manifests array");
    doc.manifests.forEach((d, i) => {
      const child = descriptor(d, `manifests[${i}]`);
      parsed.manifests.push(child.digest);
      const platform = platformOf(child.platform);
      if (platform !== undefined) {
        parsed.platforms ??= {};
        parsed.platforms[child.digest] = platform;
      }
    });
    if (doc.artifactType !== undefined) parsed.artifactType = stringField(doc.artifactType, "artifactType");
  } else {
    if (doc.manifests !== undefined) throw new ManifestInvalidError("image manifest must not have manifests");
    const config = descriptor(doc.config, "config");
    if (!Array.isArray(doc.layers)) throw new ManifestInvalidError("manifest has no layers array");
    parsed.blobs.push(config.digest);
    doc.layers.forEach((d, i) => {
      parsed.blobs.push(descriptor(d, `layers[${i}]`).digest);
    });
    parsed.artifactType =
      doc.artifactType !== undefined ? stringField(doc.artifactType, "artifactType") : config.mediaType;
  }
  if (doc.subject !== undefined) parsed.subject = descriptor(doc.subject, "subject").digest;
  if (doc.annotations !== undefined) parsed.annotations = annotations(doc.annotations);
  return parsed;
}

/** `type/subtype` of a Content-Type header, lower-cased, without parameters. */
export function normalizeContentType(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const t = value.split(";", 1)[0]!.trim().toLowerCase();
  return t === "" ? undefined : t;
}

function descriptor(value: unknown, where: string): Descriptor {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ManifestInvalidError(`${where} is not a descriptor`);
  }
  const d = value as Record<string, unknown>;
  const mediaType = stringField(d.mediaType, `${where}.mediaType`);
  if (typeof d.digest !== "string") throw new ManifestInvalidError(`${where}.digest is missing`);
  let digest: Digest;
  try {
    digest = parseDigest(d.digest);
  } catch (err) {
    throw new ManifestInvalidError(`${where}.digest is invalid`, { cause: err });
  }
  if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new ManifestInvalidError(`${where}.size must be a non-negative integer`);
  }
  const out: Descriptor = { mediaType, digest, size: d.size };
  if (d.artifactType !== undefined) out.artifactType = stringField(d.artifactType, `${where}.artifactType`);
  if (d.annotations !== undefined) out.annotations = annotations(d.annotations);
  if (d.platform !== undefined) {
    if (typeof d.platform !== "object" || d.platform === null || Array.isArray(d.platform))
      throw new ManifestInvalidError(`${where}.platform must be an object`);
    out.platform = d.platform as Record<string, unknown>;
  }
  return out;
}

function stringField(value: unknown, where: string): string {
  if (typeof value !== "string" || value.length === 0)
    throw new ManifestInvalidError(`${where} must be a string`);
  return value;
}

function annotations(value: unknown): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ManifestInvalidError("annotations must be a map of strings");
  }
  for (const v of Object.values(value)) {
    if (typeof v !== "string") throw new ManifestInvalidError("annotations must be a map of strings");
  }
  return value as Record<string, string>;
}

/** "os/architecture[/variant]" of a descriptor's platform, when it names both os and architecture. */
export function platformOf(platform: Record<string, unknown> | undefined): string | undefined {
  if (platform === undefined) return undefined;
  const { os, architecture, variant } = platform;
  if (typeof os !== "string" || typeof architecture !== "string" || os === "" || architecture === "")
    return undefined;
  return typeof variant === "string" && variant !== ""
    ? `${os}/${architecture}/${variant}`
    : `${os}/${architecture}`;
}
