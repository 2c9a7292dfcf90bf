/**
 * Upload sessions of the S3 blob store, as S3 objects (never local disk), so
 * any node process on the same bucket can continue, commit or purge any
 * session, including one whose node crashed:
 *
 *   uploads/<id>/state.json   {repo, startedAt, activeAt, offset, multipart, parts, tail}
 *   uploads/<id>/data         the multipart upload's key (created at the first full part)
 *   uploads/<id>/tail-<uuid>  the bytes after the last part (< partSize), if any
 *
 * state.json is the session: it exists from start to commit/cancel, and each
 * append ends with one PutObject of it, the append's commit point. Chunks map
 * onto parts: an append reads the tail (under one part size), adds the
 * chunk's bytes and uploads a part each time partSize bytes are buffered
 * (up to PARTS_IN_FLIGHT at once, while the next fills), so memory stays
 * under four parts per append whatever the client's PATCH sizes (docker's are often a few KiB, S3's parts at least 5 MiB).
 * When the chunk's length is known (Content-Length) and a whole part is
 * coming, that part is not buffered: its UploadPart starts at once and the
 * bytes go through as they arrive (receiving and sending overlap: the 32
 * PATCHes of a 256 MiB push took 8.3 s buffered, 2.3 s streamed, by hand on
 * the shared 2-core machine). A chunk that ends short of its length aborts
 * that part's request.
 * What is left becomes the new tail. An append that fails or is aborted
 * before its state.json write leaves the session as it was: parts it
 * uploaded are not listed, and the next append uploads the same part
 * numbers again (S3 keeps the latest upload of each number). At commit the
 * tail goes up as the last part (any size is allowed there), the multipart
 * upload completes to uploads/<id>/data, and that object is verified and
 * copied to the digest key (s3-blob-store.ts says why that is atomic).
 *
 * The running hash (sha256) is kept in memory by the process that received
 * the bytes, from the session's first byte on (sha256 state cannot be
 * serialized); a session continued elsewhere, or committed with another
 * algorithm, is re-hashed from the staged object at commit, as FsBlobStore
 * re-hashes its file.
 *
 * Abandoned sessions: `purge` deletes sessions started before the cutoff (or
 * idle since `idleBefore`), aborting their multipart uploads. A node that
 * crashes between creating a multipart upload and recording it in
 * state.json leaves one that only the bucket knows about: deployments should
 * also set a lifecycle rule AbortIncompleteMultipartUpload (e.g. after 7
 * days) on the bucket, which S3, MinIO, RGW and R2 all support, and which
 * catches anything the store misses. Two processes appending to one session
 * at the same moment are not serialized across processes (registry clients
 * send one chunk at a time; within a process appends are queued).
 */

