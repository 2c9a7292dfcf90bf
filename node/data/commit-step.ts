/**
 * The commit step, the one way a metadata change reaches the log: an event
 * body is wrapped in its envelope (`#envelope`), signed when its type needs
 * the mesh's proof, appended to the log, applied to this node's view, and
 * only then reported done with its sequence (read-your-writes on this node).
 * Tag writes go through `commitTag`: a compare-and-set on the tag's subject,
 * after the repository's tag rule allowed them.
 *
 * Used by the Registry (./registry.ts) and its operations (./uploads.ts,
 * ./undelete.ts, ./failover.ts); nothing else appends to the log.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import {
  isStorageFull,
  LogConflictError,
  LogUnavailableError,
  RegionFencedError,
  StorageFullError,
  TagImmutableError,
} from "../../protocol/errors.js";
import { AUTHORITY_TYPES } from "../../protocol/event-authority.js";
import { type EventBody, makeEvent, type RegistryEvent, subjectFor } from "../../protocol/events.js";
import type { HybridClock } from "../../protocol/hlc.js";
import type { EventLog, LoggedEvent } from "./event-log.js";
import type { MetadataView } from "./view.js";

const TAG_WRITE_ATTEMPTS = 8;

/** The events that write a tag (and so go through the tag's compare-and-set). */
export type TagBody = Extract<EventBody, { type: "tag.set" | "tag.deleted" | "manifest.pushed" }> & {
  tag: string;
};

export interface CommitStepOptions {
  region: string;
  log: EventLog;
  view: MetadataView;
  logger: Logger;
  clock: HybridClock;
  /** How long a write waits for this node's view to apply its event. */
  applyTimeoutMs: number;
  /** The proof an identity or policy event carries (protocol/event-authority.ts); absent without auth. */
  signEvent?: (event: RegistryEvent) => Promise<string>;
  /** Why writes as a repository's home are refused now; "" when they are not (RegionLink.fence). */
  fence: () => string;
}

export class CommitStep {
  readonly #region: string;
  readonly #log: EventLog;
  readonly #view: MetadataView;
  readonly #logger: Logger;
  readonly #clock: HybridClock;
  readonly #applyTimeoutMs: number;
  readonly #signEvent: CommitStepOptions["signEvent"];
  readonly #fence: () => string;

  constructor(options: CommitStepOptions) {
    this.#region = options.region;
    this.#log = options.log;
    this.#view = options.view;
    this.#logger = options.logger;
    this.#clock = options.clock;
    this.#applyTimeoutMs = options.applyTimeoutMs;
    this.#signEvent = options.signEvent;
    this.#fence = options.fence;
  }

