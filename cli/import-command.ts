/**
 * `meridian import --from ENDPOINT …` (issue 17, item 4): copy an external
 * registry's existing content into a region, through the region's own OCI
 * API as the CLI user (cli/import-run.ts does the plan and the copies;
 * protocol/import-plan.ts decides what is selected, skipped and why).
 *
 * The endpoint is read from the admin API (`meridian endpoint add`); its
 * credentials and CA files are read here, where the command runs, as
 * `endpoint check` does. The region is `--region` or the first that answers;
 * its registry is written to over its OCI API with the CLI's credentials
 * (MERIDIAN_USER / MERIDIAN_PASSWORD_FILE, or `up --auth`'s admin password),
 * under the mesh CA when the mesh runs TLS.
 *
 * Progress on stderr (cli/progress.ts: the plan, then bytes of the total with
 * repositories and tags done in the note; a line per tag copied, skipped or
 * failed); the report on stdout (or `--json`). Exit codes: 0 done, 1 when
 * anything failed (or the endpoint, region or catalog could not be used), 2
 * usage, 130 interrupted (the checkpoint is written; the same command resumes).
 */
import { readFileSync } from "node:fs";
import { readCredentialsFile } from "../mesh-client/oci-credentials.js";
import type { OciRegistryClientOptions, RegistryCredentials } from "../mesh-client/oci-registry-client.js";
import { parseImportFilter } from "../protocol/import-plan.js";
import { registriesOf } from "../protocol/mesh.js";
import { type Command, CommandError, type Context, UsageError } from "./admin-client.js";
import { CheckpointFile, defaultCheckpointPath } from "./import-checkpoint.js";
import { CatalogRefused, type ImportResult, MeridianClient, runImport, SourceClient } from "./import-run.js";
import { mib, progress } from "./progress.js";

export const IMPORT_USAGE = `  import --from ENDPOINT [--repos GLOB]... [--tags PATTERN]... [--to-prefix P] [--checkpoint FILE]
         [--concurrency N] [--dry-run] [--json]
                                  copy an external endpoint's repositories into a region (--region,
                                  else the first that answers) through its OCI API as you: every tag's
                                  closure by digest (children, config, layers of any media type,
                                  referrers); a tag Meridian has at the same digest is not sent again.
                                  --repos: picomatch globs over the name (repeatable; names without
                                  glob characters skip the catalog, for registries that refuse it);
                                  --tags: v*, glob:…, regex:…, semver:… as in policies, !PATTERN
                                  excludes (repeatable); --to-prefix P puts R at P/R; --checkpoint
                                  (default ./meridian-import-ENDPOINT-REGION.checkpoint.json) records
                                  finished tags: after Ctrl-C or a failure the same command resumes;
                                  --concurrency: tags copied at once (1-32, default 4); --dry-run:
                                  plan only. Exit 1 when a tag failed, 130 when interrupted
`;

export const IMPORT_COMMANDS: Record<string, Command> = {
  import: {
    args: [],
    options: {
      from: { type: "string" },
      repos: { type: "string", multiple: true },
      tags: { type: "string", multiple: true },
      "to-prefix": { type: "string" },
      checkpoint: { type: "string" },
      concurrency: { type: "string", default: "4" },
      "dry-run": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
    run: importCommand,
  },
};

interface EndpointRow {
  name: string;
  url: string;
  credentialsFile?: string;
  caFile?: string;
  insecure: boolean;
}

async function importCommand(ctx: Context): Promise<number> {
  const from = ctx.values.from as string | undefined;
  if (from === undefined)
    throw new UsageError("--from ENDPOINT is required ('meridian endpoint list' shows them)");
  const concurrency = Number(ctx.values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 32)
    throw new UsageError(
      `--concurrency: want an integer from 1 to 32, got ${String(ctx.values.concurrency)}`,
    );
  const { filter, problems } = parseImportFilter(
    (ctx.values.repos as string[] | undefined) ?? [],
    (ctx.values.tags as string[] | undefined) ?? [],
    ctx.values["to-prefix"] as string | undefined,
  );
  if (problems.length > 0) throw new UsageError(problems.join("; "));
  const dryRun = ctx.values["dry-run"] === true;

  const api = ctx.api();
  let endpoint: EndpointRow;
  try {
    endpoint = await api.get<EndpointRow>(`/endpoints/${encodeURIComponent(from)}`);
  } catch (err) {
    if (err instanceof CommandError && err.status === 404)
      throw new CommandError(
        `endpoint ${from} not found; 'meridian endpoint list' shows them, 'meridian endpoint add' adds one`,
      );
    throw err;
  }
  const region = api.region;
  const source = new SourceClient(endpointOptions(endpoint));
  try {
    await source.ping();
  } catch (err) {
    throw new CommandError(
      `endpoint ${from} (${endpoint.url}) does not answer: ${(err as Error).message}; 'meridian endpoint check ${from}' tries it`,
    );
  }
  const registry = registriesOf(region)[0]!;
  const tlsCa = ctx.mesh().tls?.ca;
  const credentials = basicCredentials(api.authorization);
  const meridian = new MeridianClient({
    url: registry,
    ...(credentials === undefined ? {} : { credentials }),
    ...(registry.startsWith("https:") && tlsCa !== undefined ? { ca: readFileSync(tlsCa) } : {}),
  });

  const path = (ctx.values.checkpoint as string | undefined) ?? defaultCheckpointPath(from, region.name);
  const file = new CheckpointFile(path, {
    endpoint: from,
    url: endpoint.url,
    region: region.name,
    prefix: filter.prefix,
  });
  const resuming = file.entries;

  const plan = progress("planning", undefined, { noun: "repositories" });
  let copy: ReturnType<typeof progress> | undefined;
  const abort = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1) {
      abort.abort();
      (copy ?? plan).log(
        "interrupted: finishing the tags in flight, then writing the checkpoint (Ctrl-C again to stop now)\n",
      );
      return;
    }
    file.flush();
    process.stderr.write(`\nstopped; checkpoint ${path}; ${resumeHint(ctx, path)}\n`);
    process.exit(130);
  };
  process.on("SIGINT", onSigint);
  const started = performance.now();
  let result: ImportResult;
  try {
    result = await runImport(
      {
        source,
        meridian,
        filter,
        checkpoint: file.checkpoint,
        concurrency,
        dryRun,
        hooks: {
          finished: (repo, tag, digest) => file.finished(repo, tag, digest),
          planning: (done, total) => plan.update(done, undefined, total),
          copying: (s) => {
            if (copy === undefined) {
              plan.finish();
              copy = progress("importing", s.totalBytes, { unit: "bytes" });
            }
            copy.update(s.bytes, `repos ${s.repos}/${s.totalRepos}, tags ${s.tags}/${s.totalTags}`);
          },
          line: (text) => (copy ?? plan).log(text),
        },
      },
      abort.signal,
    );
  } catch (err) {
    if (err instanceof CatalogRefused)
      throw new CommandError(
        `endpoint ${from} refuses its catalog (${err.message}): name the repositories with --repos NAME (repeatable, without glob characters)`,
      );
    throw err;
  } finally {
    plan.finish();
    copy?.finish();
    if (!dryRun) file.flush();
    process.off("SIGINT", onSigint);
  }
  const seconds = (performance.now() - started) / 1000;
  if (ctx.json)
    process.stdout.write(
      `${JSON.stringify({ endpoint: from, url: endpoint.url, region: region.name, checkpoint: path, dryRun, seconds, ...result }, null, 2)}\n`,
    );
  else process.stdout.write(reportText(from, region.name, result, seconds, dryRun, resuming > 0));
  if (result.interrupted) {
    process.stderr.write(`interrupted; checkpoint ${path}; ${resumeHint(ctx, path)}\n`);
    return 130;
  }
  return result.failed.length > 0 ? 1 : 0;
}

