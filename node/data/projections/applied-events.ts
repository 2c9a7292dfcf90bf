/**
 * The view's applied events, published to any number of subscribers (it
 * replaces a single `onApplied` slot that callers had to chain by hand).
 *
 * Contract: a listener hears each event once, after the batch holding it
 * committed, in log order, synchronously from the view's apply (so it must
 * be quick and must not await the view). A listener that throws does not
 * keep the others from hearing the event; the view's `apply` then rejects
 * with the first error, after the sequence moved on (as a throwing
 * `onApplied` did). Unsubscribing is the function `subscribe` returns.
 */
import type { RegistryEvent } from "../../../protocol/events.js";

export type AppliedListener = (event: RegistryEvent, seq: number) => void;

export class AppliedEvents {
  readonly #listeners = new Set<AppliedListener>();

  /** Hear every event applied from now on; returns the unsubscribe function. */
  subscribe(listener: AppliedListener): () => void {
    // A wrapper per subscription: the same function subscribed twice hears twice and unsubscribes once.
    const entry: AppliedListener = (event, seq) => listener(event, seq);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  /** Tell every listener; returns the first error a listener threw (the others were still told). */
  publish(event: RegistryEvent, seq: number): unknown {
    let failure: unknown;
    for (const listener of this.#listeners) {
      try {
        listener(event, seq);
      } catch (err) {
        failure ??= err;
      }
    }
    return failure;
  }
}
