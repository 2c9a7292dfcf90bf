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

/**
 * The committed values of a view's hottest small keys, held in memory: every
 * blob push reads its link register (`b!`) and its repository's tombstone
 * (`Z!`) up to three times (the client's HEAD, the link's own check, the
 * projection's merge before it writes), each a LevelDB read through libuv's
 * thread pool. Absent keys are held too (a HEAD before a push is a miss).
 *
 * Coherence rests on one fact: this process is the only writer of its view's
 * database (LevelDB locks it), and every write goes through `Batch.write`,
 * which hands the cache what it committed. A read that was in flight while a
 * batch wrote its key is not kept (its value may predate the write): each
 * read leaves a token, and a committed write of the key takes it away. The
 * view clears its database only when it opens, before any read.
 */
export class HotKeys {
  readonly #prefixes: readonly string[];
  readonly #max: number;
  readonly #values = new Map<string, string | undefined>();
  readonly #reading = new Map<string, object>();

  constructor(prefixes: readonly string[], max = 16_384) {
    this.#prefixes = prefixes;
    this.#max = max;
  }

  covers(key: string): boolean {
    for (const p of this.#prefixes) if (key.startsWith(p)) return true;
    return false;
  }

  async get(db: ViewDb, key: string): Promise<string | undefined> {
    if (this.#values.has(key)) return this.#values.get(key);
    const token = {};
    this.#reading.set(key, token);
    let value: string | undefined;
    try {
      value = await db.get(key);
    } catch (err) {
      if (this.#reading.get(key) === token) this.#reading.delete(key);
      throw err;
    }
    if (this.#reading.get(key) === token) {
      this.#reading.delete(key);
      this.#keep(key, value);
    }
    return value;
  }

  /** A batch committed `value` under `key` (undefined: deleted). */
  committed(key: string, value: string | undefined): void {
    this.#reading.delete(key);
    this.#keep(key, value);
  }

  /** A batch failed: what it may have half-written is read again from the database. */
  forget(): void {
    this.#values.clear();
    this.#reading.clear();
  }

  #keep(key: string, value: string | undefined): void {
    if (this.#values.size >= this.#max && !this.#values.has(key)) {
      // Oldest first out (insertion order).
      const oldest = this.#values.keys().next().value;
      if (oldest !== undefined) this.#values.delete(oldest);
    }
    this.#values.set(key, value);
  }
}

const hotKeys = new WeakMap<ViewDb, HotKeys>();

/** Hold the committed values of keys under `prefixes` of `db` in memory (see HotKeys); once per database. */
export function cacheHotKeys(db: ViewDb, prefixes: readonly string[]): void {
  if (!hotKeys.has(db)) hotKeys.set(db, new HotKeys(prefixes));
}

/** A committed value, from the hot-key cache when `key` is one of its prefixes'. */
export function readCommitted(db: ViewDb, key: string): Promise<string | undefined> {
  const hot = hotKeys.get(db);
  return hot?.covers(key) ? hot.get(db, key) : db.get(key);
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
      read = readCommitted(this.db, key);
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
    const hot = hotKeys.get(this.db);
    try {
      await this.db.batch(
        [...this.#pending].map(([key, value]) =>
          value === undefined ? { type: "del" as const, key } : { type: "put" as const, key, value },
        ),
      );
    } catch (err) {
      hot?.forget();
      throw err;
    }
    if (hot !== undefined)
      for (const [key, value] of this.#pending) if (hot.covers(key)) hot.committed(key, value);
  }
}