function endpointOptions(e: EndpointRow): OciRegistryClientOptions {
  try {
    return {
      url: e.url,
      insecure: e.insecure,
      ...(e.credentialsFile === undefined
        ? {}
        : { credentials: readCredentialsFile(e.credentialsFile).credentials }),
      ...(e.caFile === undefined ? {} : { ca: readFileSync(e.caFile) }),
    };
  } catch (err) {
    throw new CommandError(`endpoint ${e.name}: ${(err as Error).message}`);
  }
}

/** The CLI's Basic authorization as the OCI client's credentials (Meridian answers Basic and token challenges). */
function basicCredentials(authorization: string | undefined): RegistryCredentials | undefined {
  if (authorization?.startsWith("Basic ") !== true) return undefined;
  const text = Buffer.from(authorization.slice(6), "base64").toString("utf8");
  const colon = text.indexOf(":");
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

function resumeHint(ctx: Context, path: string): string {
  const explicit = ctx.values.checkpoint !== undefined;
  return `run the same command again to resume${explicit ? "" : ` (or name the file: --checkpoint ${path})`}`;
}

/** The report: a summary line, then every skipped and failed tag with its reason. */
export function reportText(
  from: string,
  region: string,
  r: ImportResult,
  seconds: number,
  dryRun: boolean,
  resumed: boolean,
): string {
  const lines: string[] = [];
  const rate = seconds > 0 ? ` (${mib(r.bytesCopied / seconds)} MiB/s)` : "";
  if (dryRun)
    lines.push(
      `dry run: import from ${from} into region ${region} would copy ${r.wouldCopy.length} tags (${mib(r.wouldCopy.reduce((n, t) => n + (t.bytes ?? 0), 0))} MiB at most); ${r.present.length} already present, ${r.skipped.length} skipped, ${r.failed.length} failed`,
    );
  else
    lines.push(
      `import from ${from} into region ${region}: ${r.repositories} repositories; ${r.copied.length} copied, ${r.present.length} already present, ${resumed || r.resumed.length > 0 ? `${r.resumed.length} done before (checkpoint), ` : ""}${r.skipped.length} skipped, ${r.failed.length} failed; ${mib(r.bytesCopied)} MiB sent in ${seconds.toFixed(1)} s${rate}${r.interrupted ? "; INTERRUPTED" : ""}`,
    );
  for (const t of r.wouldCopy) lines.push(`  would copy ${t.repo}:${t.tag} -> ${t.destination} ${t.digest}`);
  if (r.skipped.length > 0) {
    lines.push("skipped:");
    for (const t of r.skipped) lines.push(`  ${t.repo}:${t.tag}  ${t.reason}`);
  }
  if (r.failed.length > 0) {
    lines.push("failed:");
    for (const t of r.failed) lines.push(`  ${t.repo}:${t.tag}  ${t.reason}`);
  }
  return `${lines.join("\n")}\n`;
}
