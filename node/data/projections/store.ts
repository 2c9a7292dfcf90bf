/**
 * What every projection of the view (node/data/view.ts) shares: the level
 * database they all live in, the one batch an applied log entry writes
 * through, and the shape of a projection (its apply handlers by event type).
 *
 * Contract of a projection:
 *   - it owns a set of key prefixes in the view's database (listed in its
 *     header) and writes nothing else;
 *   - its handlers only stage writes in the batch they are given; the view
 *     commits that batch once per applied log entry range, together with the
 *     applied sequence, so a crash never leaves one projection ahead of
 *     another;
 *   - a handler must be deterministic in (stored state, event): re-applying
 *     an event already applied is prevented by the view (e!<id>), not here;
 *   - reads go straight to the database and see committed state only.
 */
import type { Level } from "level";
import type { RegistryEvent } from "../../../protocol/events.js";
import type { Hlc } from "../../../protocol/hlc.js";
import type { Write } from "../../../protocol/registers.js";
import { compareWrites, type TagWrite } from "../../../protocol/tag-merge.js";

export type ViewDb = Level<string, string>;

/** Upper bound of a prefix scan (`!` sorts before every name character). */
export const END = "\xff";

export interface Page<T> {
  items: T[];
  /** True when more items follow the last one returned. */
  more: boolean;
}

/** One event, with the write it makes and the log sequence it came at. */
export type ApplyHandler<E extends RegistryEvent = RegistryEvent> = (
  batch: Batch,
  event: E,
  w: Write,
  seq: number,
) => Promise<void>;

/** Apply handlers by event type, each typed by its event. */
export type Handlers = { [T in RegistryEvent["type"]]?: ApplyHandler<Extract<RegistryEvent, { type: T }>> };

export interface Projection {
  /** The events this projection applies (an event type belongs to exactly one projection). */
  readonly handlers: Handlers;
  /**
   * Reload in-memory state from the committed database: at open, and after
   * a batch failed to commit (undoing what its handlers cached). Optional.
   */
  load?(): Promise<void>;
}

export async function getJson<T>(
  source: { get(key: string): Promise<string | undefined> },
  key: string,
): Promise<T | undefined> {
  const raw = await source.get(key);
  return raw === undefined ? undefined : (JSON.parse(raw) as T);
}

export function toTagWrite(w: Write): TagWrite {
  return { digest: undefined, hlc: w.hlc, origin: w.origin, eventId: w.id, epoch: w.epoch };
}

/** True when `a` is ordered before `b` (clock, then origin, then id). */
export function olderWrite(a: Write, b: Write): boolean {
  return compareWrites(toTagWrite(a), toTagWrite(b)) < 0;
}

/** A key part sorting clocks in clock order (wall, then logical). */
export function hlcKey(hlc: Hlc): string {
  return `${String(hlc.wall).padStart(15, "0")}.${String(hlc.logical).padStart(9, "0")}`;
}

/** Write `value()` under `key` as a last-writer-wins register, unless a later write is there. */
export async function putRegister(batch: Batch, key: string, w: Write, value: () => unknown): Promise<void> {
  const current = await getJson<{ w: Write }>(batch, key);
  if (current !== undefined && !olderWrite(current.w, w)) return;
  batch.put(key, JSON.stringify({ value: value(), w }));
}

/** A level batch whose reads see its own pending writes. */
export class Batch {
  readonly #pending = new Map<string, string | undefined>();
  /**
   * What this batch read from the database, by key: nothing else writes the
   * database while a batch is applied (the view applies one at a time), and
   * a batch of many events reads the same keys again and again (a
   * repository's deletion barrier `Z!<repo>` once per event, and per blob of
   * each manifest): one read each (issue 14, apply latency).
   */
  readonly #read = new Map<string, Promise<string | undefined>>();
  constructor(private readonly db: ViewDb) {}

  get(key: string): Promise<string | undefined> {
    if (this.#pending.has(key)) return Promise.resolve(this.#pending.get(key));
    let read = this.#read.get(key);
    if (read === undefined) {
      read = this.db.get(key);
      this.#read.set(key, read);
      // A failed read is not kept (the caller sees it; a retry reads again).
      read.catch(() => this.#read.delete(key));
    }
    return read;
  }
  put(key: string, value: string): void {
    this.#pending.set(key, value);
  }
  del(key: string): void {
    this.#pending.set(key, undefined);
  }
  /** Live (suffix, value) pairs under a prefix, pending writes included, in key order. */
  async entriesUnder(prefix: string): Promise<Array<[string, string]>> {
    const found = new Map<string, string>();
    for await (const [key, value] of this.db.iterator({ gte: prefix, lt: prefix + END }))
      found.set(key, value);
    for (const [key, value] of this.#pending) {
      if (!key.startsWith(prefix)) continue;
      if (value === undefined) found.delete(key);
      else found.set(key, value);
    }
    return [...found]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => [k.slice(prefix.length), v] as [string, string]);
  }
  async keysUnder(prefix: string): Promise<string[]> {
    return (await this.entriesUnder(prefix)).map(([k]) => k);
  }
  async valuesUnder(prefix: string): Promise<string[]> {
    return (await this.entriesUnder(prefix)).map(([, v]) => v);
  }
  async write(): Promise<void> {
    await this.db.batch(
      [...this.#pending].map(([key, value]) =>
        value === undefined ? { type: "del" as const, key } : { type: "put" as const, key, value },
      ),
    );
  }
}
