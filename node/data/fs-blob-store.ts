/**
 * BlobStore on a local filesystem.
 *
 *   <root>/
 *   ├── blobs/<algorithm>/<first two hex>/<encoded>   committed bytes, named by digest
 *   ├── uploads/<uuid>/meta.json                      {repo, startedAt}, written once
 *   ├── uploads/<uuid>/data                           bytes received so far (mtime: last activity);
 *   │                                                 absent until the first chunk (offset 0)
 *   ├── tmp/<uuid>                                    monolithic writes in flight
 *   └── quarantine/<algorithm>/<encoded>.<ms>          bytes the scrub found corrupt, moved aside
 *                                                     (node/data/scrub.ts; never read by Meridian)
 *   └── gc/<run id>/<algorithm>-<encoded>             blobs a GC run set aside (node/data/gc.ts)
 *
 * A blob becomes visible only by rename(2) of a complete, verified (and, with
 * `fsync`, flushed) file into `blobs/`, so a crash at any point leaves either
 * the whole blob or none of it. Upload sessions are plain files, so they
 * survive a restart and are shared by every node process on the same root;
 * the running sha256 of a session is cached in memory and rebuilt from the
 * file whenever it does not match the file's length (after a restart, or a
 * chunk appended by another process).
 *
 * File-system calls per blob are kept few, because a push of many small
 * blobs is bound by them (benchmarks/README.md, "Real client forms"): a
 * session is a directory and its meta.json (the data file comes with the
 * first chunk), the meta of a session is cached once read (it never
 * changes), the 256 digest-prefix directories of `blobs/sha256/` are made by
 * `init` (other algorithms' on the first rename that needs them), and a
 * session is dropped by unlinking its files (only meta.json when it was last
 * seen without data) and its directory. The durability promise does not
 * change: with `fsync`, every blob's bytes are flushed before the rename that
 * makes it visible.
 */

import type { Hash } from "node:crypto";
import { randomUUID } from "node:crypto";
import {
  close as closeCb,
  createReadStream,
  fstat as fstatCb,
  open as openCb,
  writeFile as writeFileCb,
} from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, rmdir, stat, unlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { promisify } from "node:util";
import {
  algorithmOf,
  type Digest,
  type DigestAlgorithm,
  digestFromHash,
  digestOf,
  encodedOf,
  newHash,
} from "../../protocol/digest.js";
import {
  BlobNotFoundError,
  DigestMismatchError,
  RangeNotSatisfiableError,
  SizeInvalidError,
  UploadNotFoundError,
  UploadRangeError,
} from "../../protocol/errors.js";
import type { BlobStore, ByteRange, StoredBlob, UploadState } from "./blob-store.js";
import { FileBody } from "./file-body.js";
import { asidePath, dropAsideFile, listFsBlobs, putBackFile, setAsideFile } from "./fs-gc.js";
import { PerKeySerial } from "./per-key-serial.js";
import { streamToFile } from "./stream-to-file.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const READ_CHUNK = 1 << 20;
const openFd = promisify(openCb);
const fstatFd = promisify(fstatCb);
const closeFd = promisify(closeCb);
/** fs.writeFile with callbacks: no FileHandle object per call (a session's meta.json, per POST). */
const writeSmallFile = promisify(writeFileCb);

export interface FsBlobStoreOptions {
  /** Flush each blob to disk before it becomes visible (default true). */
  fsync?: boolean;
}

interface HashState {
  hash: Hash;
  offset: number;
}

interface SessionMeta {
  repo: string;
  startedAt: string;
}

/** Sessions whose meta is kept in memory; past this the cache starts over (sessions are capped far below). */
const META_CACHE_MAX = 10_000;

export class FsBlobStore implements BlobStore {
  readonly #root: string;
  readonly #fsync: boolean;
  readonly #hashes = new Map<string, HashState>();
  /** The meta.json of sessions seen by this process (written once, never changed). */
  readonly #metas = new Map<string, SessionMeta>();
  /** Sessions last seen here without a data file (no chunk yet): their removal skips the data file. */
  readonly #withoutData = new Set<string>();
  /** Each upload's appends and commit, one at a time in this process. */
  readonly #perUpload = new PerKeySerial();

  constructor(root: string, options: FsBlobStoreOptions = {}) {
    this.#root = root;
    this.#fsync = options.fsync ?? true;
  }

