/**
 * The filesystem store's write loop (./fs-blob-store.ts): a push's bytes
 * from the socket to a file, hashed on the way, with one writev(2) per MiB
 * and background flushes; the read side is ./file-body.ts.
 */
import type { Hash } from "node:crypto";
import {
  close as closeCb,
  fdatasync as fdatasyncCb,
  fsync as fsyncCb,
  open as openCb,
  writev,
} from "node:fs";
import type { Readable } from "node:stream";
import { promisify } from "node:util";

const openFd = promisify(openCb);
const closeFd = promisify(closeCb);
const fsyncFd = promisify(fsyncCb);
const fdatasyncFd = promisify(fdatasyncCb);

/** Bytes gathered before one writev(2) to the file (socket reads arrive in ~64 KiB pieces). */
const WRITE_BYTES = 1 << 20;
/** At most this many pieces in one writev (IOV_MAX is 1024; libuv splits larger ones anyway). */
const WRITE_PIECES = 512;
/** Bytes written between background flushes of a file being streamed to disk. */
const SYNC_EVERY = 32 * 1024 * 1024;

/**
 * Stream `source` into the file at `path` (opened with `flags`: "w" for a
 * new file, "a" to append at `startOffset`), hashing every byte into `hash`;
 * the number of bytes. The received pieces are written as they are, 1 MiB
 * at a time with one writev(2) (no gathering copy, no stream machinery
 * between the socket and the file: this loop is the push's hot path), one
 * write in flight while the next MiB arrives.
 *
 * `sync`: "flush" flushes the file before it is closed (a blob about to be
 * renamed into place); "background" only flushes every SYNC_EVERY bytes
 * while it streams, so the flush that makes the bytes durable later (at
 * commit) has little left to do: the disk works while the network does.
 * Either way a flush runs every SYNC_EVERY bytes in the background.
 *
 * On failure it settles only once the file is closed and no write or flush
 * is in flight (their bytes would otherwise land after we return, behind the
 * next chunk of an upload or in a tmp file already removed). An abort
 * rejects with the signal's reason, as the BlobStore contract says.
 */
export async function streamToFile(
  source: Readable,
  path: string,
  flags: "w" | "a",
  hash: Hash,
  startOffset: number,
  sync: "flush" | "background" | "none",
  signal: AbortSignal | undefined,
): Promise<number> {
  const onAbort = () => source.destroy(signal?.reason);
  let fd: number | undefined;
  let bytes = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let writing: Promise<void> | undefined;
  let syncing: Promise<void> | undefined;
  let nextSync = (Math.floor(startOffset / SYNC_EVERY) + 1) * SYNC_EVERY;
  const settle = async () => {
    await writing?.catch(() => undefined);
    await syncing;
  };
  const flush = async (opened: number) => {
    // One writev at a time, in order; a failed one is reported here.
    if (writing !== undefined) await writing;
    writing = undefined;
    if (pendingBytes === 0) return;
    const pieces = pending;
    pending = [];
    pendingBytes = 0;
    writing = writeAll(opened, pieces);
    writing.catch(() => undefined); // awaited by the next flush or by settle
    const total = startOffset + bytes;
    if (sync !== "none" && syncing === undefined && total >= nextSync) {
      nextSync = total + SYNC_EVERY;
      // After the write it follows; errors are ignored: the awaited flush is the one that counts.
      syncing = writing
        .then(() => fdatasyncFd(opened))
        .catch(() => undefined)
        .then(() => {
          syncing = undefined;
        });
    }
  };
  try {
    signal?.throwIfAborted();
    signal?.addEventListener("abort", onAbort, { once: true });
    fd = await openFd(path, flags, 0o666);
    for await (const piece of source as AsyncIterable<Buffer | Uint8Array | string>) {
      // A socket gives Buffers; an object-mode source (Readable.from) may give strings or views.
      const chunk = Buffer.isBuffer(piece) ? piece : Buffer.from(piece as Uint8Array);
      hash.update(chunk);
      bytes += chunk.length;
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= WRITE_BYTES || pending.length >= WRITE_PIECES) await flush(fd);
    }
    await flush(fd);
    await writing;
    await syncing;
    if (sync === "flush") await fsyncFd(fd);
    const opened = fd;
    fd = undefined;
    await closeFd(opened);
    return bytes;
  } catch (err) {
    await settle();
    if (fd !== undefined) await closeFd(fd).catch(() => undefined);
    throw signal?.aborted ? signal.reason : err;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** writev(2) all of `pieces` at the file's current position (a short write writes the rest). */
function writeAll(fd: number, pieces: Buffer[]): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    writev(fd, pieces, (err, written) => {
      if (err) return reject(err);
      const total = pieces.reduce((n, p) => n + p.length, 0);
      if (written === total) return resolve();
      writeAll(fd, [Buffer.concat(pieces, total).subarray(written)]).then(resolve, reject);
    });
  });
}
