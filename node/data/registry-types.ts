/**
 * The shapes the registry (./registry.ts) shares with its callers: what it
 * needs from the other regions, a resolved manifest, and a manifest URL's
 * reference. Split from registry.ts to keep that file readable.
 */
import { type Digest, parseDigest } from "../../protocol/digest.js";
import { parseTag } from "../../protocol/names.js";
import type { ManifestRecord } from "./view.js";

/** What the registry needs from the other regions. */
export interface RegionLink {
  /** Why writes as a repository's home are refused now; "" when they are not. */
  fence(): string;
  /** Wait until `copies` other regions hold the manifest, or `timeoutMs`. */
  waitReplicated(
    repo: string,
    digest: Digest,
    copies: number,
    timeoutMs: number,
  ): Promise<{ regions: string[]; satisfied: boolean }>;
  /** How the region's peer sees the other regions, and this region's lease; undefined before it answered. */
  peerView():
    | { leaseMs: number; peers: Array<{ region: string; up: boolean; lastSeenAtMs: number }> }
    | undefined;
}

export interface ResolvedManifest {
  digest: Digest;
  record: ManifestRecord;
  bytes: Buffer;
}

/** A reference in a manifest URL: a tag or a digest. */
export type Reference = { tag: string } | { digest: Digest };

export function parseReference(value: string): Reference {
  return value.includes(":") ? { digest: parseDigest(value) } : { tag: parseTag(value) };
}
