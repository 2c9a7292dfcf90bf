/**
 * The mesh seen from one region's peer, for that region's own nodes: fetch on
 * miss (`locate`, `fetchFromMesh`) and sync(k) durability (`waitReplicated`),
 * answered by asking the other regions' peers over their Peer service. The
 * Peer service's Locate, FetchFromMesh and WaitReplicated delegate here
 * (control-plane/peer-service.ts); the process wires it up in peer.ts.
 *
 * Which regions, in which order: `nearestFirst` (protocol/routing.ts) over
 * the heartbeats' health. Regions the heartbeats mark down are skipped by
 * `locate` and `fetchFromMesh`: both sit on the nodes' miss path (a push's
 * HEAD of every blob is a miss), so a region known dead must cost nothing
 * there; the heartbeat sees it again within an interval of its return.
 * Regions never measured yet come after the measured ones. `waitReplicated`
 * polls every other region, down or not: its calls run in parallel, so a
 * dead region only fails to count.
 *
 * Every remote call carries a short deadline (`callTimeoutMs`), so a region
 * that stopped answering without being marked down yet costs at most that
 * once. Holders are asked all at once and the answer is the first holder in
 * the order above: a miss costs the slowest answer among the regions ahead
 * of the holder, not their sum.
 *
 * Absence is a domain error (ManifestNotFoundError, BlobNotFoundError) when
 * no reachable region holds the thing; bad input is NameInvalidError,
 * DigestInvalidError, TagInvalidError, RangeNotSatisfiableError or
 * UnsupportedError (all INVALID_ARGUMENT on the wire). Every method stops
 * its remote calls when `signal` aborts.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { PeerClient } from "../mesh-client/peer-client.js";
import { parseReference } from "../node/data/registry.js";
import { algorithmOf, type Digest, digestOf, parseDigest } from "../protocol/digest.js";
import {
  BlobNotFoundError,
  isTerminal,
  ManifestNotFoundError,
  PeerUnavailableError,
  RangeNotSatisfiableError,
  UnsupportedError,
} from "../protocol/errors.js";
import { type Mesh, registriesOf } from "../protocol/mesh.js";
import { parseRepository } from "../protocol/names.js";
import { nearestFirst, type RegionHealth } from "../protocol/routing.js";

/** What MeshFetch needs of another region's peer (a PeerClient). */
export type MeshPeer = Pick<PeerClient, "getManifest" | "blobSizes" | "fetchBlob">;

export interface MeshFetchOptions {
  /** This region (never asked). */
  region: string;
  /** The mesh: every other region's `registry` URL comes from here. */
  mesh: Mesh;
  /** A client of each other region's peer; regions without one are never asked. */
  peers: ReadonlyMap<string, MeshPeer>;
  /**
   * The heartbeats' view of the other regions now: `up: false` means known
   * down (skipped by locate and fetch); a region missing from the list has
   * not been measured yet (tried after the measured ones).
   */
  health: () => readonly RegionHealth[];
  /** Deadline of each remote call of locate, fetch and wait (default 2000 ms). */
  callTimeoutMs?: number;
  /** Time between two polls of one region by waitReplicated (default 40 ms). */
  pollMs?: number;
  logger?: Logger;
}

/** Where a repository's manifest or blob is (LocateReply). */
export interface Located {
  region: string;
  /** That region's OCI endpoint, from the mesh (one of its nodes in turn when it lists several). */
  registry: string;
  digest: Digest;
  /** Manifests only ("" for a blob). */
  mediaType: string;
  /** A manifest's exact bytes (empty for a blob). */
  content: Buffer;
  /** Bytes of the manifest or blob. */
  size: number;
}

/** A piece of a relayed blob: `data` starts at `offset`; `size` is the whole blob's. */
export interface BlobPiece {
  data: Buffer;
  offset: number;
  size: number;
}

/** Longest WaitReplicated accepted: a sync push should not hold a call open longer. */
export const MAX_WAIT_MS = 5 * 60_000;

const EMPTY = Buffer.alloc(0);

export class MeshFetch {
  readonly #mesh: Mesh;
  /** Each region's next node for a redirect (#located). */
  readonly #turns = new Map<string, number>();
  readonly #peers: ReadonlyMap<string, MeshPeer>;
  readonly #health: () => readonly RegionHealth[];
  readonly #others: readonly string[];
  readonly #callTimeoutMs: number;
  readonly #pollMs: number;
  readonly #logger: Logger | undefined;

  constructor(options: MeshFetchOptions) {
    this.#mesh = options.mesh;
    this.#peers = options.peers;
    this.#health = options.health;
    this.#others = options.mesh.regions
      .map((r) => r.name)
      .filter((name) => name !== options.region && options.peers.has(name));
    this.#callTimeoutMs = options.callTimeoutMs ?? 2_000;
    this.#pollMs = options.pollMs ?? 40;
    this.#logger = options.logger;
  }

