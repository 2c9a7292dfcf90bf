/**
 * Fetch on miss (DESIGN.md "Routing and failover"): a manifest or blob that
 * this region does not hold yet (not replicated yet, or not selected by any
 * policy) is looked up in the nearest healthy region that holds it, through
 * the region's own control-plane peer (node/mesh-link.ts), instead of
 * answering 404.
 *
 * Two modes (node/config.ts `fetchOnMiss`):
 * - `redirect`: answer 307 to that region's registry URL (one of its nodes in
 *   turn when mesh.json lists several: control-plane/mesh-fetch.ts); the client fetches
 *   from there. Nothing passes through this region.
 * - `proxy`: relay the content. A blob is written into this region's
 *   content store as it arrives (verified against its digest), paced by the
 *   store alone, and streams to the first client at the same time while
 *   that client keeps up; concurrent requests for the same digest wait for
 *   that one fetch and are then served from the store, so one digest crosses
 *   the link once however many clients ask. No client's backpressure reaches
 *   the fetch: a first client that falls a buffer (CLIENT_BUFFER) behind is
 *   served the rest from the store once it is committed, so a client that
 *   stops reading slows only itself, and memory per client stays bounded.
 *
 * What is kept: fetched blob bytes always stay in the region's
 * content-addressed store, where they are invisible (nothing links them into
 * a repository) and cost nothing to serve again. When a policy selects the
 * repository for this region, its replication worker links them as it
 * replicates the repository and finds the bytes already there (no second
 * copy over the link); when none does, they stay an unlinked cache. A
 * manifest fetched on miss is relayed (after checking its digest) and not
 * stored: it is small, and storing it would make a half-replicated
 * repository look whole.
 *
 * Absence stays absence: when no reachable region holds the content, or the
 * peer cannot be asked, the caller answers its original 404.
 *
 * HEAD answers from another region's metadata too (containerd, and so
 * kubelet, resolves a tag with HEAD before its GET): a manifest's HEAD
 * fetches its few bytes (Locate returns them, verified) and answers their
 * length, digest and media type; a blob's HEAD asks where the repository
 * holds it and answers its size, copying no bytes. Neither redirects (a HEAD
 * is answered here in every mode but `off`).
 *
 * A HEAD is also how a pushing client asks whether to upload a blob (or a
 * child manifest of an index): having heard "present" for content held only
 * elsewhere, it skips the upload and pushes a manifest this region would
 * refuse for referring to content it lacks. So a manifest push that refers
 * to content this region lacks first adopts it from the region holding it in
 * the same repository (`adopt`: the blob's bytes are fetched into the store
 * and linked, a child manifest is fetched and pushed here), and only what no
 * region holds there is refused. Adopting needs the repository to hold the
 * content somewhere, so knowing a digest links nothing from elsewhere.
 */
import { PassThrough, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Logger } from "pino";
import { Counter, type Registry as MetricsRegistry } from "prom-client";
import { algorithmOf, type Digest, digestOf } from "../protocol/digest.js";
import { BlobNotFoundError, DigestMismatchError, ManifestNotFoundError } from "../protocol/errors.js";
import type { FetchOnMiss as Mode } from "./config.js";
import type { BlobStore, ByteRange } from "./data/blob-store.js";
import type { MeshLink } from "./mesh-link.js";

export interface RemoteManifest {
  region: string;
  registry: string;
  digest: Digest;
  mediaType: string;
  bytes: Buffer;
}

export type MissAnswer<T> = { redirect: string; region: string } | { found: T } | undefined;

export interface RemoteBlob {
  region: string;
  size: number;
  stream: Readable;
  /** The range served, when one was asked for and the blob came from the store. */
  range?: ByteRange;
}

export class FetchOnMiss {
  readonly mode: Mode;
  readonly #link: MeshLink;
  readonly #store: BlobStore;
  readonly #logger: Logger;
  readonly #manifests = new Map<string, Promise<RemoteManifest | undefined>>();
  readonly #blobs = new Map<Digest, Promise<void>>();
  readonly #requests: Counter<"kind" | "result">;
  readonly #bytes: Counter;

