/**
 * BlobStore on a local filesystem.
 *
 *   <root>/
 *   ├── blobs/<algorithm>/<first two hex>/<encoded>   committed bytes, named by digest
 *   ├── uploads/<uuid>/meta.json                      {repo, startedAt}, written once
 *   ├── uploads/<uuid>/data                           bytes received so far (mtime: last activity)
 *   └── tmp/<uuid>                                    monolithic writes in flight
 *
 * A blob becomes visible only by rename(2) of a complete, verified (and, with
 * `fsync`, flushed) file into `blobs/`, so a crash at any point leaves either
 * the whole blob or none of it. Upload sessions are plain files, so they
 * survive a restart and are shared by every node process on the same root;
 * the running sha256 of a session is cached in memory and rebuilt from the
 * file whenever it does not match the file's length (after a restart, or a
 * chunk appended by another process).
 */

import type { Hash } from "node:crypto";
import { randomUUID } from "node:crypto";
import {
  close as closeCb,
  createReadStream,
  createWriteStream,
  fdatasync,
  fstat as fstatCb,
  open as openCb,
  type WriteStream,
} from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { type Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
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
import type { BlobStore, ByteRange, UploadState } from "./blob-store.js";
import { FileBody } from "./file-body.js";
import { PerKeySerial } from "./per-key-serial.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const READ_CHUNK = 1 << 20;
const openFd = promisify(openCb);
const fstatFd = promisify(fstatCb);
const closeFd = promisify(closeCb);

export interface FsBlobStoreOptions {
  /** Flush each blob to disk before it becomes visible (default true). */
  fsync?: boolean;
}

interface HashState {
  hash: Hash;
  offset: number;
}

export class FsBlobStore implements BlobStore {
  readonly #root: string;
  readonly #fsync: boolean;
  readonly #hashes = new Map<string, HashState>();
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
    const hasher = new HashingCounter(newHash(algorithm));
    try {
      const file = createWriteStream(tmp, { flush: this.#fsync });
      if (this.#fsync) hasher.onBytes = backgroundSync(file, 0);
      await pipeToFile(source, hasher, file, signal);
      const digest = digestFromHash(hasher.hash, algorithm);
      if (expectedSize !== undefined && hasher.bytes !== expectedSize) {
        throw new SizeInvalidError(`received ${hasher.bytes} bytes, expected ${expectedSize}`);
      }
      if (expected !== undefined && digest !== expected) {
        throw new DigestMismatchError("content does not match digest", {
          detail: { expected, actual: digest },
        });
      }
      await this.#commitFile(tmp, digest);
      return { digest, size: hasher.bytes };
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async writeAll(bytes: Uint8Array, digest: Digest): Promise<void> {
    const actual = digestOf(bytes, algorithmOf(digest));
    if (actual !== digest) {
      throw new DigestMismatchError("content does not match digest", {
        detail: { expected: digest, actual },
      });
    }
    const path = this.#blobPath(digest);
    if ((await this.stat(digest)) === bytes.byteLength) return;
    const tmp = join(this.#root, "tmp", randomUUID());
    try {
      await writeFile(tmp, bytes, { flush: this.#fsync });
      await mkdir(dirname(path), { recursive: true });
      await rename(tmp, path);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async delete(digest: Digest): Promise<void> {
    await rm(this.#blobPath(digest), { force: true });
  }

  async startUpload(repo: string): Promise<UploadState> {
    const id = randomUUID();
    const dir = this.#uploadDir(id);
    const startedAt = new Date().toISOString();
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "data"), "");
    // meta.json last: its presence is what makes the session exist.
    await writeFile(join(dir, "meta.json.tmp"), JSON.stringify({ repo, startedAt }));
    await rename(join(dir, "meta.json.tmp"), join(dir, "meta.json"));
    return { id, repo, offset: 0, startedAt };
  }

  async uploadState(id: string): Promise<UploadState> {
    const dir = this.#uploadDir(id);
    let meta: { repo: string; startedAt: string };
    let size: number;
    try {
      meta = JSON.parse(await readFile(join(dir, "meta.json"), "utf8"));
      size = (await stat(join(dir, "data"))).size;
    } catch (err) {
      if (isMissing(err)) throw new UploadNotFoundError("blob upload unknown", { cause: err });
      throw err;
    }
    return { id, repo: meta.repo, offset: size, startedAt: meta.startedAt };
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
      const hasher = new HashingCounter(running.hash);
      this.#hashes.delete(id); // re-cached only if the chunk lands whole
      const file = createWriteStream(join(this.#uploadDir(id), "data"), { flags: "a" });
      if (this.#fsync) hasher.onBytes = backgroundSync(file, state.offset);
      await pipeToFile(source, hasher, file, signal);
      const offset = state.offset + hasher.bytes;
      if (length !== undefined && hasher.bytes !== length) {
        throw new SizeInvalidError(`chunk has ${hasher.bytes} bytes, Content-Length said ${length}`);
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
          : await hashFile(join(this.#uploadDir(id), "data"), algorithm);
      const actual = digestFromHash(hash, algorithm);
      this.#hashes.delete(id);
      if (actual !== digest) {
        await rm(this.#uploadDir(id), { recursive: true, force: true });
        throw new DigestMismatchError("content does not match digest", {
          detail: { expected: digest, actual },
        });
      }
      const data = join(this.#uploadDir(id), "data");
      if (this.#fsync) {
        const handle = await open(data, "r+");
        await handle.sync().finally(() => handle.close());
      }
      await this.#commitFile(data, digest);
      await rm(this.#uploadDir(id), { recursive: true, force: true });
      return { digest, size: state.offset };
    });
  }

  cancelUpload(id: string): Promise<void> {
    return this.#perUpload.run(id, async () => {
      await this.uploadState(id);
      this.#hashes.delete(id);
      await rm(this.#uploadDir(id), { recursive: true, force: true });
    });
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

  async #commitFile(from: string, digest: Digest): Promise<void> {
    const path = this.#blobPath(digest);
    await mkdir(dirname(path), { recursive: true });
    await rename(from, path);
  }
}

/** Passes bytes through unchanged, hashing and counting them. */
class HashingCounter extends Transform {
  bytes = 0;
  constructor(
    readonly hash: Hash,
    public onBytes?: (bytes: number) => void,
  ) {
    super({ highWaterMark: READ_CHUNK });
  }
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes?.(this.bytes);
    // Socket reads arrive in ~64 KiB pieces; hand the file 1 MiB writes instead
    // (a sixteenth of the write calls through the thread pool).
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    if (this.#pendingBytes >= READ_CHUNK) this.#release();
    done();
  }
  override _flush(done: TransformCallback): void {
    this.#release();
    done();
  }
  #release(): void {
    if (this.#pendingBytes === 0) return;
    const pending = this.#pending;
    this.push(pending.length === 1 ? pending[0] : Buffer.concat(pending, this.#pendingBytes));
    this.#pending = [];
    this.#pendingBytes = 0;
  }
}

/** Bytes written between background flushes of a file being streamed to disk. */
const SYNC_EVERY = 32 * 1024 * 1024;

/**
 * Flush a file to disk in the background while it is still being written
 * (fdatasync every SYNC_EVERY bytes, one at a time), so the flush that makes
 * a blob durable at commit has little left to do: the disk works while the
 * network does instead of after it. Errors are ignored here; the final,
 * awaited flush is the one that counts.
 */
function backgroundSync(ws: WriteStream, startOffset: number): (bytes: number) => void {
  let next = (Math.floor(startOffset / SYNC_EVERY) + 1) * SYNC_EVERY;
  let fd: number | undefined;
  let busy = false;
  ws.once("open", (opened: number) => {
    fd = opened;
  });
  ws.once("close", () => {
    fd = undefined;
  });
  return (bytes) => {
    const total = startOffset + bytes;
    if (busy || total < next || fd === undefined) return;
    next = total + SYNC_EVERY;
    busy = true;
    fdatasync(fd, () => {
      busy = false;
    });
  };
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

/**
 * Pipe a source through the hasher into a file. On failure, settle only once
 * the file is closed: pipeline() can reject while the file stream still has a
 * write in flight, whose bytes would then land after we return (behind the
 * next chunk of an upload, or in a tmp file already removed). An abort rejects
 * with the signal's reason, as the BlobStore contract says, not pipeline's
 * generic AbortError.
 */
async function pipeToFile(
  source: Readable,
  hasher: HashingCounter,
  file: WriteStream,
  signal: AbortSignal | undefined,
): Promise<void> {
  try {
    await pipeline(source, hasher, file, { signal });
  } catch (err) {
    if (!file.closed) {
      const closed = new Promise<void>((resolve) => file.once("close", () => resolve()));
      file.destroy();
      await closed;
    }
    throw signal?.aborted ? signal.reason : err;
  }
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === "ENOENT";
}