  #envelope(body: EventBody, actor: string, epoch?: number): RegistryEvent {
    return makeEvent(body, { id: randomUUID(), origin: this.#region, hlc: this.#clock.now(), actor, epoch });
  }

  /** Append an event, apply it here, and return its sequence. */
  async commit(
    body: EventBody,
    actor: string,
    expectLastSubjectSeq?: number,
    epoch?: number,
  ): Promise<number> {
    const event = this.#envelope(body, actor, epoch);
    if (this.#signEvent !== undefined && AUTHORITY_TYPES.has(event.type))
      event.proof = await this.#signEvent(event);
    const { seq } = await this.#log.append(event, { expectLastSubjectSeq });
    await this.#applied({ seq, event });
    return seq;
  }

  /**
   * Tag writes are compare-and-set on the tag's subject: read the last write,
   * move this node's clock past it, append expecting it to still be last. So
   * within a region the log order of a tag's writes is also their clock order,
   * and the merge rule agrees with what clients saw acknowledged.
   */
  async commitTag(body: TagBody, actor: string): Promise<number> {
    const subject = subjectFor(this.#region, body);
    for (let attempt = 0; attempt < TAG_WRITE_ATTEMPTS; attempt++) {
      const last = await this.#log.lastOnSubject(subject);
      if (last !== undefined) {
        this.#clock.observe(last.event.hlc);
        // The view must know that write before the rule is checked against it.
        await this.#view.waitFor(last.seq, this.#applyTimeoutMs).catch(() => undefined);
      }
      const epoch = await this.#checkTagRule(body);
      if (epoch === "unchanged") return this.#view.appliedSeq;
      const prev = (await this.#view.content.tagRecord(body.repo, body.tag))?.eventId;
      try {
        return await this.commit(prev === undefined ? body : { ...body, prev }, actor, last?.seq ?? 0, epoch);
      } catch (err) {
        if (!(err instanceof LogConflictError)) throw err;
        this.#logger.debug({ attempt, subject }, "tag write conflict");
      }
    }
    throw new LogConflictError("tag is being written concurrently; retry");
  }

  /**
   * The repository's tag rule, enforced where the write is made so a client
   * hears "no" instead of seeing its write lose the merge later:
   * `first-write` refuses to move or delete a tag that was ever written
   * (setting it to the digest it already has is a no-op), `home-region`
   * refuses writes outside the repository's current home and stamps the
   * current epoch on those it accepts.
   */
  async #checkTagRule(body: TagBody): Promise<number | undefined | "unchanged"> {
    const { tagMerge, homes } = this.#view.content.configFor(body.repo);
    const digest = body.type === "tag.deleted" ? null : body.digest;
    await this.#checkImmutability(body, digest);
    if (tagMerge === "first-write") {
      const current = await this.#view.content.tagRecord(body.repo, body.tag);
      if (current === undefined) return undefined;
      if (current.digest === digest) return "unchanged";
      throw new TagImmutableError(`tag ${body.tag} is immutable in ${body.repo}`, {
        detail: { repo: body.repo, tag: body.tag, digest: current.digest },
      });
    }
    if (tagMerge === "home-region") {
      const epochs = Object.keys(homes).map(Number);
      const epoch = epochs.length === 0 ? 0 : Math.max(...epochs);
      const home = homes[epoch];
      if (home !== this.#region) {
        throw new TagImmutableError(`${body.repo} is homed in region ${home} (epoch ${epoch}); write there`, {
          detail: { repo: body.repo, home, epoch },
        });
      }
      const fence = this.#fence();
      if (fence !== "") {
        throw new RegionFencedError(
          `region ${this.#region} does not accept writes as home of ${body.repo} now: ${fence}`,
          { detail: { repo: body.repo, region: this.#region, epoch, fence } },
        );
      }
      return epoch;
    }
    return undefined;
  }

  /**
   * An immutable-tag rule in force now (protocol/immutable-tags.ts) refuses
   * to move or delete a tag that stands set: the same decision the view's
   * fold makes for this write (its clock is past every rule this view
   * applied), so the client hears "no" and nothing of the push becomes
   * visible. The first write of the tag and a re-push of the digest it
   * holds pass. Rules are in memory: nothing is read unless one matches.
   */
  async #checkImmutability(body: TagBody, digest: string | null): Promise<void> {
    const rule = this.#view.content.immutability.protectingNow(body.repo, body.tag);
    if (rule === undefined) return;
    const current = await this.#view.content.tagRecord(body.repo, body.tag);
    if (current === undefined || current.digest === null || current.digest === digest) return;
    const verb = digest === null ? "deleted" : "moved";
    throw new TagImmutableError(
      `tag ${body.tag} of ${body.repo} is immutable (rule ${rule}) and cannot be ${verb}: it points at ${current.digest}`,
      { detail: { repo: body.repo, tag: body.tag, rule, digest: current.digest } },
    );
  }

  async #applied(entry: LoggedEvent): Promise<void> {
    try {
      await this.#view.apply([entry], true);
    } catch (err) {
      // The view's disk is full (issue 15): the event is in the log and is applied, whole,
      // once space is freed; say so rather than "cannot store this".
      if (!isStorageFull(err)) throw err;
      throw new StorageFullError(
        "storage full: the write is in the region's log, and becomes visible once this node's view has space to apply it",
        { cause: err },
      );
    }
    try {
      await this.#view.waitFor(entry.seq, this.#applyTimeoutMs);
    } catch (err) {
      // Durable in the log but not yet visible here: the client may retry safely.
      throw new LogUnavailableError("write accepted by the log but not yet applied", { cause: err });
    }
  }
}
