/**
 * The `endpoint` commands (issue 17, item 1): external OCI registries as
 * admin objects (node/http/admin/endpoints.ts; protocol/endpoints.ts).
 * Dispatched by cli/admin.ts.
 *
 * `endpoint add` checks what it names on the machine it runs on, before the
 * event is written: the credentials file exists and parses
 * (mesh-client/oci-credentials.ts; a warning when group or others may read
 * it), the CA file holds a PEM certificate. Only the files' absolute paths
 * go into the event: the secret stays in the file, read where the endpoint
 * is used. `endpoint check` reads them here and pings the registry's /v2/.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { readCredentialsFile } from "../mesh-client/oci-credentials.js";
import { OciRegistryClient } from "../mesh-client/oci-registry-client.js";
import { type Command, CommandError, type Context, JSON_OPT, printJson, UsageError } from "./admin-client.js";
import { table } from "./table.js";

export const ENDPOINT_USAGE = `  endpoint add NAME --url URL [--credentials-file F] [--ca-file F | --insecure]
                                  name another OCI registry (scheme://host[:port]); F holds
                                  username:password, JSON {"username","password"} or {"token"}, or a
                                  bearer token, and is read where the endpoint is used (only its path
                                  is stored); --insecure skips TLS verification (labs only)
  endpoint list                   the external endpoints (never a secret)
  endpoint delete NAME
  endpoint check NAME             read its files here and ping its /v2/ with them
`;

export const ENDPOINT_COMMANDS: Record<string, Command> = {
  "endpoint add": {
    args: ["NAME"],
    options: {
      url: { type: "string" },
      "credentials-file": { type: "string" },
      "ca-file": { type: "string" },
      insecure: { type: "boolean", default: false },
    },
    run: addEndpoint,
  },
  "endpoint list": { args: [], options: JSON_OPT, run: listEndpoints },
  "endpoint delete": { args: ["NAME"], run: deleteEndpoint },
  "endpoint check": { args: ["NAME"], run: checkEndpoint },
};

interface EndpointRow {
  name: string;
  url: string;
  credentialsFile?: string;
  caFile?: string;
  insecure: boolean;
  updatedAt: string;
}

async function addEndpoint(ctx: Context): Promise<number> {
  const name = ctx.positionals[0]!;
  const url = ctx.values.url as string | undefined;
  if (url === undefined) throw new UsageError("--url URL is required");
  const insecure = ctx.values.insecure === true;
  const credentials = ctx.values["credentials-file"] as string | undefined;
  const ca = ctx.values["ca-file"] as string | undefined;
  if (insecure && ca !== undefined) throw new UsageError("--ca-file and --insecure exclude each other");
  const body: Record<string, unknown> = { url, insecure };
  if (credentials !== undefined) {
    const path = resolve(credentials);
    try {
      if (readCredentialsFile(path).loose)
        process.stderr.write(`warning: ${path} is readable by group or others; chmod 600 it\n`);
    } catch (err) {
      throw new CommandError((err as Error).message);
    }
    body.credentialsFile = path;
  }
  if (ca !== undefined) {
    const path = resolve(ca);
    let pem: string;
    try {
      pem = readFileSync(path, "utf8");
    } catch (err) {
      throw new CommandError(`CA file ${path}: ${(err as Error).message}`);
    }
    if (!pem.includes("-----BEGIN CERTIFICATE-----"))
      throw new CommandError(`CA file ${path}: no PEM certificate`);
    body.caFile = path;
  }
  const reply = await ctx
    .api()
    .send<{ endpoint: EndpointRow }>("PUT", `/endpoints/${encodeURIComponent(name)}`, { json: body });
  process.stdout.write(
    `endpoint ${name} set: ${reply.endpoint.url}${insecure ? " (TLS verification off: labs only)" : ""}\n`,
  );
  return 0;
}

async function listEndpoints(ctx: Context): Promise<number> {
  const reply = await ctx.api().get<{ endpoints: EndpointRow[] }>("/endpoints");
  if (ctx.json) return printJson(reply);
  if (reply.endpoints.length === 0) {
    process.stdout.write("no endpoints\n");
    return 0;
  }
  const rows = [["name", "url", "credentials", "tls", "updated"]];
  for (const e of reply.endpoints)
    rows.push([
      e.name,
      e.url,
      e.credentialsFile ?? "-",
      e.insecure ? "INSECURE (no verification)" : e.caFile !== undefined ? `ca ${e.caFile}` : "system CAs",
      e.updatedAt,
    ]);
  process.stdout.write(table(rows));
  return 0;
}

async function deleteEndpoint(ctx: Context): Promise<number> {
  const name = ctx.positionals[0]!;
  await ctx.api().send("DELETE", `/endpoints/${encodeURIComponent(name)}`);
  process.stdout.write(`endpoint ${name} deleted\n`);
  return 0;
}

async function checkEndpoint(ctx: Context): Promise<number> {
  const name = ctx.positionals[0]!;
  const e = await ctx.api().get<EndpointRow>(`/endpoints/${encodeURIComponent(name)}`);
  try {
    const client = new OciRegistryClient({
      url: e.url,
      insecure: e.insecure,
      deadlineMs: 10_000,
      ...(e.credentialsFile === undefined
        ? {}
        : { credentials: readCredentialsFile(e.credentialsFile).credentials }),
      ...(e.caFile === undefined ? {} : { ca: readFileSync(e.caFile) }),
    });
    await client.ping();
  } catch (err) {
    throw new CommandError(`endpoint ${name} (${e.url}): ${(err as Error).message}`);
  }
  process.stdout.write(`endpoint ${name} answers at ${e.url}\n`);
  return 0;
}
