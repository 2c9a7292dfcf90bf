/**
 * The upload sessions this node has opened and not yet seen end, counted
 * overall, per repository and per owner (an identity, or an address for
 * anonymous clients), against three caps (node/config.ts `uploads`). One
 * session more than a cap allows is refused with UploadLimitError (429
 * TOOMANYREQUESTS): thousands of sessions opened in a burst cannot pile up.
 *
 * A session leaves the count when it completes or is cancelled through this
 * node, or when `reconcile` finds it gone from the store (expired by the
 * purge, or finished through another node sharing the store). The caps are
 * per node: N nodes of a region admit up to N times as many.
 */
import { UploadLimitError } from "../../protocol/errors.js";

export interface UploadSessionLimits {
  maxSessions: number;
  maxSessionsPerClient: number;
  maxSessionsPerRepository: number;
}

export class UploadSessions {
  readonly #limits: UploadSessionLimits;
  readonly #open = new Map<string, { repo: string; owner: string }>();
  readonly #perRepo = new Map<string, number>();
  readonly #perOwner = new Map<string, number>();

  constructor(limits: UploadSessionLimits) {
    this.#limits = limits;
  }

  get size(): number {
    return this.#open.size;
  }

  /** Throw UploadLimitError when one more session for `repo` by `owner` would exceed a cap. */
  check(repo: string, owner: string): void {
    const l = this.#limits;
    if (this.#open.size >= l.maxSessions)
      throw new UploadLimitError("too many upload sessions open; retry later", {
        detail: { limit: l.maxSessions },
      });
    if ((this.#perRepo.get(repo) ?? 0) >= l.maxSessionsPerRepository)
      throw new UploadLimitError("too many upload sessions open for this repository; retry later", {
        detail: { limit: l.maxSessionsPerRepository },
      });
    if ((this.#perOwner.get(owner) ?? 0) >= l.maxSessionsPerClient)
      throw new UploadLimitError("too many upload sessions open by this client; finish or cancel some", {
        detail: { limit: l.maxSessionsPerClient },
      });
  }

  /** Count a session just opened. */
  add(id: string, repo: string, owner: string): void {
    if (this.#open.has(id)) return;
    this.#open.set(id, { repo, owner });
    bump(this.#perRepo, repo, 1);
    bump(this.#perOwner, owner, 1);
  }

  /** A session ended (completed, cancelled, expired); unknown ids are ignored. */
  remove(id: string): void {
    const s = this.#open.get(id);
    if (s === undefined) return;
    this.#open.delete(id);
    bump(this.#perRepo, s.repo, -1);
    bump(this.#perOwner, s.owner, -1);
  }

  /** Drop every counted session for which `exists` says no (after a purge). */
  async reconcile(exists: (id: string) => Promise<boolean>): Promise<number> {
    let gone = 0;
    for (const id of [...this.#open.keys()]) {
      if (!(await exists(id))) {
        this.remove(id);
        gone++;
      }
    }
    return gone;
  }
}

function bump(map: Map<string, number>, key: string, by: number): void {
  const n = (map.get(key) ?? 0) + by;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}
