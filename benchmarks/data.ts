/**
 * Deterministic pseudo-random content, generated in pieces so that a 1 GiB
 * blob never has to sit in the client's memory: the AES-128-CTR keystream of
 * a key derived from a seed (fast, incompressible, reproducible). The digest
 * is computed in a first pass; the bytes are generated again when sent.
 */
import { createCipheriv, createHash } from "node:crypto";

export const MiB = 1024 * 1024;
const PIECE = MiB;
const ZEROS = Buffer.alloc(PIECE);

export class GeneratedBlob {
  #digest: string | undefined;

  constructor(
    readonly size: number,
    readonly seed: string,
  ) {}

  /** The bytes from `start` (a multiple of 1 MiB) for `length` bytes, in pieces of at most 1 MiB. */
  *pieces(start = 0, length = this.size - start): Generator<Buffer> {
    if (start % PIECE !== 0) throw new Error("start must be a multiple of 1 MiB");
    const key = createHash("sha256").update(this.seed).digest().subarray(0, 16);
    const iv = Buffer.alloc(16);
    // CTR: the counter block for byte `start` is start / 16 (big-endian, low 8 bytes suffice here).
    iv.writeBigUInt64BE(BigInt(start / 16), 8);
    const cipher = createCipheriv("aes-128-ctr", key, iv);
    const end = Math.min(this.size, start + length);
    for (let offset = start; offset < end; offset += PIECE) {
      const n = Math.min(PIECE, end - offset);
      yield cipher.update(n === PIECE ? ZEROS : ZEROS.subarray(0, n));
    }
  }

  /** sha256 digest of the whole blob (first pass, cached). */
  digest(): string {
    if (this.#digest === undefined) {
      const hash = createHash("sha256");
      for (const piece of this.pieces()) hash.update(piece);
      this.#digest = `sha256:${hash.digest("hex")}`;
    }
    return this.#digest;
  }

  /** The whole blob in memory (only for small blobs). */
  bytes(): Buffer {
    return Buffer.concat([...this.pieces()], this.size);
  }
}
