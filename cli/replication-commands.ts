/**
 * `replication status REPO@DIGEST | REPO:TAG`: where one artifact has
 * replicated, per region (present, deleted, failed, pending, not selected,
 * absent, unknown), and for a tag the digest each region serves. The
 * computation is mesh-client/locate.ts's (the dashboard's search shares it).
 * Dispatched by cli/admin.ts.
 */
import { locate } from "../mesh-client/locate.js";
import { MeridianError } from "../protocol/errors.js";
import { type Command, CommandError, type Context, JSON_OPT, printJson, UsageError } from "./admin-client.js";
import { table } from "./table.js";

export const REPLICATION_USAGE = `  replication status REPO@DIGEST|REPO:TAG  per region: present, failed, pending or not selected
`;

export const REPLICATION_COMMANDS: Record<string, Command> = {
  "replication status": { args: ["REPO@DIGEST|REPO:TAG"], options: JSON_OPT, run: replicationStatus },
};

// ---------------------------------------------------------------- replication status

async function replicationStatus(ctx: Context): Promise<number> {
  const ref = ctx.positionals[0]!;
  if (!ref.includes("@") && !ref.includes(":"))
    throw new UsageError(`want REPO@DIGEST or REPO:TAG, got "${ref}"`);
  const mesh = ctx.mesh();
  const authorization = ctx.api().authorization;
  let found: Awaited<ReturnType<typeof locate>>;
  try {
    found = await locate(mesh, ref, authorization === undefined ? {} : { authorization });
  } catch (err) {
    // A malformed name, tag or digest (the same everywhere): say so once.
    if (err instanceof MeridianError) throw new CommandError(err.message, [], 400);
    throw err;
  }
  const states = found.regions;
  if (ctx.json)
    printJson({
      repo: found.repository,
      ...(found.tag === undefined ? {} : { tag: found.tag }),
      digest: found.digest ?? null,
      regions: states,
    });
  else if (found.tag === undefined) {
    const rows = [["region", "state", "detail"]];
    for (const s of states) rows.push([s.region, s.state, s.detail]);
    process.stdout.write(table(rows));
  } else {
    process.stdout.write(`${found.repository}:${found.tag}  ${found.digest ?? "served by no region"}\n`);
    const rows = [["region", "state", "digest", "detail"]];
    for (const s of states) rows.push([s.region, s.state, s.digest ?? "-", s.detail]);
    process.stdout.write(table(rows));
  }
  return states.some((s) => s.state === "unknown") ? 1 : 0;
}
