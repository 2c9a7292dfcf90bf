/**
 * The `meridian` command line (bin/meridian).
 *
 *   meridian up [--regions NAMES] [--base-port N] [--data DIR]
 *   meridian rebuild [--data DIR] [--region NAME] [--nats URL] [--view DIR]
 *   meridian status [--data DIR] [--mesh FILE] [--json]
 *   meridian help
 */
import { parseArgs } from "node:util";
import { rebuild } from "./rebuild.js";
import { status } from "./status.js";
import { up } from "./up.js";

const USAGE = `usage: meridian <command> [options]

commands:
  up        run a local mesh on 127.0.0.1 (nats-server + registry node per region)
              --regions a,b,c   region names (default: local)
              --base-port N     first port (default 5000); region i uses N+10i (registry), N+10i+1 (nats)
              --data DIR        data directory, kept across restarts (default .meridian)
  status    regions, peer health, RTT, replication lag and backlog (a table, or --json)
              --data DIR        data directory of the mesh (default .meridian; reads DIR/mesh.json)
              --mesh FILE       a mesh file elsewhere
              --json            machine-readable output
  rebuild   delete a node's metadata view and replay the region's log into it
              --data DIR        data directory of the mesh (default .meridian)
              --region NAME     region (default: local)
              --nats URL        the region's NATS (default: the port 'up' gives the region)
              --view DIR        the view to rebuild (default <data>/<region>/view)
              --base-port N     as for 'up', to find the default NATS port
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "up": {
      const { values } = parseArgs({
        args: rest,
        options: {
          regions: { type: "string", default: "local" },
          "base-port": { type: "string", default: "5000" },
          data: { type: "string", default: ".meridian" },
        },
      });
      return up({
        regions: values.regions
          .split(",")
          .map((r) => r.trim())
          .filter(Boolean),
        basePort: port(values["base-port"]),
        dataDir: values.data,
      });
    }
    case "rebuild": {
      const { values } = parseArgs({
        args: rest,
        options: {
          data: { type: "string", default: ".meridian" },
          region: { type: "string", default: "local" },
          nats: { type: "string" },
          view: { type: "string" },
          "base-port": { type: "string", default: "5000" },
          "region-index": { type: "string", default: "0" },
        },
      });
      return rebuild({
        dataDir: values.data,
        region: values.region,
        nats:
          values.nats ??
          `nats://127.0.0.1:${port(values["base-port"]) + 10 * Number(values["region-index"]) + 1}`,
        viewDir: values.view,
      });
    }
    case "status": {
      const { values } = parseArgs({
        args: rest,
        options: {
          data: { type: "string", default: ".meridian" },
          mesh: { type: "string" },
          json: { type: "boolean", default: false },
        },
      });
      return status({ dataDir: values.data, meshFile: values.mesh, json: values.json });
    }
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`meridian: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65000) throw new UsageError(`invalid port: ${value}`);
  return n;
}

class UsageError extends Error {}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(
      `meridian: ${err instanceof UsageError || err?.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" ? err.message : (err?.stack ?? err)}\n`,
    );
    process.exitCode = err instanceof UsageError ? 2 : 1;
  },
);
