/**
 * Upload sessions of the OCI API (chunked and monolithic pushes): opened
 * under the caps of ./upload-sessions.ts, appended to as the bytes stream,
 * completed into a blob linked into the repository through the commit step,
 * purged when idle (node/server.ts). `Registry.uploads`.
 */
import { randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import type { Digest } from "../../protocol/digest.js";
import { DigestMismatchError, UploadNotFoundError } from "../../protocol/errors.js";
import type { BlobStore, UploadState } from "./blob-store.js";
import type { UploadSessions } from "./upload-sessions.js";

export class Uploads {
  readonly #store: BlobStore;
  readonly #limits: UploadSessions | undefined;
  /** Link a stored blob into a repository (Registry's `#link`): the sequence of the link. */
  readonly #link: (repo: string, digest: Digest, size: number, actor: string) => Promise<number>;
  /**
   * The project quota's early check (./quota-gate.ts `check`), with the size
   * known before the blob is stored: a refused upload is not moved into the
   * store. `#link` checks again with the stored size (and reserves).
   */
  readonly #quotaCheck: (repo: string, digest: Digest, size: number) => Promise<void>;

  constructor(
    store: BlobStore,
    limits: UploadSessions | undefined,
    link: (repo: string, digest: Digest, size: number, actor: string) => Promise<number>,
    quotaCheck: (repo: string, digest: Digest, size: number) => Promise<void> = async () => undefined,
  ) {
    this.#store = store;
    this.#limits = limits;
    this.#link = link;
    this.#quotaCheck = quotaCheck;
  }

  /**
   * Open an upload session for `repo` on behalf of `owner` (who is counted
   * against the caps: an identity, or an address for anonymous clients);
   * UploadLimitError when a cap is reached.
   */
  async start(repo: string, owner = "anonymous"): Promise<UploadState> {
    const sessions = this.#limits;
    if (sessions === undefined) return this.#store.startUpload(repo);
    sessions.check(repo, owner);
    // Reserved before the store's await, so a burst of concurrent starts cannot overshoot a cap.
    const slot = `pending:${randomUUID()}`;
    sessions.add(slot, repo, owner);
    try {
      const state = await this.#store.startUpload(repo);
      sessions.add(state.id, repo, owner);
      return state;
    } finally {
      sessions.remove(slot);
    }
  }

  /**
   * Remove upload sessions that received nothing since `idleBefore` or began
   * before `startedBefore` (and crash leftovers), and stop counting sessions
   * that are gone from the store.
   */
  async purge(idleBefore: Date, startedBefore: Date): Promise<{ uploads: number; leftovers: number }> {
    const purged = await this.#store.purgeStale(startedBefore, { idleBefore });
    await this.#limits?.reconcile((id) =>
      this.#store.uploadState(id).then(
        () => true,
        (err) => !(err instanceof UploadNotFoundError),
      ),
    );
    return purged;
  }

  /** An upload session of `repo`; UploadNotFoundError for an unknown id or another repository's. */
  async state(repo: string, id: string): Promise<UploadState> {
    const state = await this.#store.uploadState(id);
    if (state.repo !== repo) throw new UploadNotFoundError("blob upload unknown");
    return state;
  }

  async append(
    repo: string,
    id: string,
    source: Readable,
    start: number | undefined,
    length: number | undefined,
    signal?: AbortSignal,
  ): Promise<UploadState> {
    await this.state(repo, id);
    return this.#store.appendUpload(id, source, start, length, signal);
  }

  /** Finish an upload: verify against `digest`, make it a blob, link it into `repo`. */
  async complete(repo: string, id: string, digest: Digest, actor: string): Promise<number> {
    const state = await this.state(repo, id);
    await this.#quotaCheck(repo, digest, state.offset);
    let size: number;
    try {
      ({ size } = await this.#store.commitUpload(id, digest));
    } catch (err) {
      // A digest mismatch discards the session's bytes: the session is over.
      if (err instanceof DigestMismatchError) this.#limits?.remove(id);
      throw err;
    }
    this.#limits?.remove(id);
    return this.#link(repo, digest, size, actor);
  }

  /**
   * Finish an upload whose last request carries bytes (`PUT ?digest=` with a
   * body). A session that has no bytes yet (the two-request monolithic form:
   * empty POST, then PUT with the whole blob, as docker and skopeo push) is
   * written like `POST ?digest=`: the store verifies the digest while the
   * bytes stream and makes the blob visible only once they are complete, then
   * the session is dropped. On S3 that is one multipart upload to the
   * digest's key instead of parts under the session, a completion and a
   * server-side copy of the whole blob (s3-blob-store.ts). Otherwise: append,
   * then complete. A digest mismatch ends the session either way.
   */
  async finish(
    repo: string,
    id: string,
    source: Readable,
    start: number | undefined,
    length: number | undefined,
    digest: Digest,
    actor: string,
    signal?: AbortSignal,
  ): Promise<number> {
    const state = await this.state(repo, id);
    // Refused before a byte of the last request is read when its declared length takes the project over.
    if (length !== undefined) await this.#quotaCheck(repo, digest, state.offset + length);
    if (state.offset !== 0 || (start !== undefined && start !== 0)) {
      await this.append(repo, id, source, start, length, signal);
      return this.complete(repo, id, digest, actor);
    }
    let size: number;
    try {
      ({ size } = await this.#store.write(source, digest, length, signal));
    } catch (err) {
      if (err instanceof DigestMismatchError) await this.#end(id);
      throw err;
    }
    await this.#end(id);
    return this.#link(repo, digest, size, actor);
  }

  /** Drop a finished session (gone already is fine: purged, or cancelled meanwhile). */
  async #end(id: string): Promise<void> {
    this.#limits?.remove(id);
    await this.#store.cancelUpload(id).catch((err) => {
      if (!(err instanceof UploadNotFoundError)) throw err;
    });
  }

  async cancel(repo: string, id: string): Promise<void> {
    await this.state(repo, id);
    await this.#store.cancelUpload(id);
    this.#limits?.remove(id);
  }
}
