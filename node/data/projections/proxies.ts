/**
 * The pull-through cache projection (issue 17, item 3; protocol/proxy.ts):
 * which projects are proxies of an upstream registry, as the log's
 * proxy.set / proxy.deleted events leave them.
 *
 * Keys (values are JSON):
 *   px!<project>    a proxy    {proxy | null, w}    last writer wins
 *
 * Held in memory too (every pull asks whether its project is a proxy, and
 * that answer must not cost a database read): the map is updated by the
 * handlers and reloaded from the database at open and after a batch failed
 * to commit (`load`). The merge is commutative and idempotent (last writer
 * by write order), so every region ends with the same proxies.
 */
import type { ProxyConfig } from "../../../protocol/proxy.js";
import type { Write } from "../../../protocol/registers.js";
import { Batch, getJson, type Handlers, olderWrite, type Projection, type ViewDb } from "./store.js";

export interface ProxyReads {
  /** Live proxies by project order, each with the write that set it. */
  proxies(): Array<{ proxy: ProxyConfig; w: Write }>;
  /** The proxy configuration of a project, or undefined (an ordinary project). Never reads the database. */
  proxyOf(project: string): ProxyConfig | undefined;
}

type Stored = { proxy: ProxyConfig | null; w: Write };

export class ProxyProjection implements Projection, ProxyReads {
  readonly #db: ViewDb;
  #live = new Map<string, { proxy: ProxyConfig; w: Write }>();

  constructor(db: ViewDb) {
    this.#db = db;
  }

  readonly handlers: Handlers = {
    "proxy.set": (batch, e, w) =>
      this.#set(
        batch,
        e.project,
        {
          project: e.project,
          endpoint: e.endpoint,
          ...(e.upstreamPrefix === undefined ? {} : { upstreamPrefix: e.upstreamPrefix }),
          freshnessSeconds: e.freshnessSeconds,
        },
        w,
      ),
    "proxy.deleted": (batch, e, w) => this.#set(batch, e.project, null, w),
  };

  async #set(batch: Batch, project: string, proxy: ProxyConfig | null, w: Write): Promise<void> {
    const key = `px!${project}`;
    const current = await getJson<Stored>(batch, key);
    if (current !== undefined && !olderWrite(current.w, w)) return;
    batch.put(key, JSON.stringify({ proxy, w } satisfies Stored));
    if (proxy === null) this.#live.delete(project);
    else this.#live.set(project, { proxy, w });
  }

  async load(): Promise<void> {
    const live = new Map<string, { proxy: ProxyConfig; w: Write }>();
    for (const [, raw] of await new Batch(this.#db).entriesUnder("px!")) {
      const v = JSON.parse(raw) as Stored;
      if (v.proxy !== null) live.set(v.proxy.project, { proxy: v.proxy, w: v.w });
    }
    this.#live = live;
  }

  proxies(): Array<{ proxy: ProxyConfig; w: Write }> {
    return [...this.#live.values()].sort((a, b) => (a.proxy.project < b.proxy.project ? -1 : 1));
  }

  proxyOf(project: string): ProxyConfig | undefined {
    return this.#live.get(project)?.proxy;
  }
}
