/**
 * Immutable-tag rules (protocol/immutable-tags.ts), as immutability.set /
 * immutability.deleted events leave them. Part of the content projection
 * (content.ts applies the events and refolds the tags a rule change
 * affects). Every event of every rule name is kept, not only the latest:
 * which rule was in force at a write's place in the order decides the fold,
 * so a rule deleted later still explains the writes it rejected. Kept in
 * memory in full (rules are few; every tag write and push asks).
 *
 * Keys (values are JSON):
 *   I!<name>!<hlc>!<origin>!<id>   one event of a rule   RuleWrite (rule null = deleted)
 */
import type { ImmutabilityDeleted, ImmutabilitySet } from "../../../protocol/events.js";
import {
  type ImmutabilityRule,
  protectingRuleNow,
  type RuleWrite,
  ruleCoversRepository,
  ruleMatches,
} from "../../../protocol/immutable-tags.js";
import type { Write } from "../../../protocol/registers.js";
import { compareWrites } from "../../../protocol/tag-merge.js";
import { Batch, hlcKey, type ViewDb } from "./store.js";

/** A rule in force, with who made it when. */
export interface ImmutabilityRecord extends ImmutabilityRule {
  actor: string;
  at: string;
  origin: string;
}

/** What a key holds: the event as a RuleWrite, with its rule's name (a deletion has no rule) and author. */
interface Stored extends RuleWrite {
  name: string;
  actor: string;
  at: string;
}

export interface ImmutabilityReads {
  /** Every rule in force now (each name's latest event is a set), by name. Synchronous. */
  rules(): ImmutabilityRecord[];
  /** The rule of that name in force now, or undefined. Synchronous. */
  rule(name: string): ImmutabilityRecord | undefined;
  /** The name of the rule protecting `repo:tag` now, or undefined. Synchronous. */
  protectingNow(repo: string, tag: string): string | undefined;
  /** Each rule name's events (what protocol/immutable-tags.ts `protectingRule` folds). Synchronous. */
  histories(): RuleWrite[][];
  /** Whether any rule event ever (deletions' predecessors included) covers `repo:tag`. Synchronous. */
  everCovers(repo: string, tag: string): boolean;
}

export class ImmutabilityRules implements ImmutabilityReads {
  readonly #db: ViewDb;
  #byName = new Map<string, Stored[]>();

  constructor(db: ViewDb) {
    this.#db = db;
  }

  /** Stage the event and take it into the cache; returns every version of the rule seen (old globs too). */
  apply(batch: Batch, e: ImmutabilitySet | ImmutabilityDeleted, w: Write): ImmutabilityRule[] {
    const rule =
      e.type === "immutability.set" ? { name: e.name, repositories: e.repositories, tags: e.tags } : null;
    const entry: Stored = {
      name: e.name,
      rule,
      hlc: w.hlc,
      origin: w.origin,
      eventId: w.id,
      actor: w.actor,
      at: w.at,
    };
    batch.put(`I!${e.name}!${hlcKey(w.hlc)}!${w.origin}!${w.id}`, JSON.stringify(entry));
    const events = this.#byName.get(e.name) ?? [];
    if (!events.some((x) => x.eventId === w.id)) events.push(entry);
    this.#byName.set(e.name, events);
    return events.flatMap((x) => (x.rule === null ? [] : [x.rule]));
  }

  /** Reload the cache from the committed database. */
  async load(source: ViewDb = this.#db): Promise<void> {
    const byName = new Map<string, Stored[]>();
    for (const [, raw] of await new Batch(source).entriesUnder("I!")) {
      const entry = JSON.parse(raw) as Stored;
      byName.set(entry.name, [...(byName.get(entry.name) ?? []), entry]);
    }
    this.#byName = byName;
  }

  rules(): ImmutabilityRecord[] {
    const out: ImmutabilityRecord[] = [];
    for (const name of [...this.#byName.keys()].sort()) {
      const rule = this.rule(name);
      if (rule !== undefined) out.push(rule);
    }
    return out;
  }

  rule(name: string): ImmutabilityRecord | undefined {
    let latest: Stored | undefined;
    for (const e of this.#byName.get(name) ?? [])
      if (latest === undefined || compareWrites(asTag(latest), asTag(e)) < 0) latest = e;
    if (latest?.rule == null) return undefined;
    return { ...latest.rule, actor: latest.actor, at: latest.at, origin: latest.origin };
  }

  protectingNow(repo: string, tag: string): string | undefined {
    if (this.#byName.size === 0) return undefined;
    return protectingRuleNow(this.#byName.values(), repo, tag);
  }

  histories(): RuleWrite[][] {
    return [...this.#byName.values()];
  }

  everCovers(repo: string, tag: string): boolean {
    for (const events of this.#byName.values())
      for (const e of events) if (e.rule !== null && ruleMatches(e.rule, repo, tag)) return true;
    return false;
  }

  /** Whether any version of these rules can match a tag of `repo`. */
  static coversRepository(rules: readonly ImmutabilityRule[], repo: string): boolean {
    return rules.some((r) => ruleCoversRepository(r, repo));
  }
}

function asTag(e: RuleWrite) {
  return { digest: undefined, hlc: e.hlc, origin: e.origin, eventId: e.eventId };
}
