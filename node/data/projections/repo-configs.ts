/**
 * Repository configurations: the tag rule, durability and home table of each
 * scope (a repository, a prefix ending in `/`, or "" for everything), as
 * repository.configured events leave them. Part of the content projection
 * (content.ts applies the event and refolds the tags it affects); kept in
 * memory in full, since there are few scopes and every tag write asks.
 *
 * Keys (values are JSON):
 *   C!<scope>            tag rule of a scope      {tagMerge, durability?, w}  last writer wins
 *   H!<scope>!<epoch>    home region at an epoch  {home, w}                   last writer wins
 */
import type { RepositoryConfigured } from "../../../protocol/events.js";
import type { Write } from "../../../protocol/registers.js";
import type { HomeTable, TagMergeRule } from "../../../protocol/tag-merge.js";
import { Batch, getJson, olderWrite, type ViewDb } from "./store.js";

export interface RepoConfig {
  scope: string;
  tagMerge: TagMergeRule;
  homes: HomeTable;
  /** `async` or `sync(k)` (protocol/events.ts parseDurability). */
  durability: string;
}

interface StoredConfig {
  tagMerge: TagMergeRule;
  durability: string;
  w: Write;
  homes: Record<number, string>;
}

export class RepoConfigs {
  readonly #db: ViewDb;
  readonly #defaultRule: TagMergeRule;
  /** Tag rules by scope (all of them), kept in step with C!/H! (pending writes included while applying). */
  #configs = new Map<string, StoredConfig>();

  constructor(db: ViewDb, defaultRule: TagMergeRule) {
    this.#db = db;
    this.#defaultRule = defaultRule;
  }

  /** Stage the event's writes; true when the rule or a home changed (the cache then follows the batch). */
  async apply(batch: Batch, e: RepositoryConfigured, w: Write): Promise<boolean> {
    let changed = false;
    const ruleKey = `C!${e.scope}`;
    const current = await getJson<{ tagMerge: TagMergeRule; w: Write }>(batch, ruleKey);
    if (current === undefined || olderWrite(current.w, w)) {
      batch.put(ruleKey, JSON.stringify({ tagMerge: e.tagMerge, durability: e.durability, w }));
      changed = true;
    }
    if (e.home !== undefined) {
      const homeKey = `H!${e.scope}!${String(e.epoch ?? 0).padStart(12, "0")}`;
      const home = await getJson<{ home: string; w: Write }>(batch, homeKey);
      if (home === undefined || olderWrite(home.w, w)) {
        batch.put(homeKey, JSON.stringify({ home: e.home, w }));
        changed = true;
      }
    }
    if (changed) await this.load(batch);
    return changed;
  }

  /** Reload the cache from `source` (the committed database by default). */
  async load(source: Batch | ViewDb = this.#db): Promise<void> {
    const configs = new Map<string, StoredConfig>();
    const batch = source instanceof Batch ? source : new Batch(source);
    for (const [scope, raw] of await batch.entriesUnder("C!")) {
      const { tagMerge, durability, w } = JSON.parse(raw) as Omit<StoredConfig, "homes">;
      configs.set(scope, { tagMerge, durability: durability ?? "async", w, homes: {} });
    }
    for (const [suffix, raw] of await batch.entriesUnder("H!")) {
      const cut = suffix.lastIndexOf("!");
      const scope = suffix.slice(0, cut);
      const epoch = Number(suffix.slice(cut + 1));
      const config = configs.get(scope);
      if (config !== undefined) config.homes[epoch] = (JSON.parse(raw) as { home: string }).home;
    }
    this.#configs = configs;
  }

  /** The tag rule and home table in force for a repository (the longest matching scope). */
  configFor(repo: string): RepoConfig {
    let best: string | undefined;
    for (const scope of this.#configs.keys()) {
      const matches = scope === repo || scope === "" || (scope.endsWith("/") && repo.startsWith(scope));
      if (matches && (best === undefined || scope.length > best.length)) best = scope;
    }
    if (best === undefined) return { scope: "", tagMerge: this.#defaultRule, homes: {}, durability: "async" };
    const c = this.#configs.get(best)!;
    return { scope: best, tagMerge: c.tagMerge, homes: c.homes, durability: c.durability };
  }

  /** Every configured scope. */
  configs(): RepoConfig[] {
    return [...this.#configs].map(([scope, c]) => ({
      scope,
      tagMerge: c.tagMerge,
      homes: c.homes,
      durability: c.durability,
    }));
  }
}
