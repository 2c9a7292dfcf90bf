/**
 * The replication policies in force, as the worker reads them from its own
 * view of the local log (every region's policies): parsed once and kept
 * until a policy event is applied (`invalidate`); malformed ones are logged
 * and left out.
 */
import type { Logger } from "pino";
import type { MetadataView } from "../node/data/view.js";
import { effectivePolicies, type Policy, parsePolicy } from "../protocol/policy.js";

export class PolicyCache {
  readonly #view: MetadataView;
  readonly #region: string;
  readonly #logger: Logger;
  #policies: Promise<Policy[]> | undefined;

  constructor(view: MetadataView, region: string, logger: Logger) {
    this.#view = view;
    this.#region = region;
    this.#logger = logger;
  }

  /** Policies in force (every region's). */
  async policies(): Promise<Policy[]> {
    this.#policies ??= this.#load();
    return this.#policies;
  }

  /** Forget what was parsed (a policy was set or deleted). */
  invalidate(): void {
    this.#policies = undefined;
  }

  /** Policies deciding what flows from `source` to this region (the default mirror when none name the link). */
  async linkPolicies(source: string): Promise<Policy[]> {
    return effectivePolicies(await this.policies(), source, this.#region);
  }

  async #load(): Promise<Policy[]> {
    const out: Policy[] = [];
    for (const { name, policy } of await this.#view.admin.policies()) {
      try {
        out.push(parsePolicy(policy));
      } catch (err) {
        this.#logger.error({ err, policy: name }, "stored policy invalid; ignored");
      }
    }
    return out;
  }
}