  /** The other regions in the order locate and fetch ask them: nearest healthy first, known-down left out. */
  candidates(): string[] {
    const health = this.#health();
    const down = new Set(health.filter((h) => !h.up).map((h) => h.region));
    return nearestFirst(this.#others, health).filter((r) => !down.has(r));
  }

  /**
   * The nearest other region holding `repo`'s manifest by `reference` (a tag
   * or digest; with its verified bytes), or its blob by digest `reference`
   * linked in `repo` (with its size). Rejects with ManifestNotFoundError /
   * BlobNotFoundError when no reachable region holds it.
   */
  async locate(repo: string, reference: string, manifest: boolean, signal?: AbortSignal): Promise<Located> {
    const name = parseRepository(repo);
    if (manifest) {
      const ref = parseReference(reference);
      const found = await this.#firstHolder(signal, async (region, peer, s) => {
        const m = await peer.getManifest(name, reference, { timeoutMs: this.#callTimeoutMs, signal: s });
        const digest = parseDigest(m.digest);
        // Nothing from another region is trusted without its digest.
        if (
          ("digest" in ref && ref.digest !== digest) ||
          digestOf(m.content, algorithmOf(digest)) !== digest
        ) {
          this.#logger?.warn(
            { peer: region, repo: name, digest },
            "peer sent a manifest that fails its digest",
          );
          return undefined;
        }
        return { digest, mediaType: m.mediaType, content: m.content, size: m.content.byteLength };
      });
      if (found === undefined) {
        throw new ManifestNotFoundError("manifest unknown in every reachable region", {
          detail: { repo: name },
        });
      }
      return this.#located(found.region, found.value);
    }
    const digest = parseDigest(reference);
    const found = await this.#firstHolder(signal, async (_region, peer, s) => {
      const [size] = await peer.blobSizes([digest], name, { timeoutMs: this.#callTimeoutMs, signal: s });
      return size === undefined ? undefined : { digest, mediaType: "", content: EMPTY, size };
    });
    if (found === undefined) {
      throw new BlobNotFoundError("blob unknown in every reachable region", {
        detail: { repo: name, digest },
      });
    }
    return this.#located(found.region, found.value);
  }