import type { Hash } from "node:crypto";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { addAbortSignal, PassThrough, type Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  ListObjectsV2Command,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { algorithmOf, type Digest, digestFromHash, newHash } from "../../protocol/digest.js";
import {
  DigestMismatchError,
  SizeInvalidError,
  UploadNotFoundError,
  UploadRangeError,
} from "../../protocol/errors.js";
import type { UploadState } from "./blob-store.js";
import { PerKeySerial } from "./per-key-serial.js";
import type { S3BlobStore } from "./s3-blob-store.js";
import { isNoSuchUpload } from "./s3-client.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Parts of one append uploading at once (each holds its bytes until S3 has them). */
const PARTS_IN_FLIGHT = 3;

interface Part {
  n: number;
  etag: string;
  size: number;
}

interface SessionState {
  repo: string;
  startedAt: string;
  /** Last append (or the start): what `idleBefore` is compared with. */
  activeAt: string;
  offset: number;
  /** UploadId of the multipart upload to uploads/<id>/data, once the first part went up. */
  multipart?: string;
  parts: Part[];
  tail?: { key: string; size: number };
}

export class S3Uploads {
  readonly #store: S3BlobStore;
  readonly #partSize: number;
  readonly #hashes = new Map<string, { hash: Hash; offset: number }>();
  /** Each upload's appends and commit, one at a time in this process. */
  readonly #perUpload = new PerKeySerial();

  constructor(store: S3BlobStore, partSize: number) {
    this.#store = store;
    this.#partSize = partSize;
  }

  #dir(id: string): string {
    if (!UUID.test(id)) throw new UploadNotFoundError("blob upload unknown");
    return this.#store.keys.upload(id);
  }

  async #load(id: string, signal?: AbortSignal): Promise<SessionState> {
    const bytes = await this.#store.getBytes(`${this.#dir(id)}state.json`, signal);
    if (bytes === undefined) throw new UploadNotFoundError("blob upload unknown");
    return JSON.parse(bytes.toString("utf8")) as SessionState;
  }

  async #save(id: string, state: SessionState, signal?: AbortSignal): Promise<void> {
    await this.#store.putBytes(`${this.#dir(id)}state.json`, Buffer.from(JSON.stringify(state)), signal);
  }

  async start(repo: string, signal?: AbortSignal): Promise<UploadState> {
    const id = randomUUID();
    const startedAt = new Date().toISOString();
    await this.#save(id, { repo, startedAt, activeAt: startedAt, offset: 0, parts: [] }, signal);
    return { id, repo, offset: 0, startedAt };
  }

  async state(id: string, signal?: AbortSignal): Promise<UploadState> {
    const s = await this.#load(id, signal);
    return { id, repo: s.repo, offset: s.offset, startedAt: s.startedAt };
  }

  append(
    id: string,
    source: Readable,
    start: number | undefined,
    length: number | undefined,
    signal?: AbortSignal,
  ): Promise<UploadState> {
    return this.#perUpload.run(id, async () => {
      const state = await this.#load(id, signal).catch((err) => {
        source.resume();
        throw err;
      });
      if (start !== undefined && start !== state.offset) {
        source.resume();
        throw new UploadRangeError(`chunk starts at ${start}, upload is at ${state.offset}`, {
          detail: { offset: state.offset },
        });
      }
      const cached = this.#hashes.get(id);
      // The running sha256 (what commit checks unless asked for another algorithm):
      // from this process's cache, or new for a session with no bytes yet. Without
      // one, commit downloads and re-hashes the whole staged object.
      const hash =
        cached?.offset === state.offset ? cached.hash : state.offset === 0 ? newHash("sha256") : undefined;
      this.#hashes.delete(id); // re-cached only if the chunk lands whole
      const next: SessionState = { ...state, parts: [...state.parts] };
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      let received = 0;
      // Parts in flight, in part-number order: up to PARTS_IN_FLIGHT upload while
      // the next one fills (memory: that many parts plus the one being filled).
      const window: Promise<Part>[] = [];
      // The part being streamed, when the chunk's length says a whole part is coming.
      let streaming:
        | { body: PassThrough; left: number; done: Promise<Part>; abort: AbortController }
        | undefined;
      const settleWindow = async () => {
        if (window.length >= PARTS_IN_FLIGHT) next.parts.push(await (window.shift() as Promise<Part>));
      };
      if (signal !== undefined) addAbortSignal(signal, source);
      try {
        for await (const chunk of source as AsyncIterable<Buffer>) {
          if (received === 0 && state.tail !== undefined) {
            const tail = await this.#store.getBytes(state.tail.key, signal);
            if (tail === undefined || tail.length !== state.tail.size)
              throw new Error(`upload ${id}: tail lost`);
            pending.push(tail);
            pendingBytes = tail.length;
          }
          hash?.update(chunk);
          received += chunk.length;
          let rest = chunk;
          while (rest.length > 0) {
            if (streaming !== undefined) {
              // Into the open part, as the bytes arrive (back-pressure from S3's socket).
              const take = Math.min(rest.length, streaming.left);
              const ok = streaming.body.write(take === rest.length ? rest : rest.subarray(0, take));
              streaming.left -= take;
              rest = rest.subarray(take);
              if (streaming.left === 0) {
                streaming.body.end();
                streaming = undefined;
                await settleWindow();
              } else if (!ok) {
                await Promise.race([once(streaming.body, "drain"), streaming.done]);
              }
              continue;
            }
            if (length !== undefined && pendingBytes + rest.length + (length - received) >= this.#partSize) {
              // A whole part is coming (Content-Length says so): stream it to S3 while
              // it arrives instead of receiving it first and sending it after.
              await this.#ensureMultipart(id, next, signal);
              const n = next.parts.length + window.length + 1;
              const body = new PassThrough();
              const abort = new AbortController();
              const partSignal =
                signal === undefined ? abort.signal : AbortSignal.any([signal, abort.signal]);
              const done = this.#putPart(id, next, n, body, this.#partSize, partSignal);
              done.catch(() => undefined); // awaited below, in order
              window.push(done);
              streaming = { body, left: this.#partSize - pendingBytes, done, abort };
              for (const piece of pending) body.write(piece);
              pending = [];
              pendingBytes = 0;
              continue;
            }
            pending.push(rest);
            pendingBytes += rest.length;
            rest = rest.subarray(rest.length);
            if (pendingBytes >= this.#partSize) {
              await this.#ensureMultipart(id, next, signal);
              const n = next.parts.length + window.length + 1;
              const part = this.#putPart(
                id,
                next,
                n,
                Buffer.concat(pending, pendingBytes),
                pendingBytes,
                signal,
              );
              part.catch(() => undefined); // awaited below, in order
              window.push(part);
              pending = [];
              pendingBytes = 0;
              await settleWindow();
            }
          }
        }
        if (streaming !== undefined) {
          throw new SizeInvalidError(`chunk has ${received} bytes, Content-Length said ${length}`);
        }
        // Shifted only once settled: on a failure, the catch below still waits for the rest.
        while (window.length > 0) {
          next.parts.push(await (window[0] as Promise<Part>));
          window.shift();
        }
      } catch (err) {
        // A part cut short must fail, not wait for bytes that will not come:
        // its request is aborted (a body that just stops would leave it open).
        streaming?.abort.abort(err);
        streaming?.body.destroy();
        // Settle every part before answering: none may land after the session moves on.
        await Promise.allSettled(window);
        throw signal?.aborted ? signal.reason : err;
      }
      if (length !== undefined && received !== length) {
        throw new SizeInvalidError(`chunk has ${received} bytes, Content-Length said ${length}`);
      }
      if (received === 0) {
        if (hash !== undefined) this.#hashes.set(id, { hash, offset: state.offset });
        return { id, repo: state.repo, offset: state.offset, startedAt: state.startedAt };
      }
      next.offset = state.offset + received;
      next.activeAt = new Date().toISOString();
      next.tail = undefined;
      if (pendingBytes > 0) {
        next.tail = { key: `${this.#dir(id)}tail-${randomUUID()}`, size: pendingBytes };
        await this.#store.putBytes(next.tail.key, Buffer.concat(pending, pendingBytes), signal);
      }
      signal?.throwIfAborted();
      await this.#save(id, next, signal);
      if (state.tail !== undefined) await this.#store.deleteObject(state.tail.key).catch(() => undefined);
      if (hash !== undefined) this.#hashes.set(id, { hash, offset: next.offset });
      return { id, repo: state.repo, offset: next.offset, startedAt: state.startedAt };
    });
  }

  async #uploadPart(id: string, state: SessionState, body: Buffer, signal?: AbortSignal): Promise<void> {
    await this.#ensureMultipart(id, state, signal);
    state.parts.push(await this.#putPart(id, state, state.parts.length + 1, body, body.length, signal));
  }

  /** Create the session's multipart upload if it has none yet, and record it at once. */
  async #ensureMultipart(id: string, state: SessionState, signal?: AbortSignal): Promise<void> {
    const { client, bucket } = this.#store;
    const Key = `${this.#dir(id)}data`;
    if (state.multipart === undefined) {
      const created = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }), {
        abortSignal: signal,
      });
      state.multipart = created.UploadId;
      // Recorded at once (the session is otherwise unchanged: no parts yet), so a
      // crash before the append's own commit point cannot orphan the upload.
      await this.#save(id, { ...state, parts: [...state.parts] }, signal);
    }
  }

  async #putPart(
    id: string,
    state: SessionState,
    n: number,
    body: Buffer | Readable,
    size: number,
    signal?: AbortSignal,
  ): Promise<Part> {
    const { client, bucket } = this.#store;
    const res = await client.send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: `${this.#dir(id)}data`,
        UploadId: state.multipart,
        PartNumber: n,
        Body: body,
        ContentLength: size,
      }),
      { abortSignal: signal },
    );
    // A long PATCH updates state.json only at its end: this marker's time tells
    // `purge` the session is busy (one tiny PUT per part of 5 MiB or more).
    await this.#store.putBytes(`${this.#dir(id)}active`, new Uint8Array(0), signal);
    return { n, etag: res.ETag ?? "", size };
  }

  commit(id: string, digest: Digest, signal?: AbortSignal): Promise<{ digest: Digest; size: number }> {
    return this.#perUpload.run(id, async () => {
      const state = await this.#load(id, signal);
      const algorithm = algorithmOf(digest);
      const cached = this.#hashes.get(id);
      this.#hashes.delete(id);
      let staged = state.tail?.key;
      // What #drop cleans up: a multipart upload without parts (its first append
      // failed) is aborted; a completed one is only objects.
      let done = state;
      if (state.multipart !== undefined && state.parts.length > 0) {
        staged = `${this.#dir(id)}data`;
        await this.#complete(id, state, staged, signal);
        done = { ...state, multipart: undefined };
      }
      const hash =
        algorithm === "sha256" && cached?.offset === state.offset
          ? cached.hash
          : await this.#store.hashObject(staged, algorithm, signal);
      const actual = digestFromHash(hash, algorithm);
      if (actual !== digest) {
        await this.#drop(id, done);
        throw new DigestMismatchError("content does not match digest", {
          detail: { expected: digest, actual },
        });
      }
      await this.#store.commitObject(staged, digest, state.offset, signal);
      await this.#drop(id, done);
      return { digest, size: state.offset };
    });
  }

  /** Upload the tail as the last part and complete the multipart upload to `key`. */
  async #complete(id: string, state: SessionState, key: string, signal?: AbortSignal): Promise<void> {
    const { client, bucket } = this.#store;
    try {
      const parts = { ...state, parts: [...state.parts] };
      if (state.tail !== undefined) {
        const tail = await this.#store.getBytes(state.tail.key, signal);
        if (tail === undefined) throw new Error(`upload ${id}: tail lost`);
        await this.#uploadPart(id, parts, tail, signal);
      }
      await client.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId: state.multipart,
          MultipartUpload: { Parts: parts.parts.map((p) => ({ PartNumber: p.n, ETag: p.etag })) },
        }),
        { abortSignal: signal },
      );
    } catch (err) {
      // A commit that crashed after completing: the staged object is already whole.
      if (!isNoSuchUpload(err) || (await this.#store.objectSize(key, signal)) !== state.offset) throw err;
    }
  }

  cancel(id: string, signal?: AbortSignal): Promise<void> {
    return this.#perUpload.run(id, async () => {
      const state = await this.#load(id, signal);
      this.#hashes.delete(id);
      await this.#drop(id, state);
    });
  }

  /**
   * Delete a session: state.json first (from then on the session does not
   * exist for any process), then its multipart upload and other objects.
   */
  async #drop(id: string, state: SessionState | undefined): Promise<void> {
    const dir = this.#dir(id);
    await this.#store.deleteObject(`${dir}state.json`);
    if (state?.multipart !== undefined) await this.#abort(`${dir}data`, state.multipart);
    // A session that never had a part or a tail (most: POST, then PUT with the
    // whole body) has nothing else to list for. A tail left by an append that
    // failed before its state.json write is under a session without state.json
    // now, which `purge` removes as a leftover.
    if (state !== undefined && state.multipart === undefined && state.parts.length === 0 && !state.tail)
      return;
    for (const key of await this.#list(dir)) await this.#store.deleteObject(key);
  }

  /** Abort a multipart upload; gone already is fine. */
  async #abort(key: string, uploadId: string): Promise<void> {
    try {
      await this.#store.client.send(
        new AbortMultipartUploadCommand({ Bucket: this.#store.bucket, Key: key, UploadId: uploadId }),
      );
    } catch (err) {
      if (!isNoSuchUpload(err)) throw err;
    }
  }

  async #list(prefix: string): Promise<string[]> {
    return (await this.#listWithTimes(prefix)).map((o) => o.key);
  }

  async #listWithTimes(prefix: string): Promise<{ key: string; modified: number }[]> {
    const keys: { key: string; modified: number }[] = [];
    let token: string | undefined;
    for (let page = 0; page < 10_000; page++) {
      const res = await this.#store.client.send(
        new ListObjectsV2Command({ Bucket: this.#store.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const o of res.Contents ?? []) {
        if (o.Key !== undefined) keys.push({ key: o.Key, modified: o.LastModified?.getTime() ?? 0 });
      }
      token = res.NextContinuationToken;
      if (!res.IsTruncated || token === undefined) break;
    }
    return keys;
  }

  async purge(
    before: Date,
    options: { idleBefore?: Date; signal?: AbortSignal },
  ): Promise<{ uploads: number; leftovers: number }> {
    let uploads = 0;
    let leftovers = 0;
    const idleBefore = options.idleBefore?.getTime() ?? Number.NEGATIVE_INFINITY;
    const root = this.#store.keys.uploads;
    // Each session's latest object write (state.json, tail, the `active` marker of a part).
    const touched = new Map<string, number>();
    for (const { key, modified } of await this.#listWithTimes(root)) {
      const id = key.slice(root.length).split("/")[0] ?? "";
      touched.set(id, Math.max(touched.get(id) ?? 0, modified));
    }
    for (const [id, modified] of touched) {
      if (!UUID.test(id)) continue;
      options.signal?.throwIfAborted();
      const state = await this.#load(id).catch(() => undefined);
      // No state.json: a session whose commit or cancel crashed half-way; its objects are leftovers.
      const started = state === undefined ? Number.NEGATIVE_INFINITY : Date.parse(state.startedAt);
      const active = state === undefined ? started : Math.max(Date.parse(state.activeAt), modified);
      if (started < before.getTime() || active < idleBefore) {
        await this.#perUpload.run(id, () => this.#drop(id, state));
        this.#hashes.delete(id);
        if (state === undefined) leftovers++;
        else uploads++;
      }
    }
    // Monolithic writes in flight have tmp/ objects only for their last instant
    // (lib-storage completes at the end): older ones were interrupted by a crash.
    for (const { key, modified } of await this.#listWithTimes(this.#store.keys.tmp)) {
      if (modified < before.getTime()) {
        await this.#store.deleteObject(key);
        leftovers++;
      }
    }
    return { uploads, leftovers };
  }
}
