/**
 * The quota check of a push (issue 15, quotas): may `repo`'s project take
 * `digest` of `size` bytes in this region? Called on the write path only —
 * a blob link (upload completion, monolithic push, mount, adoption: the
 * Registry's `#link`, and earlier from ./uploads.ts with the size received so
 * far, so a refused upload is not even moved into the store) and a new
 * manifest (./manifest-push.ts, before its bytes are stored) — never on a
 * pull. Not checked: replicated content (the regions would diverge; it
 * counts once applied) and an undelete (an operator restoring what was
 * deleted within the window: it counts again once restored).
 *
 * Cost: a project without a quota is answered from memory (the projection
 * holds quotas in memory), no IO. With a quota, two view reads: whether the
 * project already holds the digest (then it costs nothing: the storage keeps
 * it once) and the project's usage. Refused: QuotaExceededError, 403 DENIED
 * "quota exceeded", before the push's event is appended, so nothing of it is
 * visible (no link, no manifest, no tag); bytes already moved into the store
 * are unreferenced and collectable, like any push that failed before its
 * event.
 *
 * Precision. Usage is what the view has applied. Pushes admitted on THIS node
 * and not yet committed are reserved here (by project and digest, a digest
 * reserved twice counted once) and counted with the usage, so concurrent
 * pushes through one node cannot overshoot together; they may be refused
 * together when together they would (the client retries). Pushes on other
 * nodes of the region are not seen until their events are applied here: with
 * N nodes a project may end over its quota by at most what the other nodes
 * admitted concurrently (their pushes in flight, each at most a blob or a
 * manifest). Serializing across nodes would put a log round trip on every
 * blob push; the overshoot is bounded and visible in `meridian quota show`,
 * and every later push is refused until usage is back under the quota.
 */
import { projectOf } from "../../protocol/access.js";
import type { Digest } from "../../protocol/digest.js";
import { QuotaExceededError } from "../../protocol/errors.js";
import type { QuotaReads } from "./projections/quotas.js";
import type { QuotaRefusal } from "./quota-refusals.js";

/** Ends an admission (the push committed or failed): its reservation stops counting. */
export type Release = () => void;

const NOTHING: Release = () => undefined;

export class QuotaGate {
  readonly #quotas: QuotaReads;
  /** Admitted and not yet committed on this node: project → digest → {size, admissions}. */
  readonly #inflight = new Map<string, Map<string, { size: number; refs: number }>>();

  /** Told of each refusal (./quota-refusals.ts records it, rate-limited, off the push's path). */
  readonly #onRefused: ((repo: string, refusal: QuotaRefusal) => void) | undefined;

  constructor(quotas: QuotaReads, onRefused?: (repo: string, refusal: QuotaRefusal) => void) {
    this.#quotas = quotas;
    this.#onRefused = onRefused;
  }

  /**
   * Admit adding `digest` (`size` bytes) to `repo`'s project, or throw
   * QuotaExceededError. The returned Release must be called once the push
   * committed (its event applied here) or failed.
   */
  async admit(repo: string, digest: Digest, size: number): Promise<Release> {
    const project = projectOf(repo);
    const limit = this.#quotas.limitOf(project);
    if (limit === undefined) return NOTHING;
    // Reserved before the reads, so a concurrent admission on this node sees it.
    const release = this.#reserve(project, digest, size);
    try {
      if (await this.#quotas.holds(project, digest)) return release;
      const usage = await this.#quotas.usage(project);
      let pending = 0;
      for (const [d, r] of this.#inflight.get(project) ?? []) if (d !== digest) pending += r.size;
      if (usage.usedBytes + pending + size > limit) {
        this.#onRefused?.(repo, { limitBytes: limit, usedBytes: usage.usedBytes, requestedBytes: size });
        throw new QuotaExceededError(
          `quota exceeded: project ${project} holds ${usage.usedBytes} of its ${limit} bytes in this region; this push needs ${size} more`,
          {
            detail: {
              project,
              limitBytes: limit,
              usedBytes: usage.usedBytes,
              pendingBytes: pending,
              requestedBytes: size,
            },
          },
        );
      }
      return release;
    } catch (err) {
      release();
      throw err;
    }
  }

  /** Admit and release at once: the early check of an upload whose size is known before it is stored. */
  async check(repo: string, digest: Digest, size: number): Promise<void> {
    (await this.admit(repo, digest, size))();
  }

  #reserve(project: string, digest: string, size: number): Release {
    let byDigest = this.#inflight.get(project);
    if (byDigest === undefined) {
      byDigest = new Map();
      this.#inflight.set(project, byDigest);
    }
    const held = byDigest.get(digest);
    if (held === undefined) byDigest.set(digest, { size, refs: 1 });
    else held.refs++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const r = byDigest.get(digest);
      if (r !== undefined && --r.refs === 0) byDigest.delete(digest);
      if (byDigest.size === 0 && this.#inflight.get(project) === byDigest) this.#inflight.delete(project);
    };
  }
}