  async init(): Promise<void> {
    await Promise.all(
      ["blobs", "uploads", "tmp"].map((d) => mkdir(join(this.#root, d), { recursive: true })),
    );
    // The 256 digest-prefix directories of sha256, made once here rather than by the first
    // rename into each (a failed rename and a mkdir more for most blobs of a new registry).
    const sha256 = join(this.#root, "blobs", "sha256");
    await mkdir(sha256, { recursive: true });
    await Promise.all(
      Array.from({ length: 256 }, (_, i) =>
        mkdir(join(sha256, i.toString(16).padStart(2, "0"))).catch((err) => {
          if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        }),
      ),
    );
  }

  #blobPath(digest: Digest): string {
    const encoded = encodedOf(digest);
    return join(this.#root, "blobs", algorithmOf(digest), encoded.slice(0, 2), encoded);
  }

  #uploadDir(id: string): string {
    if (!UUID.test(id)) throw new UploadNotFoundError("blob upload unknown");
    return join(this.#root, "uploads", id);
  }

  async stat(digest: Digest): Promise<number | undefined> {
    try {
      return (await stat(this.#blobPath(digest))).size;
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  async read(digest: Digest, range?: ByteRange, signal?: AbortSignal): Promise<Readable> {
    // A numeric fd (callback reads cost less than FileHandle's promise reads),
    // as a FileBody: the GET path copies it with reused buffers (file-body.ts).
    let fd: number;
    try {
      fd = await openFd(this.#blobPath(digest), "r");
    } catch (err) {
      if (isMissing(err)) throw new BlobNotFoundError("blob unknown", { cause: err });
      throw err;
    }
    if (range !== undefined) {
      const { size } = await fstatFd(fd);
      if (range.start > range.end || range.end >= size) {
        await closeFd(fd);
        throw new RangeNotSatisfiableError("range not satisfiable", size);
      }
    }
    return new FileBody(fd, range?.start, range === undefined ? undefined : range.end + 1, signal);
  }

  async readAll(digest: Digest): Promise<Buffer> {
    try {
      return await readFile(this.#blobPath(digest));
    } catch (err) {
      if (isMissing(err)) throw new BlobNotFoundError("blob unknown", { cause: err });
      throw err;
    }
  }

  async write(
    source: Readable,
    expected: Digest | undefined,
    expectedSize?: number,
    signal?: AbortSignal,
  ): Promise<{ digest: Digest; size: number }> {
    const algorithm: DigestAlgorithm = expected ? algorithmOf(expected) : "sha256";
    const tmp = join(this.#root, "tmp", randomUUID());
    const hash = newHash(algorithm);
    let renamed = false;
    try {
      const bytes = await streamToFile(source, tmp, "w", hash, 0, this.#fsync ? "flush" : "none", signal);
      const digest = digestFromHash(hash, algorithm);
      if (expectedSize !== undefined && bytes !== expectedSize) {
        throw new SizeInvalidError(`received ${bytes} bytes, expected ${expectedSize}`);
      }
      if (expected !== undefined && digest !== expected) {
        throw new DigestMismatchError("content does not match digest", {
          detail: { expected, actual: digest },
        });
      }
      await this.#commitFile(tmp, digest);
      renamed = true;
      return { digest, size: bytes };
    } finally {
      if (!renamed) await rm(tmp, { force: true });
    }
  }

  async writeAll(bytes: Uint8Array, digest: Digest): Promise<void> {
    const actual = digestOf(bytes, algorithmOf(digest));
    if (actual !== digest) {
      throw new DigestMismatchError("content does not match digest", {
        detail: { expected: digest, actual },
      });
    }
    if ((await this.stat(digest)) === bytes.byteLength) return;
    const tmp = join(this.#root, "tmp", randomUUID());
    let renamed = false;
    try {
      await writeFile(tmp, bytes, { flush: this.#fsync });
      await this.#commitFile(tmp, digest);
      renamed = true;
    } finally {
      if (!renamed) await rm(tmp, { force: true });
    }
  }

  async delete(digest: Digest): Promise<void> {
    await rm(this.#blobPath(digest), { force: true });
  }

  // ---------------------------------------------------------------- garbage collection (gc.ts)

  listBlobs(): AsyncIterable<StoredBlob> {
    return listFsBlobs(join(this.#root, "blobs"));
  }

  async setAside(digest: Digest, key: string): Promise<StoredBlob | undefined> {
    return setAsideFile(digest, this.#blobPath(digest), asidePath(this.#root, digest, key));
  }

  async putBack(digest: Digest, key: string): Promise<boolean> {
    return putBackFile(asidePath(this.#root, digest, key), this.#blobPath(digest));
  }

  async dropAside(digest: Digest, key: string): Promise<void> {
    return dropAsideFile(asidePath(this.#root, digest, key));
  }

  async quarantine(digest: Digest): Promise<boolean> {
    // rename(2): the digest's name disappears at once, and the bytes are kept for a look.
    const dir = join(this.#root, "quarantine", algorithmOf(digest));
    await mkdir(dir, { recursive: true });
    try {
      await rename(this.#blobPath(digest), join(dir, `${encodedOf(digest)}.${Date.now()}`));
      return true;
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  async startUpload(repo: string): Promise<UploadState> {
    const id = randomUUID();
    const dir = this.#uploadDir(id);
    const startedAt = new Date().toISOString();
    await mkdir(dir);
    // meta.json's presence is what makes the session exist. It is written
    // in place: nobody knows the id before this returns, and a creation cut
    // short by a crash is a directory purgeStale judges by its age. The data
    // file is created by the first chunk; until then the offset is 0.
    await writeSmallFile(join(dir, "meta.json"), JSON.stringify({ repo, startedAt }), { flag: "wx" });
    this.#remember(id, { repo, startedAt });
    this.#withoutData.add(id);
    return { id, repo, offset: 0, startedAt };
  }

  async uploadState(id: string): Promise<UploadState> {
    const dir = this.#uploadDir(id);
    let meta = this.#metas.get(id);
    let size: number;
    try {
      if (meta === undefined) {
        meta = JSON.parse(await readFile(join(dir, "meta.json"), "utf8")) as SessionMeta;
        this.#remember(id, meta);
      }
      size = await stat(join(dir, "data")).then(
        (s) => {
          this.#withoutData.delete(id);
          return s.size;
        },
        async (err) => {
          if (!isMissing(err)) throw err;
          // No chunk yet; or the session is gone (ended by another process: check its marker).
          await stat(join(dir, "meta.json"));
          if (this.#withoutData.size >= META_CACHE_MAX) this.#withoutData.clear();
          this.#withoutData.add(id);
          return 0;
        },
      );
    } catch (err) {
      if (isMissing(err)) {
        this.#metas.delete(id);
        throw new UploadNotFoundError("blob upload unknown", { cause: err });
      }
      throw err;
    }
    return { id, repo: meta.repo, offset: size, startedAt: meta.startedAt };
  }

  #remember(id: string, meta: SessionMeta): void {
    if (this.#metas.size >= META_CACHE_MAX) this.#metas.clear();
    this.#metas.set(id, meta);
  }

  /**
   * Remove a session's files: meta.json first (the session stops existing),
   * then its data and its directory; UploadNotFoundError when it is gone.
   * A session last seen without a data file (the POST + PUT-with-body form)
   * has its directory removed straight away; should a chunk have landed
   * meanwhile (through another process), the directory is not empty and is
   * removed with everything in it.
   */
  async #removeSession(id: string): Promise<void> {
    const dir = this.#uploadDir(id);
    this.#hashes.delete(id);
    this.#metas.delete(id);
    const hasData = !this.#withoutData.delete(id);
    try {
      await unlink(join(dir, "meta.json"));
    } catch (err) {
      if (isMissing(err)) throw new UploadNotFoundError("blob upload unknown", { cause: err });
      throw err;
    }
    if (hasData)
      await unlink(join(dir, "data")).catch((err) => {
        if (!isMissing(err)) throw err;
      });
    // Anything else in the directory (a file of an older layout): remove it all.
    await rmdir(dir).catch(() => rm(dir, { recursive: true, force: true }));
  }

  appendUpload(
    id: string,
    source: Readable,
    start: number | undefined,
    length: number | undefined,
    signal?: AbortSignal,
  ): Promise<UploadState> {
    return this.#perUpload.run(id, async () => {
      const state = await this.uploadState(id);
      if (start !== undefined && start !== state.offset) {
        source.resume();
        throw new UploadRangeError(`chunk starts at ${start}, upload is at ${state.offset}`, {
          detail: { offset: state.offset },
        });
      }
      const running = await this.#hashAt(id, state.offset);
      this.#hashes.delete(id); // re-cached only if the chunk lands whole
      this.#withoutData.delete(id);
      const data = join(this.#uploadDir(id), "data");
      // The commit flushes the session's file; meanwhile it is flushed in the background.
      const mode = this.#fsync ? "background" : "none";
      const bytes = await streamToFile(source, data, "a", running.hash, state.offset, mode, signal);
      const offset = state.offset + bytes;
      if (length !== undefined && bytes !== length) {
        throw new SizeInvalidError(`chunk has ${bytes} bytes, Content-Length said ${length}`);
      }
      this.#hashes.set(id, { hash: running.hash, offset });
      return { ...state, offset };
    });
  }

  commitUpload(id: string, digest: Digest): Promise<{ digest: Digest; size: number }> {
    return this.#perUpload.run(id, async () => {
      const state = await this.uploadState(id);
      const algorithm = algorithmOf(digest);
      const hash =
        algorithm === "sha256"
          ? (await this.#hashAt(id, state.offset)).hash
          : await hashFile(join(this.#uploadDir(id), "data"), algorithm, state.offset);
      const actual = digestFromHash(hash, algorithm);
      this.#hashes.delete(id);
      if (actual !== digest) {
        await this.#removeSession(id).catch(() => undefined);
        throw new DigestMismatchError("content does not match digest", {
          detail: { expected: digest, actual },
        });
      }
      const data = join(this.#uploadDir(id), "data");
      // A session that never got a chunk has no data file yet.
      if (state.offset === 0) await writeFile(data, "", { flag: "a" });
      if (this.#fsync) {
        const handle = await open(data, "r+");
        await handle.sync().finally(() => handle.close());
      }
      await this.#commitFile(data, digest);
      this.#withoutData.add(id); // renamed into blobs/
      await this.#removeSession(id);
      return { digest, size: state.offset };
    });
  }

  cancelUpload(id: string): Promise<void> {
    return this.#perUpload.run(id, () => this.#removeSession(id));
  }

  async purgeStale(
    before: Date,
    options: { idleBefore?: Date } = {},
  ): Promise<{ uploads: number; leftovers: number }> {
    let uploads = 0;
    let leftovers = 0;
    const idleBefore = options.idleBefore?.getTime() ?? Number.NEGATIVE_INFINITY;
    for (const id of await readdir(join(this.#root, "uploads"))) {
      const dir = join(this.#root, "uploads", id);
      let started: number;
      try {
        started = Date.parse((await this.uploadState(id)).startedAt);
      } catch {
        // No readable meta.json: a session whose creation crashed; judge by the directory's age.
        started = (await stat(dir).catch(() => undefined))?.mtimeMs ?? Date.now();
      }
      // The data file's mtime is the session's last activity (every chunk appends to it).
      const active = Math.max(started, (await stat(join(dir, "data")).catch(() => undefined))?.mtimeMs ?? 0);
      if (started < before.getTime() || active < idleBefore) {
        this.#hashes.delete(id);
        this.#metas.delete(id);
        this.#withoutData.delete(id);
        await rm(dir, { recursive: true, force: true });
        uploads++;
      }
    }
    // Other processes may share this root: only files older than `before` are leftovers.
    for (const name of await readdir(join(this.#root, "tmp"))) {
      const path = join(this.#root, "tmp", name);
      const s = await stat(path).catch(() => undefined);
      if (s !== undefined && s.mtimeMs < before.getTime()) {
        await rm(path, { force: true });
        leftovers++;
      }
    }
    return { uploads, leftovers };
  }

  /** The running hash of a session at `offset`, from the cache or re-read from its file. */
  async #hashAt(id: string, offset: number): Promise<HashState> {
    const cached = this.#hashes.get(id);
    if (cached !== undefined && cached.offset === offset) return cached;
    const hash = await hashFile(join(this.#uploadDir(id), "data"), "sha256", offset);
    const state = { hash, offset };
    this.#hashes.set(id, state);
    return state;
  }

  /** Rename a complete file into `blobs/`; its digest-prefix directory is made when missing (once per prefix). */
  async #commitFile(from: string, digest: Digest): Promise<void> {
    const path = this.#blobPath(digest);
    try {
      await rename(from, path);
    } catch (err) {
      if (!isMissing(err)) throw err;
      await mkdir(dirname(path), { recursive: true });
      await rename(from, path);
    }
  }
}

async function hashFile(path: string, algorithm: DigestAlgorithm, length?: number): Promise<Hash> {
  const hash = newHash(algorithm);
  if (length === 0) return hash;
  const stream = createReadStream(path, {
    highWaterMark: READ_CHUNK,
    end: length === undefined ? undefined : length - 1,
  });
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash;
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === "ENOENT";
}