  constructor(options: {
    mode: Mode;
    link: MeshLink;
    store: BlobStore;
    logger: Logger;
    metrics: MetricsRegistry;
  }) {
    this.mode = options.mode;
    this.#link = options.link;
    this.#store = options.store;
    this.#logger = options.logger;
    this.#requests = new Counter({
      name: "meridian_node_fetch_on_miss_requests_total",
      help: "Requests for content this region lacked, by kind (manifest, blob) and result: proxied (fetched from another region), shared (served from another request's fetch), redirected, head (a HEAD answered from another region's metadata), adopted (fetched for a manifest push that refers to it), or absent (no region holds it)",
      labelNames: ["kind", "result"] as const,
      registers: [options.metrics],
    });
    this.#bytes = new Counter({
      name: "meridian_node_fetch_on_miss_bytes_total",
      help: "Blob bytes fetched from other regions on a miss",
      registers: [options.metrics],
    });
  }

  /** A manifest by tag or digest from another region, or where to find it. */
  async manifest(repo: string, reference: string): Promise<MissAnswer<RemoteManifest>> {
    if (this.mode === "off") return undefined;
    const found = await this.#sharedManifest(repo, reference);
    if (found === undefined) {
      this.#requests.inc({ kind: "manifest", result: "absent" });
      return undefined;
    }
    if (this.mode === "redirect") {
      this.#requests.inc({ kind: "manifest", result: "redirected" });
      return { redirect: `${found.registry}/v2/${repo}/manifests/${reference}`, region: found.region };
    }
    this.#requests.inc({ kind: "manifest", result: "proxied" });
    return { found };
  }

  /** One lookup per manifest at a time, shared by every request asking for it meanwhile. */
  #sharedManifest(repo: string, reference: string): Promise<RemoteManifest | undefined> {
    const key = `${repo}@${reference}`;
    let pending = this.#manifests.get(key);
    if (pending === undefined) {
      pending = this.#locateManifest(repo, reference).finally(() => this.#manifests.delete(key));
      this.#manifests.set(key, pending);
    }
    return pending;
  }

  async #locateManifest(repo: string, reference: string): Promise<RemoteManifest | undefined> {
    const located = await this.#locate(repo, reference, true);
    if (located === undefined) return undefined;
    const digest = located.digest as Digest;
    const actual = digestOf(located.content, algorithmOf(digest));
    if (actual !== digest || (reference.includes(":") && reference !== digest)) {
      // A region answering with bytes that are not what it claims is never relayed.
      this.#logger.error(
        { repo, reference, region: located.region, digest, actual },
        "fetched manifest does not match its digest",
      );
      return undefined;
    }
    return {
      region: located.region,
      registry: located.registry,
      digest,
      mediaType: located.mediaType,
      bytes: located.content,
    };
  }

  /** A manifest's metadata from another region, for a HEAD (never a redirect). */
  async manifestHead(repo: string, reference: string): Promise<RemoteManifest | undefined> {
    if (this.mode === "off") return undefined;
    const found = await this.#sharedManifest(repo, reference);
    this.#requests.inc({ kind: "manifest", result: found === undefined ? "absent" : "head" });
    return found;
  }

  /** Where `repo` holds blob `digest` in another region and its size, for a HEAD; no bytes are copied. */
  async blobHead(repo: string, digest: Digest): Promise<{ region: string; size: number } | undefined> {
    if (this.mode === "off") return undefined;
    const located = await this.#locate(repo, digest, false);
    this.#requests.inc({ kind: "blob", result: located === undefined ? "absent" : "head" });
    return located === undefined ? undefined : { region: located.region, size: located.size };
  }

  /**
   * Bring blob `digest` of `repo` into this region's store from the region
   * holding it in `repo` (in every mode but `off`, redirect included: a
   * manifest push needs the bytes here). True once the store has them; false
   * when no region holds it in `repo` or the fetch failed (logged).
   */
  async adoptBlob(repo: string, digest: Digest, signal?: AbortSignal): Promise<boolean> {
    if (this.mode === "off") return false;
    const located = await this.#locate(repo, digest, false);
    if (located === undefined) return false;
    if (
      !this.#blobs.has(digest) &&
      (await this.#store.stat(digest)) === undefined &&
      !this.#blobs.has(digest)
    ) {
      this.#requests.inc({ kind: "blob", result: "adopted" });
      this.#start(repo, digest, located.size, false, signal);
    }
    await this.#blobs.get(digest);
    return (await this.#store.stat(digest)) !== undefined;
  }

  /**
   * A blob from another region (for a GET), or where to find it.
   * `range` is decided once the size is known, as for a local blob. Where the
   * repository holds the blob is asked every time, even when this region's
   * store has the bytes (they may belong to another repository here).
   */
  async blob(
    repo: string,
    digest: Digest,
    range: (size: number) => ByteRange | undefined,
    signal?: AbortSignal,
  ): Promise<MissAnswer<RemoteBlob>> {
    if (this.mode === "off") return undefined;
    const located = await this.#locate(repo, digest, false);
    if (located === undefined) {
      this.#requests.inc({ kind: "blob", result: "absent" });
      return undefined;
    }
    const region = located.region;
    if (this.mode === "redirect") {
      this.#requests.inc({ kind: "blob", result: "redirected" });
      return { redirect: `${located.registry}/v2/${repo}/blobs/${digest}`, region };
    }
    // has() again after the stat: another request may have started the fetch meanwhile.
    if (
      !this.#blobs.has(digest) &&
      (await this.#store.stat(digest)) === undefined &&
      !this.#blobs.has(digest)
    ) {
      this.#requests.inc({ kind: "blob", result: "proxied" });
      const whole = range(located.size) === undefined;
      const stream = this.#start(repo, digest, located.size, whole, signal);
      if (stream !== undefined) return { found: { region, size: located.size, stream } };
    } else {
      this.#requests.inc({ kind: "blob", result: "shared" });
    }
    await this.#blobs.get(digest);
    const size = await this.#store.stat(digest);
    if (size === undefined) return undefined; // the fetch failed (logged)
    const wanted = range(size);
    return { found: { region, size, range: wanted, stream: await this.#store.read(digest, wanted, signal) } };
  }

  /**
   * Start the one fetch of `digest` into the store, paced by the store alone:
   * no client's backpressure ever reaches it, so a client that stops reading
   * delays nobody else (every other request waits for the store's copy, not
   * for that client). With `withClient`, the returned stream is the first
   * client's: it gets the bytes live while it keeps up, with at most
   * CLIENT_BUFFER bytes queued for it; once it falls that far behind it is
   * cut off the live feed and, when the store's copy is committed, continues
   * from the store at the byte it reached (so memory per client stays
   * bounded and never holds a whole blob). A client that goes away releases
   * its buffer and any store read at once; one that stalls holds only its
   * buffer (about 2 × CLIENT_BUFFER), until it reads again or goes away, or
   * the HTTP server's socket timeouts close it.
   */
  #start(
    repo: string,
    digest: Digest,
    size: number,
    withClient: boolean,
    signal?: AbortSignal,
  ): Readable | undefined {
    const source = this.#link.fetchFromMesh(repo, digest);
    const toStore = new PassThrough({ highWaterMark: 4 << 20 });
    // Errors reach the store's write through its pipe; one raised before it is attached must not go unhandled.
    toStore.on("error", () => undefined);
    const client = withClient ? new ClientFeed(size, signal) : undefined;
    source.on("data", (chunk: Buffer) => {
      this.#bytes.inc(chunk.byteLength);
      client?.live(chunk);
      if (!toStore.write(chunk)) source.pause();
    });
    toStore.on("drain", () => source.resume());
    source.once("end", () => {
      toStore.end();
      client?.liveEnded();
    });
    source.once("error", (err) => toStore.destroy(err));
    const done = this.#store
      .write(toStore, digest, size)
      .then(() => undefined)
      .catch((err) => {
        source.destroy();
        if (err instanceof DigestMismatchError)
          this.#logger.error({ repo, digest }, "fetched blob does not match its digest");
        else this.#logger.warn({ err, repo, digest }, "fetch on miss failed");
        client?.fail(err);
        throw err;
      })
      .finally(() => this.#blobs.delete(digest));
    const shared = done.catch(() => undefined);
    this.#blobs.set(digest, shared);
    if (client === undefined) return undefined;
    // A client cut off the live feed continues from the store once the copy is committed.
    void shared.then(() => client.fromStore((range) => this.#store.read(digest, range)));
    return client.stream;
  }

  async #locate(repo: string, reference: string, manifest: boolean) {
    try {
      return await this.#link.locate(repo, reference, manifest);
    } catch (err) {
      if (!(err instanceof ManifestNotFoundError || err instanceof BlobNotFoundError))
        this.#logger.warn({ err, repo, reference }, "fetch on miss: the peer could not be asked");
      return undefined;
    }
  }
}

/**
 * Bytes at most queued for the first client of a fetch (in its stream's
 * buffers: about twice this with both sides of the PassThrough) before it is
 * cut off the live feed and left to continue from the store.
 */
export const CLIENT_BUFFER = 8 << 20;

/**
 * The first client's stream of a fetch: the live bytes while it keeps up,
 * then (if it fell behind) the rest from the store. Never pushes back on the
 * fetch.
 */
class ClientFeed {
  readonly stream = new PassThrough({ highWaterMark: CLIENT_BUFFER });
  /** Bytes handed to the stream so far (where a continuation from the store starts). */
  #sent = 0;
  #following = true;
  #gone = false;

  constructor(
    private readonly size: number,
    signal?: AbortSignal,
  ) {
    // An error on a stream nobody reads must not go unhandled.
    this.stream.on("error", () => undefined);
    this.stream.once("close", () => {
      this.#gone = true;
    });
    signal?.addEventListener("abort", () => this.stream.destroy(), { once: true });
  }

  /** A chunk as it arrives: queued for the client, unless it is gone or too far behind. */
  live(chunk: Buffer): void {
    if (this.#gone || !this.#following) return;
    if (this.stream.writableNeedDrain) {
      this.#following = false; // behind by a whole buffer: the rest comes from the store
      return;
    }
    this.stream.write(chunk);
    this.#sent += chunk.byteLength;
  }

  /** The fetch's bytes all arrived: a client that kept up has them all. */
  liveEnded(): void {
    if (this.#following && !this.#gone) this.stream.end();
  }

  /** The store's copy failed: the client's response fails too. */
  fail(err: unknown): void {
    this.#following = false;
    this.stream.destroy(err instanceof Error ? err : new Error(String(err)));
  }

  /** The store's copy is committed: a client cut off the live feed gets the rest from there. */
  async fromStore(read: (range: { start: number; end: number }) => Promise<Readable>): Promise<void> {
    if (this.#following || this.#gone || this.stream.destroyed) return;
    if (this.#sent >= this.size) {
      this.stream.end();
      return;
    }
    try {
      const rest = await read({ start: this.#sent, end: this.size - 1 });
      await pipeline(rest, this.stream);
    } catch (err) {
      this.stream.destroy(err instanceof Error ? err : new Error(String(err)));
    }
  }
}
