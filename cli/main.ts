/**
 * The `meridian` command line (bin/meridian).
 *
 *   meridian up [--regions NAMES] [--base-port N] [--data DIR] [--tls] [--auth | --no-auth] [--nats-cluster N] [--s3] [--nodes N]
 *   meridian rebuild [--data DIR] [--region NAME] [--nats URL] [--view DIR]
 *   meridian status [--data DIR] [--mesh FILE] [--json] [--watch [--interval S]]
 *   meridian lag [--data DIR] [--mesh FILE] [--json]          (the lag matrix: cli/lag.ts)
 *   meridian region stop|start NAME [--only ROLES] [--data DIR] (a running `up`: cli/region.ts)
 *   meridian policy|alerts|tag|undelete|repo|replication|retention …   (admin commands: cli/admin.ts)
 *   meridian import --from ENDPOINT …                          (migration: cli/import-command.ts)
 *   meridian failover|rebuild-region …                        (disaster recovery: cli/dr.ts)
 *   meridian backup --to DIR|s3://… | restore --from …        (a region's snapshot: cli/backup-command.ts)
 *   meridian config verify FILE [--kind K] | config reference   (cli/config.ts)
 *   meridian certs --dir DIR NAME...                          (mesh certificates: cli/certs.ts)
 *   meridian help [CMD] | meridian CMD --help
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  checkNatsClient,
  inboxPrefixOf,
  type NatsClientConfig,
  natsClientFromEnv,
} from "../node/data/nats-connect.js";
import { privateDirs } from "../node/data/private-files.js";
import { natsServersOf, parseMesh, regionOf } from "../protocol/mesh.js";
import { ADMIN_USAGE, admin } from "./admin.js";
import { audit } from "./audit.js";
import { BACKUP_USAGE, backupCommand } from "./backup-command.js";
import { CERTS_USAGE, certs } from "./certs.js";
import { CONFIG_USAGE, config } from "./config.js";
import { LAG_USAGE, lag } from "./lag.js";
import { rebuild } from "./rebuild.js";
import { region } from "./region.js";
import { status } from "./status.js";
import { MIN_INTERVAL_S, statusWatch, watchInterval } from "./status-watch.js";
import { up } from "./up.js";

const USAGE = `usage: meridian <command> [options]

commands:
  up        run a local mesh on 127.0.0.1: per region a nats-server, a registry node,
            and (with several regions) a control-plane peer and a replication worker
              --regions a,b,c   region names (default: a,b,c; one name runs a single region)
              --base-port N     first port (default 5000); region i uses N+10i (registry),
                                +1 (nats), +2 (peer gRPC), +3 (peer metrics), +4 (worker metrics);
                                the front door (several regions) uses N+5
              --data DIR        data directory, kept across restarts (default .meridian)
              --tls             registries and front door over HTTPS (certificates under DIR/certs)
              --auth            authentication on: an admin password in DIR/auth/admin-password
              --no-auth         authentication off although DIR/auth exists (refused without it; logged, audited)
              --nats-cluster N  N clustered nats-servers per region (1-5, default 1), streams with N replicas;
                                extra client ports N+10i+6…, route ports after the regions' blocks
              --s3              blobs in a local S3 server up runs (s3rver, 127.0.0.1:N+10R+9 for R regions;
                                data and credentials.json in DIR/s3), one bucket per region
              --nodes N         N registry nodes per region (1-5, default 1), each with its own data
                                directory (DIR/REGION/node-K); ports N+10R+10i+5…; mesh.json lists them
            every nats-server requires NKEY authentication (seeds in DIR/nats-auth, always);
            a process that dies is restarted (backoff 0.5 s doubling to 10 s, retried for as long
            as up runs); current pids and the control endpoint in DIR/up.json (mode 0600)
  region    region stop NAME | region start NAME: hold a region of a running 'up' down (its
            processes stopped, not restarted) or bring it back; waits until done
              --only ROLES      stop: only these of nats,node,peer,worker (e.g. node, for 'rebuild')
              --data DIR        data directory of that 'up' (default .meridian; reads DIR/up.json)
  status    regions, peer health, RTT, replication lag and backlog (a table, or --json)
              --data DIR        data directory of the mesh (default .meridian; reads DIR/mesh.json)
              --mesh FILE       a mesh file elsewhere
              --json            machine-readable output
              --watch           refresh until Ctrl-C (in place on a terminal; elsewhere snapshots
                                one after another, each after a blank line and its time)
              --interval S      seconds between refreshes with --watch (default 2, at least ${MIN_INTERVAL_S})
${LAG_USAGE}  rebuild   delete a node's metadata view and replay the region's log into it
              --data DIR        data directory of the mesh (default .meridian)
              --region NAME     region (default: the first in DIR/mesh.json, else local)
              --nats URL        the region's NATS (default: from DIR/mesh.json, else base port + 1)
              --token-key FILE  with auth: the mesh's token key, to check identity and policy events
                                (default DIR/auth/token-key.pem when it exists)
              --retired-key FILE  a retired token key's public half (repeatable)
              --view DIR        the view to rebuild (default <data>/<region>/view)
              --base-port N     as for 'up', to find the default NATS port
            signs in to NATS with MERIDIAN_NATS_* when set, else DIR/nats-auth/operator.seed
${BACKUP_USAGE}${CONFIG_USAGE}${CERTS_USAGE}
admin commands (through a region's admin API):
${ADMIN_USAGE}`;

/** The commands the admin API carries out (cli/admin.ts, cli/dr.ts, cli/identity.ts, cli/audit.ts). */
const ADMIN_COMMANDS = new Set([
  "policy",
  "alerts",
  "tag",
  "immutable",
  "webhook",
  "undelete",
  "repo",
  "replication",
  "retention",
  "endpoint",
  "promote",
  "gate",
  "pull-policy",
  "import",
  "failover",
  "rebuild-region",
  "whoami",
  "user",
  "robot",
  "project",
  "audit",
  "quota",
  "oidc",
  "scrub",
  "gc",
]);

