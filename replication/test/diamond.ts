/**
 * A "diamond" index chain for closure-walk tests (issue 10, finding 4): two
 * image manifests at level 0, two indexes at each level 1…depth each listing
 * both manifests of the level below, and one top index listing both of level
 * `depth`. 2·depth+3 manifests, but 2^(depth+1) paths from the top to an
 * image: a walk without a visited set is exponential in `depth`.
 */
import { createHash } from "node:crypto";
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST } from "../../testing/oci-client.js";

export interface DiamondPart {
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

export interface Diamond {
  /** The config and layer every image shares. */
  blobs: DiamondPart[];
  /** Every manifest, children before the indexes listing them; the top index last. */
  manifests: DiamondPart[];
  top: DiamondPart;
}

const sha = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const part = (doc: unknown, mediaType: string): DiamondPart => {
  const bytes = Buffer.from(JSON.stringify(doc));
  return { digest: sha(bytes), mediaType, bytes };
};
const descriptor = (p: DiamondPart) => ({ mediaType: p.mediaType, digest: p.digest, size: p.bytes.length });

/** `nonce` makes the chain's digests unique (several chains in one registry). */
export function diamond(depth: number, nonce = "0"): Diamond {
  const config = part({ architecture: "amd64", os: "linux", nonce }, OCI_CONFIG);
  const layerBytes = Buffer.from(`layer of diamond ${nonce}`);
  const layer = { digest: sha(layerBytes), mediaType: OCI_LAYER, bytes: layerBytes };
  const manifests: DiamondPart[] = [];
  let level = ["a", "b"].map((side) =>
    part(
      {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: descriptor(config),
        layers: [descriptor(layer)],
        annotations: { "test.meridian/side": side, "test.meridian/nonce": nonce },
      },
      OCI_MANIFEST,
    ),
  );
  manifests.push(...level);
  const index = (children: DiamondPart[], annotations: Record<string, string>) =>
    part(
      { schemaVersion: 2, mediaType: OCI_INDEX, manifests: children.map(descriptor), annotations },
      OCI_INDEX,
    );
  for (let i = 1; i <= depth; i++) {
    const below = level;
    level = ["a", "b"].map((side) =>
      index(below, {
        "test.meridian/level": String(i),
        "test.meridian/side": side,
        "test.meridian/nonce": nonce,
      }),
    );
    manifests.push(...level);
  }
  const top = index(level, { "test.meridian/level": "top", "test.meridian/nonce": nonce });
  manifests.push(top);
  return { blobs: [config, layer], manifests, top };
}
