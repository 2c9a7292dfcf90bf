/**
 * The admin commands of `meridian`, one file per group: replication
 * policies and alerts (policy-commands.ts), tags, undelete and repository
 * deletion (repository-commands.ts), where one artifact has replicated
 * (replication-commands.ts), retention rules, plans and runs
 * (retention-commands.ts), disaster recovery (dr.ts), identities
 * (identity.ts). This file puts their usage together and dispatches
 * `meridian <command> …` to the right one, with the options they all take.
 * They talk to a region's admin API (node/http/admin.ts) at the registry URL
 * in <data>/mesh.json (the first region that answers, or --region:
 * admin-client.ts AdminClient); `policy plan` and
 * `replication status` also ask every region's peer, node and worker.
 *
 * Output is fixed lines and tables on stdout (JSON with --json where it
 * makes sense); problems go to stderr. Exit codes: 0 done, 1 failed, 2 usage.
 */
import { parseArgs } from "node:util";
import type { Mesh } from "../protocol/mesh.js";
import {
  AdminClient,
  type Command,
  CommandError,
  type Context,
  cliAuthorization,
  inMesh,
  readMesh,
  UsageError,
  useAuthorization,
  useMesh,
} from "./admin-client.js";
import { AUDIT_USAGE } from "./audit.js";
import { DR_COMMANDS, DR_USAGE } from "./dr.js";
import { ENDPOINT_COMMANDS, ENDPOINT_USAGE } from "./endpoint-commands.js";
import { GC_COMMANDS, GC_USAGE } from "./gc-commands.js";
import { IDENTITY_COMMANDS, IDENTITY_USAGE } from "./identity.js";
import { IMMUTABLE_COMMANDS, IMMUTABLE_USAGE } from "./immutable-commands.js";
import { IMPORT_COMMANDS, IMPORT_USAGE } from "./import-command.js";
import { OIDC_COMMANDS, OIDC_USAGE } from "./oidc-commands.js";
import { POLICY_COMMANDS, POLICY_USAGE } from "./policy-commands.js";
import { PROMOTE_COMMANDS, PROMOTE_USAGE } from "./promote-commands.js";
import { PROXY_COMMANDS, PROXY_USAGE } from "./proxy-commands.js";
import { PULL_POLICY_COMMANDS, PULL_POLICY_USAGE } from "./pull-policy-commands.js";
import { QUOTA_COMMANDS, QUOTA_USAGE } from "./quota-commands.js";
import { REPLICATION_COMMANDS, REPLICATION_USAGE } from "./replication-commands.js";
import { REPOSITORY_COMMANDS, REPOSITORY_USAGE } from "./repository-commands.js";
import { RETENTION_COMMANDS, RETENTION_USAGE } from "./retention-commands.js";
import { SCRUB_COMMANDS, SCRUB_USAGE } from "./scrub-commands.js";
import { WEBHOOK_COMMANDS, WEBHOOK_USAGE } from "./webhook-commands.js";

export const ADMIN_USAGE = `${POLICY_USAGE}${REPOSITORY_USAGE}${IMMUTABLE_USAGE}${RETENTION_USAGE}${ENDPOINT_USAGE}${IMPORT_USAGE}${PROMOTE_USAGE}${PULL_POLICY_USAGE}${REPLICATION_USAGE}${DR_USAGE}${IDENTITY_USAGE}${OIDC_USAGE}${PROXY_USAGE}${QUOTA_USAGE}${AUDIT_USAGE}${SCRUB_USAGE}${GC_USAGE}${WEBHOOK_USAGE}    admin commands take --data DIR (default .meridian; reads DIR/mesh.json), --mesh FILE,
    --region NAME (whose registry to ask; default the first that answers), and --json where it applies;
    with authentication on they sign in as MERIDIAN_USER with the password in MERIDIAN_PASSWORD_FILE,
    else as admin with DIR/auth/admin-password (written by \`up --auth\`)
`;

const COMMANDS: Record<string, Command> = {
  ...POLICY_COMMANDS,
  ...REPOSITORY_COMMANDS,
  ...IMMUTABLE_COMMANDS,
  ...WEBHOOK_COMMANDS,
  ...RETENTION_COMMANDS,
  ...ENDPOINT_COMMANDS,
  ...PROMOTE_COMMANDS,
  ...PULL_POLICY_COMMANDS,
  ...IMPORT_COMMANDS,
  ...REPLICATION_COMMANDS,
  ...DR_COMMANDS,
  ...IDENTITY_COMMANDS,
  ...PROXY_COMMANDS,
  ...OIDC_COMMANDS,
  ...QUOTA_COMMANDS,
  ...SCRUB_COMMANDS,
  ...GC_COMMANDS,
};

/** Commands without a subcommand. */
const SINGLE = new Set(["alerts", "undelete", "whoami", "promote", "import", ...Object.keys(DR_COMMANDS)]);

/** Run `meridian <command> …`; returns the exit code. */
export async function admin(command: string, argv: string[]): Promise<number> {
  const grouped = !SINGLE.has(command);
  const key = grouped ? `${command} ${argv[0] ?? ""}` : command;
  const spec = COMMANDS[key];
  const label = `meridian ${spec === undefined ? command : key}`;
  try {
    if (spec === undefined) {
      const subs = Object.keys(COMMANDS)
        .filter((k) => k.startsWith(`${command} `))
        .map((k) => k.slice(command.length + 1));
      throw new UsageError(
        argv[0] === undefined
          ? `a subcommand is required (${subs.join(", ")})`
          : `unknown subcommand "${argv[0]}" (want ${subs.join(", ")})`,
      );
    }
    let parsed: { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] };
    try {
      parsed = parseArgs({
        args: grouped ? argv.slice(1) : argv,
        options: {
          data: { type: "string", default: ".meridian" },
          mesh: { type: "string" },
          region: { type: "string" },
          ...spec.options,
        },
        allowPositionals: true,
        strict: true,
      });
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    // An argument written "[NAME]" may be left out.
    const required = spec.args.filter((a) => !a.startsWith("[")).length;
    if (parsed.positionals.length < required || parsed.positionals.length > spec.args.length)
      throw new UsageError(`usage: ${label}${spec.args.map((a) => ` ${a}`).join("")}`);
    useAuthorization(cliAuthorization(parsed.values.data as string));
    let mesh: Mesh | undefined;
    const loadMesh = () => {
      mesh ??= readMesh(parsed.values.mesh as string | undefined, parsed.values.data as string);
      useMesh(mesh);
      return mesh;
    };
    const ctx: Context = {
      values: parsed.values,
      positionals: parsed.positionals,
      mesh: loadMesh,
      api: () => {
        const m = loadMesh();
        const name = parsed.values.region as string | undefined;
        // Without --region: the first region, then the others when it does not answer (admin-client.ts).
        return name === undefined
          ? new AdminClient(m.regions[0]!, undefined, m.regions.slice(1))
          : new AdminClient(inMesh(m, name));
      },
      json: parsed.values.json === true,
    };
    return await spec.run(ctx);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${label}: ${err.message}\n  see 'meridian help ${command}'\n`);
      return 2;
    }
    if (err instanceof CommandError) {
      // A single problem is usually the message itself.
      const list = err.problems.filter((p) => err.problems.length > 1 || !err.message.includes(p));
      process.stderr.write(`${label}: ${err.message}\n${list.map((p) => `  - ${p}\n`).join("")}`);
      return 1;
    }
    process.stderr.write(`${label}: ${(err as Error)?.message ?? err}\n`);
    return 1;
  }
}