/**
 * The usage of one command, cut from USAGE so the two never disagree: every
 * entry whose line starts with the command (two spaces in), with the deeper
 * indented lines under it, and for an admin command the options they all
 * take (the four-space paragraph at the end). Undefined for an unknown one.
 */
function usageOf(command: string): string | undefined {
  const lines = USAGE.split("\n");
  const picked: string[] = [];
  let inEntry = false;
  for (const line of lines) {
    const entry = /^ {2}(\S+)/.exec(line);
    if (entry !== null) inEntry = entry[1] === command;
    else if (!/^ {6}/.test(line)) inEntry = false;
    if (inEntry) picked.push(line);
  }
  if (picked.length === 0) return undefined;
  const common = ADMIN_COMMANDS.has(command) ? lines.filter((l) => /^ {4}\S/.test(l)) : [];
  return `usage: meridian ${command} [options]\n\n${[...picked, ...common].join("\n")}\n`;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // `meridian CMD --help` (or -h) anywhere among its arguments: that command's usage, nothing run.
  if (command !== undefined && !command.startsWith("-") && command !== "help") {
    if (rest.includes("--help") || rest.includes("-h")) return help(command);
  }
  switch (command) {
    case "up": {
      const { values } = parseArgs({
        args: rest,
        options: {
          regions: { type: "string", default: "a,b,c" },
          "base-port": { type: "string", default: "5000" },
          data: { type: "string", default: ".meridian" },
          tls: { type: "boolean", default: false },
          auth: { type: "boolean", default: false },
          "no-auth": { type: "boolean", default: false },
          "nats-cluster": { type: "string", default: "1" },
          s3: { type: "boolean", default: false },
          nodes: { type: "string", default: "1" },
        },
      });
      const natsCluster = Number(values["nats-cluster"]);
      return up({
        regions: values.regions
          .split(",")
          .map((r) => r.trim())
          .filter(Boolean),
        basePort: port(values["base-port"]),
        dataDir: values.data,
        tls: values.tls,
        auth: values.auth,
        noAuth: values["no-auth"],
        natsCluster,
        s3: values.s3,
        nodes: Number(values.nodes),
      });
    }
    case "rebuild": {
      const { values } = parseArgs({
        args: rest,
        options: {
          data: { type: "string", default: ".meridian" },
          region: { type: "string" },
          nats: { type: "string" },
          view: { type: "string" },
          "base-port": { type: "string", default: "5000" },
          "token-key": { type: "string" },
          "retired-key": { type: "string", multiple: true },
        },
      });
      const defaultKey = join(values.data, "auth", "token-key.pem");
      const tokenKeyFile = values["token-key"] ?? (existsSync(defaultKey) ? defaultKey : undefined);
      // The region's NATS: --nats, else the mesh file `up` wrote, else the single-region port layout.
      const meshFile = join(values.data, "mesh.json");
      const mesh = existsSync(meshFile) ? parseMesh(JSON.parse(readFileSync(meshFile, "utf8"))) : undefined;
      const region = values.region ?? mesh?.regions[0]?.name ?? "local";
      const nats =
        values.nats ??
        (mesh ? natsServersOf(regionOf(mesh, region)) : `nats://127.0.0.1:${port(values["base-port"]) + 1}`);
      privateDirs([]);
      return rebuild({
        dataDir: values.data,
        region,
        nats,
        natsClient: operatorNatsClient(values.data),
        viewDir: values.view,
        tokenKeyFile,
        retiredKeyFiles: values["retired-key"] ?? [],
      });
    }
    case "status": {
      const { values } = parseArgs({
        args: rest,
        options: {
          data: { type: "string", default: ".meridian" },
          mesh: { type: "string" },
          json: { type: "boolean", default: false },
          watch: { type: "boolean", default: false },
          interval: { type: "string" },
        },
      });
      const options = { dataDir: values.data, meshFile: values.mesh, json: values.json };
      if (!values.watch) {
        if (values.interval !== undefined) throw new UsageError("--interval is for status --watch");
        return status(options);
      }
      const intervalS = watchInterval(values.interval);
      if (typeof intervalS === "string") throw new UsageError(intervalS);
      return statusWatch({ ...options, intervalS });
    }
    case "lag": {
      const { values } = parseArgs({
        args: rest,
        options: {
          data: { type: "string", default: ".meridian" },
          mesh: { type: "string" },
          json: { type: "boolean", default: false },
        },
      });
      return lag({ dataDir: values.data, meshFile: values.mesh, json: values.json });
    }
    case "region": {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: { data: { type: "string", default: ".meridian" }, only: { type: "string" } },
      });
      const [action, name] = positionals;
      if ((action !== "stop" && action !== "start") || name === undefined || positionals.length !== 2)
        throw new UsageError("usage: meridian region stop|start NAME [--only ROLES] [--data DIR]");
      if (values.only !== undefined && action !== "stop") throw new UsageError("--only is for region stop");
      return region(action, name, values.data, values.only);
    }
    case "audit":
      return audit(rest);
    case "backup":
    case "restore":
      return backupCommand(command, rest, operatorNatsClient);
    case "config":
      return config(rest);
    case "certs":
      return certs(rest);
    case undefined:
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    case "help":
      if (rest[0] !== undefined) return help(rest[0]);
      process.stdout.write(USAGE);
      return 0;
    default:
      if (ADMIN_COMMANDS.has(command)) return admin(command, rest);
      process.stderr.write(
        `meridian: unknown command "${command}"${closest(command)}; the commands:\n${USAGE}`,
      );
      return 2;
  }
}

