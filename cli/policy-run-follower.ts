/**
 * `policy run --wait`'s progress (cli/policy-commands.ts).
 */
import { PeerClient, peerCredentials } from "../mesh-client/peer-client.js";
import type { Mesh } from "../protocol/mesh.js";
import { coversLink, type Policy, selectsRepository } from "../protocol/policy.js";
import { differingRepositories } from "../protocol/summary.js";

/**
 * How far a policy run is, as the peers tell it: for every link the policy
 * covers, the source's repositories the policy selects and how many of them
 * the destination holds in the same state (protocol/summary.ts). Tag and
 * kind filters may keep a repository from ever matching whole, so 100% is
 * not promised; the run's outcome is what counts. A region that does not
 * answer counts none of its links this time.
 */
export class RunFollower {
  readonly #peers = new Map<string, PeerClient>();
  readonly #links: Array<[string, string]> = [];

  constructor(
    mesh: Mesh,
    readonly policy: Policy,
  ) {
    const names = mesh.regions.map((r) => r.name);
    const credentials = peerCredentials(mesh, names[0]!);
    for (const src of names)
      for (const dst of names) if (coversLink(policy, src, dst)) this.#links.push([src, dst]);
    for (const r of mesh.regions)
      if (this.#links.some(([s, d]) => s === r.name || d === r.name))
        this.#peers.set(r.name, new PeerClient(r.name, r.grpc, credentials));
  }

  async inStep(): Promise<{ done: number; total: number }> {
    const summaries = new Map(
      await Promise.all(
        [...this.#peers].map(
          async ([name, peer]) => [name, await peer.summarize("").catch(() => undefined)] as const,
        ),
      ),
    );
    let done = 0;
    let total = 0;
    for (const [src, dst] of this.#links) {
      const theirs = summaries.get(src);
      const mine = summaries.get(dst);
      if (theirs === undefined || mine === undefined) continue;
      const selected = theirs.repos.filter((r) => selectsRepository(this.policy, r.repo));
      const differing = new Set(differingRepositories(mine.repos, selected));
      total += selected.length;
      done += selected.filter((r) => !differing.has(r.repo)).length;
    }
    return { done, total };
  }

  close(): void {
    for (const peer of this.#peers.values()) peer.close();
  }
}