  /**
   * `repo`'s blob from `offset` on, from the nearest other region holding it
   * linked there, as pieces in order (each at most what one upstream read
   * gave). A holder that fails before its first byte is replaced by the
   * next; a failure after it ends the iteration with that error (the caller
   * resumes from the offset it reached). Stopping the iteration, or
   * `signal`, cancels the upstream call. Bytes are relayed as they come: the
   * caller verifies the digest.
   */
  async *fetchFromMesh(
    repo: string,
    digest: string,
    offset: number,
    signal?: AbortSignal,
  ): AsyncGenerator<BlobPiece, void, undefined> {
    const name = parseRepository(repo);
    const d = parseDigest(digest);
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new RangeNotSatisfiableError(`offset ${offset} outside the blob`, 0);
    }
    const abort = linked(signal);
    try {
      const order = this.candidates();
      const sizes = order.map((region) =>
        this.#peers
          .get(region)!
          .blobSizes([d], name, { timeoutMs: this.#callTimeoutMs, signal: abort.signal })
          .then(
            ([size]) => size,
            (err) => {
              this.#logger?.debug({ peer: region, repo: name, digest: d, err }, "blob lookup failed");
              return undefined;
            },
          ),
      );
      let failure: unknown;
      for (const [i, region] of order.entries()) {
        const size = await sizes[i];
        abort.signal.throwIfAborted();
        if (size === undefined) continue;
        if (offset > size) throw new RangeNotSatisfiableError(`offset ${offset} outside the blob`, size);
        if (offset === size) {
          // Nothing left (or an empty blob): one empty piece still tells the size.
          yield { data: EMPTY, offset, size };
          return;
        }
        const stream = this.#peers.get(region)!.fetchBlob(d, offset, abort.signal, undefined, name);
        let position = offset;
        try {
          for await (const data of stream as AsyncIterable<Buffer>) {
            const piece = { data, offset: position, size };
            position += data.byteLength;
            yield piece;
          }
        } catch (err) {
          abort.signal.throwIfAborted();
          if (position > offset) throw err;
          this.#logger?.info({ peer: region, repo: name, digest: d, err }, "holder failed; trying the next");
          failure = err;
          continue;
        } finally {
          stream.destroy();
        }
        if (position !== size) {
          throw new PeerUnavailableError(`blob ${d} from ${region}: ended at ${position} of ${size} bytes`);
        }
        return;
      }
      // Holders that failed to send make the blob unavailable, not absent. One that
      // failed for good (INTERNAL: terminal for a worker's event) leaves this
      // region's caller only unable to fetch it now: unavailable too (a 503).
      if (isTerminal(failure))
        throw new PeerUnavailableError(`blob ${d}: no holder could send it`, { cause: failure });
      if (failure !== undefined) throw failure;
      throw new BlobNotFoundError("blob unknown in every reachable region", {
        detail: { repo: name, digest: d },
      });
    } finally {
      abort.abort();
    }
  }

  /**
   * Wait until `copies` other regions hold `repo`'s manifest `digest` (so its
   * whole closure), polling every other region in parallel, or `timeoutMs`
   * passes. `regions` are those found (sorted by name), all of them even past
   * `copies`' worth if they answered in the same round. UnsupportedError for
   * `copies` above the number of other regions or a timeout outside
   * 0…MAX_WAIT_MS.
   */
  async waitReplicated(
    repo: string,
    digest: string,
    copies: number,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<{ regions: string[]; satisfied: boolean }> {
    const name = parseRepository(repo);
    const d = parseDigest(digest);
    const others = this.#others;
    if (!Number.isSafeInteger(copies) || copies < 0 || copies > others.length) {
      throw new UnsupportedError(
        `copies ${copies}: between 0 and ${others.length} (the other regions of the mesh)`,
      );
    }
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > MAX_WAIT_MS) {
      throw new UnsupportedError(`timeout ${timeoutMs} ms: between 0 and ${MAX_WAIT_MS}`);
    }
    const found = new Set<string>();
    const result = () => ({ regions: [...found].sort(), satisfied: found.size >= copies });
    if (copies === 0) return result();
    const until = Date.now() + timeoutMs;
    const abort = linked(signal);
    let enough: () => void = () => undefined;
    const satisfied = new Promise<void>((resolve) => {
      enough = resolve;
    });
    const poll = async (region: string): Promise<void> => {
      const peer = this.#peers.get(region)!;
      for (;;) {
        const left = until - Date.now();
        if (left <= 0 || abort.signal.aborted) return;
        try {
          const m = await peer.getManifest(name, d, {
            timeoutMs: Math.min(this.#callTimeoutMs, left),
            signal: abort.signal,
          });
          if (m.digest === d) {
            found.add(region);
            if (found.size >= copies) enough();
            return;
          }
        } catch {
          // not there yet, or not reachable: ask again
        }
        try {
          await sleep(Math.min(this.#pollMs, Math.max(0, until - Date.now())), undefined, {
            signal: abort.signal,
          });
        } catch {
          return;
        }
      }
    };
    const polls = others.map(poll);
    try {
      await Promise.race([satisfied, Promise.all(polls)]);
    } finally {
      abort.abort();
      await Promise.all(polls);
    }
    signal?.throwIfAborted();
    return result();
  }

  /**
   * Ask every candidate at once; the answer is the first holder in candidate
   * order (undefined when none holds it). A failed or refused answer counts
   * as "not there". The other calls are cancelled once the answer is known.
   */
  async #firstHolder<T>(
    signal: AbortSignal | undefined,
    ask: (region: string, peer: MeshPeer, signal: AbortSignal) => Promise<T | undefined>,
  ): Promise<{ region: string; value: T } | undefined> {
    const abort = linked(signal);
    try {
      const order = this.candidates();
      const answers = order.map((region) =>
        ask(region, this.#peers.get(region)!, abort.signal).catch((err) => {
          if (!(err instanceof ManifestNotFoundError || err instanceof BlobNotFoundError)) {
            this.#logger?.debug({ peer: region, err }, "locate call failed");
          }
          return undefined;
        }),
      );
      for (const [i, region] of order.entries()) {
        const value = await answers[i];
        abort.signal.throwIfAborted();
        if (value !== undefined) return { region, value };
      }
      return undefined;
    } finally {
      abort.abort();
    }
  }

  /**
   * `registry`: where a node in redirect mode (node/fetch-on-miss.ts) sends
   * its client. A region of several nodes (mesh.json `registry` as a list)
   * gets its nodes in turn, one per answer: this peer's heartbeats reach that
   * region's peer, not its nodes, so it cannot tell which of them answer, and
   * the client follows the redirect itself (its failure is its own to retry,
   * as with a region of one node that just died); turning spreads the
   * redirected clients instead of piling them on the first node.
   */
  #located(region: string, value: Omit<Located, "region" | "registry">): Located {
    const r = this.#mesh.regions.find((x) => x.name === region);
    const nodes = r === undefined ? [""] : registriesOf(r);
    const turn = this.#turns.get(region) ?? 0;
    this.#turns.set(region, turn + 1);
    return { region, registry: nodes[turn % nodes.length]!, ...value };
  }
}

/** An AbortController that also aborts when `signal` does (without keeping a listener past its own abort). */
function linked(signal: AbortSignal | undefined): AbortController {
  const abort = new AbortController();
  if (signal === undefined) return abort;
  if (signal.aborted) {
    abort.abort(signal.reason);
    return abort;
  }
  const onAbort = () => abort.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  abort.signal.addEventListener("abort", () => signal.removeEventListener("abort", onAbort), { once: true });
  return abort;
}
