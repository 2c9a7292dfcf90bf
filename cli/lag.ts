/**
 * `meridian lag [--json]`: the region × region replication-lag matrix, one
 * row per destination, one column per source, each cell what the
 * destination's worker says of that link (mesh-client/mesh-status.ts
 * collectStatus): "p50/p99 (pending)" — the lag quantiles over the workers'
 * recent window (RECENT_LAG_WINDOW_MS; "-" when nothing replicated in it)
 * and the events of the source not yet handled. "-" on the diagonal; "?"
 * where the destination's worker did not answer (its metrics page gave no
 * figure for the link).
 *
 * Bounded as `status` is (collectStatus's deadlines, regions asked in
 * parallel): it ends within a few seconds even with a region frozen. Exit 1
 * when a region's peer did not answer, naming it on stderr with what to do;
 * 2 when the mesh file cannot be read.
 */
import {
  collectStatus,
  type LinkStatus,
  RECENT_WINDOW_SECONDS,
  type RegionStatus,
} from "../mesh-client/mesh-status.js";
import type { Mesh } from "../protocol/mesh.js";
import { heldRegions, LINGER_MS, readStatusMesh } from "./status.js";
import { table } from "./table.js";

export const LAG_USAGE = `  lag       replication lag matrix: rows are destinations, columns sources, each cell
            "p50/p99 (pending)" over the last ${RECENT_WINDOW_SECONDS / 60} minutes; "-" on the diagonal, "?" where a
            region's worker did not answer; exit 1 naming the regions that are down
              --data DIR        data directory of the mesh (default .meridian; reads DIR/mesh.json)
              --mesh FILE       a mesh file elsewhere
              --json            machine-readable output
`;

/** The matrix as --json prints it: `links[dst][src]`, null where the worker did not answer. */
export interface LagMatrix {
  regions: string[];
  windowSeconds: number;
  links: Record<string, Record<string, LinkStatus | null>>;
  unreachable: string[];
}

export async function lag(options: { dataDir: string; meshFile?: string; json: boolean }): Promise<number> {
  const mesh = readStatusMesh("lag", options);
  if (mesh === undefined) return 2;
  const report = await collectStatus(mesh);
  const matrix = lagMatrix(mesh, report);
  process.stdout.write(options.json ? `${JSON.stringify(matrix, null, 2)}\n` : formatLagMatrix(matrix));
  const held = heldRegions(options.dataDir);
  for (const r of report.filter((x) => !x.up))
    process.stderr.write(
      `meridian lag: region ${r.region} is unreachable: ${r.error ?? "no answer"}; ${
        held.has(r.region)
          ? `it is held down by 'meridian region stop' ('meridian region start ${r.region}' brings it back)`
          : `its row shows "?"; check it with 'meridian status' (is 'meridian up' running?)`
      }\n`,
    );
  const code = matrix.unreachable.length === 0 ? 0 : 1;
  // As in `status`: a frozen peer's connection attempt may outlive the call (cli/status.ts).
  setTimeout(() => process.exit(code), LINGER_MS).unref();
  return code;
}

/** The matrix of a collection (pure). A link is null when its worker gave no figure for it. */
export function lagMatrix(mesh: Mesh, report: readonly RegionStatus[]): LagMatrix {
  const regions = mesh.regions.map((r) => r.name);
  const links: LagMatrix["links"] = {};
  for (const dst of report) {
    const row: Record<string, LinkStatus | null> = {};
    for (const src of regions) {
      if (src === dst.region) continue;
      const link = dst.replication[src];
      row[src] = link === undefined || link.pending === undefined ? null : link;
    }
    links[dst.region] = row;
  }
  return {
    regions,
    windowSeconds: RECENT_WINDOW_SECONDS,
    links,
    unreachable: report.filter((r) => !r.up).map((r) => r.region),
  };
}

/** The table: a header of sources, a row per destination (a DOWN mark on an unreachable one). */
export function formatLagMatrix(matrix: LagMatrix): string {
  const rows: string[][] = [["dst \\ src", ...matrix.regions]];
  const down = new Set(matrix.unreachable);
  for (const dst of matrix.regions) {
    const row = [down.has(dst) ? `${dst} (DOWN)` : dst];
    for (const src of matrix.regions) {
      if (src === dst) {
        row.push("-");
        continue;
      }
      const link = matrix.links[dst]?.[src];
      row.push(link === null || link === undefined ? "?" : cell(link));
    }
    rows.push(row);
  }
  return `${table(rows)}cells: lag p50/p99 over the last ${matrix.windowSeconds / 60}m (events pending); "?": no answer from the row's worker\n`;
}

function cell(link: LinkStatus): string {
  return `${ms(link.lagP50Ms)}/${ms(link.lagP99Ms)} (${link.pending ?? "?"})`;
}

/** A lag figure: 850ms, 1.2s, 3m05s; "-" when nothing replicated in the window. */
function ms(v: number | undefined): string {
  if (v === undefined) return "-";
  if (v < 1000) return `${Math.round(v)}ms`;
  if (v < 60_000) return `${(v / 1000).toFixed(1)}s`;
  const s = Math.round(v / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}
