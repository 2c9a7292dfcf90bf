/**
 * Failover: re-homing every scope of one region to another at a new epoch,
 * refused while the old home may still accept writes. Registry.failover
 * (./registry.ts) calls it; the admin API's `POST /admin/failover` reaches it.
 */
import type { Logger } from "pino";
import { FailoverRefusedError, UnsupportedError } from "../../protocol/errors.js";
import type { EventBody } from "../../protocol/events.js";
import type { CommitStep } from "./commit-step.js";
import type { RegionLink } from "./registry.js";
import type { MetadataView } from "./view.js";

export interface FailoverContext {
  region: string;
  view: MetadataView;
  commits: CommitStep;
  logger: Logger;
  /** The rest of the mesh; absent for a region on its own. */
  mesh: RegionLink | undefined;
}

/**
 * Fail over: every scope whose home is `from` now is re-homed to `to` at a
 * new failover epoch (one more than the highest any scope has), by one
 * `repository.configured` each, appended in this region. The merge rule
 * then counts only the new home's writes at the new epoch above the old
 * home's, and the old home, on return, sees the higher epoch and refuses
 * home writes until it has caught up (control-plane/fence.ts).
 *
 * Refused (FailoverRefusedError) unless `force`, when this region's peer
 * sees `from` up, or saw it less than a lease ago: until its lease lapses
 * the old home may still be accepting writes, and two homes must never
 * both accept them. `force` is for an operator who knows `from` is dead
 * (or accepts losing what it acknowledges meanwhile).
 */
export async function failover(
  ctx: FailoverContext,
  from: string,
  to: string,
  force: boolean,
  actor: string,
): Promise<{ from: string; to: string; epoch: number; scopes: string[] }> {
  if (from === to) throw new UnsupportedError("failover: --from and --to name the same region");
  const view = ctx.mesh?.peerView();
  if (ctx.mesh !== undefined && view === undefined && !force)
    throw new FailoverRefusedError(
      "this region's control-plane peer has not answered yet; retry in a moment",
    );
  if (view !== undefined) {
    const known = new Set([ctx.region, ...view.peers.map((p) => p.region)]);
    for (const r of [from, to])
      if (!known.has(r))
        throw new UnsupportedError(`failover: no region ${r} in the mesh`, { detail: { region: r } });
    if (!force) {
      if (from === ctx.region)
        throw new FailoverRefusedError(
          `region ${from} is the one answering this request, so it is up; fail over from another region`,
        );
      const old = view.peers.find((p) => p.region === from)!;
      const since = Date.now() - old.lastSeenAtMs;
      if (old.up)
        throw new FailoverRefusedError(
          `region ${from} is up (answered ${(since / 1000).toFixed(1)} s ago); failing over now would let two regions write as home. Use --force only if it is known dead.`,
          { detail: { from, up: true } },
        );
      if (old.lastSeenAtMs > 0 && since < view.leaseMs)
        throw new FailoverRefusedError(
          `region ${from} was last seen ${(since / 1000).toFixed(1)} s ago; its lease (${(view.leaseMs / 1000).toFixed(1)} s) has not lapsed, so it may still accept writes. Retry in ${((view.leaseMs - since) / 1000).toFixed(1)} s.`,
          { detail: { from, lastSeenAgoMs: since, leaseMs: view.leaseMs } },
        );
    }
  }
  const configs = ctx.view.content.configs();
  const epochOf = (homes: Record<number, string>) => Math.max(0, ...Object.keys(homes).map(Number));
  const epoch = Math.max(0, ...configs.map((c) => epochOf(c.homes))) + 1;
  const scopes: string[] = [];
  for (const c of configs) {
    if (c.homes[epochOf(c.homes)] !== from) continue;
    const body = {
      type: "repository.configured",
      scope: c.scope,
      tagMerge: c.tagMerge,
      home: to,
      ...(c.durability === "async" ? {} : { durability: c.durability }),
    } as EventBody;
    await ctx.commits.commit(body, actor, undefined, epoch);
    scopes.push(c.scope);
  }
  // The one record of the whole failover, announced to webhooks as io.meridian.failover
  // (protocol/webhook.ts); after the scopes, so a receiver told of it finds them re-homed.
  await ctx.commits.commit(
    { type: "failover.recorded", from, to, scopes, force } as EventBody,
    actor,
    undefined,
    epoch,
  );
  ctx.logger.warn({ from, to, epoch, scopes, force }, "failover");
  return { from, to, epoch, scopes };
}