/** `meridian help CMD`: its usage on stdout (0), or the unknown command and the whole usage (2). */
function help(command: string): number {
  const text = usageOf(command);
  if (text === undefined) {
    process.stderr.write(
      `meridian: unknown command "${command}"${closest(command)}; the commands:\n${USAGE}`,
    );
    return 2;
  }
  process.stdout.write(text);
  return 0;
}

/** " (did you mean \"status\"?)" when a command is one edit or a swapped pair from the word typed. */
function closest(word: string): string {
  const names = new Set(USAGE.split("\n").flatMap((l) => /^ {2}([a-z][\w-]*)/.exec(l)?.[1] ?? []));
  for (const name of names) if (near(word, name)) return ` (did you mean "${name}"?)`;
  return "";
}

/** One letter added, dropped, changed, or two neighbours swapped. Pure. */
function near(a: string, b: string): boolean {
  if (a === b || Math.abs(a.length - b.length) > 1) return false;
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  if (a.length === b.length)
    return (
      a.slice(i + 1) === b.slice(i + 1) ||
      (a[i] === b[i + 1] && a[i + 1] === b[i] && a.slice(i + 2) === b.slice(i + 2))
    );
  return a.length > b.length ? a.slice(i + 1) === b.slice(i) : a.slice(i) === b.slice(i + 1);
}

/**
 * NATS credentials of the admin tooling: MERIDIAN_NATS_* when any is set,
 * else the operator seed of `meridian up` under <data>/nats-auth, if there.
 */
function operatorNatsClient(dataDir: string): NatsClientConfig | undefined {
  const problems: string[] = [];
  const fromEnv = natsClientFromEnv(process.env, problems);
  const given = Object.entries(process.env).some(
    ([k, v]) => k.startsWith("MERIDIAN_NATS_") && k !== "MERIDIAN_NATS_SERVERS" && v,
  );
  if (given) {
    const config = checkNatsClient(fromEnv, problems, "MERIDIAN_NATS_*");
    if (problems.length > 0) throw new UsageError(problems.join("; "));
    return config;
  }
  const seedFile = join(dataDir, "nats-auth", "operator.seed");
  return existsSync(seedFile) ? { seedFile, inboxPrefix: inboxPrefixOf("operator") } : undefined;
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
    // A usage problem (a bad flag or value): the message and where the command's usage is.
    const usage =
      err instanceof UsageError || (typeof err?.code === "string" && err.code.startsWith("ERR_PARSE_ARGS_"));
    const command = process.argv[2];
    process.stderr.write(
      usage
        ? `meridian: ${err.message}\n  see 'meridian help${command === undefined || usageOf(command) === undefined ? "" : ` ${command}`}'\n`
        : `meridian: ${err?.stack ?? err}\n`,
    );
    process.exitCode = usage ? 2 : 1;
  },
);
