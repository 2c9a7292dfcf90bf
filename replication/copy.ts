/**
 * Copying content by digest from peers into the local blob store.
 *
 * A blob copy is an upload session of the local store (so it is hashed as it
 * streams and committed only when its digest verifies). The session id is
 * recorded under `<stateDir>/partials/<algorithm>-<encoded>` so that a worker
 * killed mid-copy resumes from the bytes already on disk instead of from zero.
 * Copies of one digest share one flight per process, so a blob referenced by
 * many manifests or repositories crosses the link once.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import type { PeerClient } from "../control-plane/peer-client.js";
import type { BlobStore } from "../node/data/blob-store.js";
import { algorithmOf, type Digest, encodedOf } from "../protocol/digest.js";
import {
  BlobNotFoundError,
  MeridianError,
  PeerUnavailableError,
  UploadNotFoundError,
} from "../protocol/errors.js";
import { parseManifest } from "../protocol/manifest.js";
import { isIndexType } from "../protocol/media-types.js";

/** Upload sessions of copies belong to no repository a client can name. */
const COPY_REPO = "_replication";

export interface CopierOptions {
  store: BlobStore;
  stateDir: string;
  logger: Logger;
  /** Called with every byte count received (metrics). */
  onBytes?: (src: string, bytes: number) => void;
}

export class Copier {
  readonly #flights = new Map<string, Promise<void>>();
  constructor(private readonly options: CopierOptions) {}

  /**
   * Make `digest` present locally, fetching it from the first of `peers` that
   * has it. Resolves when the verified bytes are committed.
   */
  ensureBlob(digest: Digest, peers: PeerClient[], signal: AbortSignal): Promise<void> {
    let flight = this.#flights.get(digest);
    if (flight === undefined) {
      flight = this.#ensureBlob(digest, peers, signal).finally(() => this.#flights.delete(digest));
      this.#flights.set(digest, flight);
    }
    return flight;
  }

  /**
   * Make a manifest and its whole closure present locally: its bytes, its
   * blobs, and for an index every child manifest with its blobs. With
   * `children: false`, an index's children are left to the caller (a policy
   * may select only some platforms).
   */
  async ensureManifest(
    digest: Digest,
    peers: PeerClient[],
    signal: AbortSignal,
    options: { children?: boolean } = {},
  ): Promise<void> {
    // Manifest bytes live in the blob store under their digest, written before
    // their event: fetch them like a blob, not through the source peer's view
    // (which may not have applied the event yet).
    await this.ensureBlob(digest, peers, signal);
    const bytes = await this.options.store.readAll(digest);
    const parsed = parseManifest(bytes, undefined);
    for (const blob of parsed.blobs) await this.ensureBlob(blob, peers, signal);
    if (isIndexType(parsed.mediaType) && options.children !== false) {
      for (const child of parsed.manifests) await this.ensureManifest(child, peers, signal);
    }
  }

  async #ensureBlob(digest: Digest, peers: PeerClient[], signal: AbortSignal): Promise<void> {
    const { store } = this.options;
    if ((await store.stat(digest)) !== undefined) return;
    let last: unknown;
    for (const peer of peers) {
      try {
        const [present] = await peer.hasBlobs([digest]);
        if (!present) {
          last = new BlobNotFoundError(`blob ${digest} not at ${peer.region}`);
          continue;
        }
        await this.#copyFrom(peer, digest, signal);
        return;
      } catch (err) {
        if (signal.aborted) throw err;
        last = err;
        this.options.logger.warn({ err, digest, peer: peer.region }, "blob copy failed");
      }
    }
    throw last instanceof MeridianError
      ? last
      : new PeerUnavailableError(`no peer has blob ${digest}`, { cause: last });
  }

  async #copyFrom(peer: PeerClient, digest: Digest, signal: AbortSignal): Promise<void> {
    const { store } = this.options;
    const dir = join(this.options.stateDir, "partials");
    const marker = join(dir, `${algorithmOf(digest)}-${encodedOf(digest)}`);
    let id: string | undefined;
    let offset = 0;
    try {
      id = (await readFile(marker, "utf8")).trim();
      offset = (await store.uploadState(id)).offset;
    } catch (err) {
      if (!(err instanceof UploadNotFoundError) && (err as NodeJS.ErrnoException).code !== "ENOENT")
        throw err;
      id = undefined;
    }
    if (id === undefined) {
      id = (await store.startUpload(COPY_REPO)).id;
      await mkdir(dir, { recursive: true });
      await writeFile(marker, id);
    } else if (offset > 0) {
      this.options.logger.info({ digest, peer: peer.region, offset }, "blob copy resumed");
    }
    const source = peer.fetchBlob(digest, offset, signal, (n) => this.options.onBytes?.(peer.region, n));
    await store.appendUpload(id, source, offset, undefined, signal);
    try {
      await store.commitUpload(id, digest, signal);
    } finally {
      // Committed, or cancelled on a digest mismatch: either way the session is gone.
      await rm(marker, { force: true });
    }
  }
}
