/**
 * What garbage collection (./gc.ts) needs of the filesystem store
 * (./fs-blob-store.ts, whose layout draws `gc/<run id>/`): the listing of
 * committed blobs, and setting a blob's file aside by one rename, putting
 * it back without ever replacing a blob stored again meanwhile, dropping
 * it for good.
 */
import { link, mkdir, readdir, rename, rm, rmdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { algorithmOf, type Digest, encodedOf, isDigest } from "../../protocol/digest.js";
import type { StoredBlob } from "./blob-store.js";

/** Every committed blob under `blobs` (<algorithm>/<two hex>/<encoded>). */
export async function* listFsBlobs(blobs: string): AsyncIterable<StoredBlob> {
  for (const algorithm of await readdir(blobs).catch(() => [] as string[])) {
    for (const prefix of await readdir(join(blobs, algorithm)).catch(() => [] as string[])) {
      for (const name of await readdir(join(blobs, algorithm, prefix)).catch(() => [] as string[])) {
        const digest = `${algorithm}:${name}`;
        if (!isDigest(digest)) continue;
        const s = await stat(join(blobs, algorithm, prefix, name)).catch(() => undefined);
        if (s?.isFile()) yield { digest: digest as Digest, size: s.size, modifiedMs: s.mtimeMs };
      }
    }
  }
}

/** Where a run (`key`) sets a blob aside under the store's `root`. */
export function asidePath(root: string, digest: Digest, key: string): string {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(key)) throw new Error(`bad set-aside key ${key}`);
  return join(root, "gc", key, `${algorithmOf(digest)}-${encodedOf(digest)}`);
}

export async function setAsideFile(
  digest: Digest,
  from: string,
  aside: string,
): Promise<StoredBlob | undefined> {
  await mkdir(dirname(aside), { recursive: true });
  try {
    // One rename: a read that opened the file before keeps its bytes; one after sees it absent.
    await rename(from, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const s = await stat(aside);
  return { digest, size: s.size, modifiedMs: s.mtimeMs };
}

export async function putBackFile(aside: string, to: string): Promise<boolean> {
  let restored = false;
  try {
    // link(2) never replaces: a blob stored again meanwhile (the same bytes) stays as it is.
    await link(aside, to);
    restored = true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EEXIST" && code !== "ENOENT") throw err;
  }
  await dropAsideFile(aside);
  return restored;
}

export async function dropAsideFile(aside: string): Promise<void> {
  await rm(aside, { force: true });
  await rmdir(dirname(aside)).catch(() => undefined); // the run's directory, once empty
}
