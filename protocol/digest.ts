/**
 * Content digests (OCI image spec §"Digests"): `algorithm ":" encoded`.
 * sha256 is the default and what Meridian computes; sha512 is accepted.
 * A digest is parsed once at the edge and passed around as a `Digest` string
 * that is known to be valid and canonical.
 */
import { createHash, type Hash } from "node:crypto";
import { DigestInvalidError, UnsupportedError } from "./errors.js";

export type Digest = string & { readonly __digest: unique symbol };
export type DigestAlgorithm = "sha256" | "sha512";

const GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const ENCODED: Record<DigestAlgorithm, RegExp> = {
  sha256: /^[a-f0-9]{64}$/,
  sha512: /^[a-f0-9]{128}$/,
};

/** Parse and validate a digest; throws DigestInvalidError for a bad form or an unsupported algorithm (as OCI asks). */
export function parseDigest(value: string): Digest {
  if (typeof value !== "string" || value.length > 200 || !GRAMMAR.test(value)) {
    throw new DigestInvalidError(`invalid digest: ${String(value).slice(0, 200)}`);
  }
  const colon = value.indexOf(":");
  const algorithm = value.slice(0, colon);
  const encoded = value.slice(colon + 1);
  const pattern = ENCODED[algorithm as DigestAlgorithm];
  if (pattern === undefined) throw new DigestInvalidError(`unsupported digest algorithm: ${algorithm}`);
  if (!pattern.test(encoded)) throw new DigestInvalidError(`invalid ${algorithm} digest encoding`);
  return value as Digest;
}

export function isDigest(value: string): boolean {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

export function algorithmOf(digest: Digest): DigestAlgorithm {
  return digest.slice(0, digest.indexOf(":")) as DigestAlgorithm;
}

export function encodedOf(digest: Digest): string {
  return digest.slice(digest.indexOf(":") + 1);
}

export function newHash(algorithm: DigestAlgorithm = "sha256"): Hash {
  if (algorithm !== "sha256" && algorithm !== "sha512")
    throw new UnsupportedError(`digest algorithm ${algorithm}`);
  return createHash(algorithm);
}

export function digestOf(bytes: Uint8Array | string, algorithm: DigestAlgorithm = "sha256"): Digest {
  return `${algorithm}:${newHash(algorithm).update(bytes).digest("hex")}` as Digest;
}

export function digestFromHash(hash: Hash, algorithm: DigestAlgorithm): Digest {
  return `${algorithm}:${hash.digest("hex")}` as Digest;
}
