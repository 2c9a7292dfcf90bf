/**
 * FileBody: a byte range of an open file (the fs store's blob reads) as a
 * Readable, that can also copy itself into a Writable through reused buffers
 * (`writeTo`, the blob GET path: node/http/oci/blobs.ts).
 *
 * Why not a plain fs.ReadStream piped to the response: every chunk it reads
 * is a fresh 1 MiB Buffer, memory outside V8's heap that V8 still counts;
 * each ~64 MiB of them starts a full mark-compact of the heap. A 256 MiB pull
 * cost the node half its CPU in garbage collection (perf: ConcurrentMarking,
 * Sweeper, IncrementalMarking ≈ 50 % of its samples). `writeTo` takes its
 * buffers from a small process-wide pool and gives each back once the
 * destination's write callback says the bytes have left it, so a pull of any
 * size allocates nothing per chunk. Node offers no sendfile(2) to a socket
 * (fs.copyFile's copy_file_range/sendfile needs a file destination), so one
 * read into userland and one write out is the floor here.
 *
 * Contract:
 * - the bytes are `[start, end)` of the file, or to its end when `end` is
 *   undefined; the fd is closed once, when the body is destroyed (after any
 *   read in flight returns), whether it was streamed, copied or abandoned;
 * - `writeTo` rejects when the destination closes before the last byte was
 *   accepted (a client that went away, or was cut by the idle timeout), when
 *   a read fails, or when the body is destroyed (its `signal` aborted); it
 *   never ends the destination on failure: the caller destroys it;
 * - a buffer goes back to the pool only after its write completed; one whose
 *   write never completed is left to the garbage collector.
 */
import { close, read } from "node:fs";
import { addAbortSignal, Readable, type Writable } from "node:stream";

/** Bytes per read and per write. */
export const FILE_CHUNK = 1 << 20;
/** Free buffers kept between requests (2 per concurrent copy are in use). */
const POOL_MAX = 16;
const pool: Buffer[] = [];

function take(): Buffer {
  return pool.pop() ?? Buffer.allocUnsafeSlow(FILE_CHUNK);
}

function give(buf: Buffer): void {
  if (pool.length < POOL_MAX) pool.push(buf);
}

export class FileBody extends Readable {
  readonly #fd: number;
  #pos: number;
  readonly #end: number;
  #reading: Promise<unknown> | undefined;
  #closed = false;
  #bytesRead = 0;

  constructor(fd: number, start = 0, end?: number, signal?: AbortSignal) {
    super({ highWaterMark: FILE_CHUNK });
    this.#fd = fd;
    this.#pos = start;
    this.#end = end ?? Number.POSITIVE_INFINITY;
    // Not Readable's `signal` option: an already aborted signal destroyed the stream inside the
    // base constructor, before this class's fields existed, and _destroy threw (a peer serving a
    // caller that had already gone died of it, issue 14). Here the fields are set first. An
    // abort fails the body with an AbortError; when the signal is already aborted nobody can be
    // listening yet, so that 'error' event is not left to kill the process: the failure stays on
    // the stream (errored), and reads, iteration and writeTo still reject with it.
    if (signal !== undefined) {
      if (signal.aborted) this.on("error", () => undefined);
      addAbortSignal(signal, this);
    }
  }

  /** Bytes read from the file so far, as fs.ReadStream's (the peer's backpressure test watches it). */
  get bytesRead(): number {
    return this.#bytesRead;
  }

  /** Up to `length` bytes at the current position into `buf`; 0 at the end of the file. */
  #readInto(buf: Buffer, length: number): Promise<number> {
    if (this.destroyed) return Promise.reject(this.errored ?? new Error("blob body destroyed"));
    const p = new Promise<number>((resolve, reject) => {
      read(this.#fd, buf, 0, length, this.#pos, (err, n) => {
        this.#reading = undefined;
        if (err) return reject(err);
        this.#pos += n;
        this.#bytesRead += n;
        resolve(n);
      });
    });
    this.#reading = p.catch(() => {});
    return p;
  }

  #want(): number {
    return Math.min(FILE_CHUNK, this.#end - this.#pos);
  }

  override _read(): void {
    const want = this.#want();
    if (want <= 0) {
      this.push(null);
      return;
    }
    // A consumer may keep what it is given: a fresh buffer each time on this path.
    const buf = Buffer.allocUnsafeSlow(want);
    this.#readInto(buf, want).then(
      (n) => this.push(n === 0 ? null : n < want ? buf.subarray(0, n) : buf),
      (err) => this.destroy(err),
    );
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    const closeFd = () => {
      if (this.#closed) return callback(err);
      this.#closed = true;
      close(this.#fd, (closeErr) => callback(err ?? closeErr));
    };
    if (this.#reading === undefined) closeFd();
    else this.#reading.then(closeFd);
  }

  /**
   * Copy the rest of the body into `out` and end it, one read ahead of the
   * write in flight (two pooled buffers), then release the file. `first` runs
   * once the first bytes are read, before anything is written (the caller
   * sends its headers there, so a failed first read is still an ordinary
   * error answer).
   */
  async writeTo(out: Writable, first?: () => void): Promise<void> {
    let gone: () => void = () => {};
    const closed = new Promise<never>((_, reject) => {
      gone = () => reject(new Error("the destination closed before the body was sent"));
    });
    closed.catch(() => {});
    out.once("close", gone);
    let inFlight: Promise<void> | undefined;
    try {
      for (let started = false; ; started = true) {
        const want = this.#want();
        const buf = want > 0 ? take() : undefined;
        const n = buf === undefined ? 0 : await this.#readInto(buf, want);
        if (!started) first?.();
        if (inFlight !== undefined) await Promise.race([inFlight, closed]);
        // Short read: the end of the file (a range always ends inside it).
        const last = n === 0 || n < want || this.#want() <= 0;
        if (n === 0 || buf === undefined) {
          if (buf !== undefined) give(buf);
          inFlight = new Promise<void>((resolve, reject) => {
            out.end((err?: Error | null) => (err ? reject(err) : resolve()));
          });
          inFlight.catch(() => {});
          break;
        }
        const chunk = n < buf.length ? buf.subarray(0, n) : buf;
        inFlight = new Promise<void>((resolve, reject) => {
          const done = (err?: Error | null) => {
            if (err) return reject(err);
            give(buf);
            resolve();
          };
          if (last) out.end(chunk, done);
          else out.write(chunk, done);
        });
        // Its failure is awaited (or superseded by `closed`) later: never an unhandled rejection.
        inFlight.catch(() => {});
        if (last) break;
      }
      if (inFlight !== undefined) await Promise.race([inFlight, closed]);
    } finally {
      out.removeListener("close", gone);
      // The fd is closed before this returns (after a read in flight, if any).
      const released = this.closed ? undefined : new Promise((resolve) => this.once("close", resolve));
      this.destroy();
      await released;
    }
  }
}
