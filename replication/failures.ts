/**
 * What the worker knows of the events it could not replicate (yet):
 *   - `failures`: the events it is retrying (or gave up on), by artifact
 *     ("repo@digest", or "repo:tag" for a tag deletion), with the latest
 *     reason, for `meridian replication status` (main.ts serves it);
 *   - events given up on, recorded durably as an `alert.raised` of kind
 *     "replication-failed" (its id derived from the region and the event,
 *     so recorded once however often this runs), and remembered so that a
 *     redelivery is terminated at once (before a restart too: the view's
 *     alerts say so).
 */
import type { MetadataView } from "../node/data/view.js";
import {
  type ContentEvent,
  derivedId,
  type EventBody,
  isContentEvent,
  type RegistryEvent,
} from "../protocol/events.js";

/** Kind of the alert recording an event given up on. */
export const REPLICATION_FAILED = "replication-failed";

/** Id of the alert recording that `eventId` failed to replicate to `region`. */
export function failedAlertId(region: string, eventId: string): string {
  return derivedId(REPLICATION_FAILED, region, eventId);
}

/** Key of a content event's artifact in `failures`: repo@digest, or repo:tag for a tag deletion. */
export function failureKey(event: ContentEvent): string {
  if ("digest" in event) return `${event.repo}@${event.digest}`;
  if ("tag" in event) return `${event.repo}:${event.tag}`;
  return event.repo;
}

export interface FailureEntry {
  source: string;
  eventId: string;
  reason: string;
  attempts: number;
  at: string;
}

/** An event given up on: why, after how many attempts. */
export interface GivenUp {
  event: RegistryEvent;
  reason: string;
  attempts: number;
}

export class FailureLog {
  /** Events being retried or given up on, by failureKey. */
  readonly failures = new Map<string, FailureEntry>();
  /** Ids of events recorded as failed by this process (a redelivery is terminated at once). */
  readonly #failed = new Set<string>();
  readonly #region: string;
  readonly #view: MetadataView;
  readonly #appendOwn: (body: EventBody, id: string) => Promise<void>;

  constructor(region: string, view: MetadataView, appendOwn: (body: EventBody, id: string) => Promise<void>) {
    this.#region = region;
    this.#view = view;
    this.#appendOwn = appendOwn;
  }

  /** An attempt at `event` failed with `err` (it is retried). */
  retrying(source: string, event: RegistryEvent, err: unknown, attempt: number): void {
    if (!isContentEvent(event)) return;
    this.failures.set(failureKey(event), {
      source,
      eventId: event.id,
      reason: err instanceof Error ? err.message : String(err),
      attempts: attempt + 1,
      at: new Date().toISOString(),
    });
  }

  /** `event` was replicated: no longer failing. */
  replicated(event: RegistryEvent): void {
    if (isContentEvent(event)) this.failures.delete(failureKey(event));
  }

  /**
   * Record that `event` from `source` will not be replicated here: an alert
   * (once per event and region), kept in `failures` too.
   */
  async record(source: string, { event, reason, attempts }: GivenUp, seq: number): Promise<void> {
    if (this.#failed.has(event.id)) return; // recorded already (a redelivery)
    const region = this.#region;
    const content = isContentEvent(event) ? event : undefined;
    const what =
      content === undefined ? event.type : `${event.type} ${content.repo}${artifactOf(content) ?? ""}`;
    await this.#appendOwn(
      {
        type: "alert.raised",
        kind: REPLICATION_FAILED,
        message: `${what} from ${source} not replicated to ${region}: ${reason}`.slice(0, 1024),
        ...(content === undefined ? {} : { repo: content.repo }),
        detail: {
          source,
          destination: region,
          eventId: event.id,
          seq,
          reason: reason.slice(0, 512),
          ...("digest" in event ? { digest: event.digest } : {}),
        },
      },
      failedAlertId(region, event.id),
    );
    this.#failed.add(event.id);
    if (this.#failed.size > 10_000) this.#failed.delete(this.#failed.values().next().value!);
    if (content !== undefined)
      this.failures.set(failureKey(content), {
        source,
        eventId: event.id,
        reason,
        attempts,
        at: new Date().toISOString(),
      });
  }

  /** Whether `eventId` was recorded as failed here (by this process, or before a restart: the view's alerts). */
  async recordedBefore(eventId: string): Promise<boolean> {
    if (this.#failed.has(eventId)) return true;
    const id = failedAlertId(this.#region, eventId);
    if (!(await this.#view.admin.alerts()).some((a) => a.id === id)) return false;
    this.#failed.add(eventId);
    return true;
  }
}

/** "@digest" or ":tag" of a content event, if it names one. */
function artifactOf(event: ContentEvent): string | undefined {
  if ("digest" in event) return `@${event.digest}`;
  if ("tag" in event) return `:${event.tag}`;
  return undefined;
}
