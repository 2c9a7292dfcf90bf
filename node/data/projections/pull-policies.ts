/**
 * Block-pull policies (issue 18, item 3; protocol/pull-policy.ts), one per
 * project, as `pull-policy.set` / `pull-policy.deleted` leave them.
 *
 * Keys (values are JSON):
 *   pp!<project>    {value: PullPolicy | null, w}    last writer wins (by write order)
 */
import type { PullPolicy } from "../../../protocol/pull-policy.js";
import type { Write } from "../../../protocol/registers.js";
import { Batch, getJson, type Handlers, type Projection, putRegister, type ViewDb } from "./store.js";

export interface StoredPullPolicy {
  policy: PullPolicy;
  w: Write;
}

export interface PullPolicyReads {
  /** The project's policy in force, or undefined. */
  pullPolicy(project: string): Promise<StoredPullPolicy | undefined>;
  /** Every policy in force, by project. */
  pullPolicies(): Promise<StoredPullPolicy[]>;
}

export class PullPolicyProjection implements Projection, PullPolicyReads {
  readonly #db: ViewDb;

  constructor(db: ViewDb) {
    this.#db = db;
  }

  readonly handlers: Handlers = {
    "pull-policy.set": (batch, e, w) => putRegister(batch, `pp!${e.policy.project}`, w, () => e.policy),
    "pull-policy.deleted": (batch, e, w) => putRegister(batch, `pp!${e.project}`, w, () => null),
  };

  async pullPolicy(project: string): Promise<StoredPullPolicy | undefined> {
    const v = await getJson<{ value: PullPolicy | null; w: Write }>(this.#db, `pp!${project}`);
    return v?.value == null ? undefined : { policy: v.value, w: v.w };
  }

  async pullPolicies(): Promise<StoredPullPolicy[]> {
    const out: StoredPullPolicy[] = [];
    for (const [, raw] of await new Batch(this.#db).entriesUnder("pp!")) {
      const v = JSON.parse(raw) as { value: PullPolicy | null; w: Write };
      if (v.value !== null) out.push({ policy: v.value, w: v.w });
    }
    return out;
  }
}
