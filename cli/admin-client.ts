/**
 * Plumbing of the admin commands (cli/admin.ts, cli/dr.ts): the command and
 * context shapes, the client of a region's admin API (every failure a
 * CommandError carrying the server's problems), and reading the mesh file.
 */
import { existsSync, readFileSync } from "node:fs";
import type { Agent } from "node:http";
import { join } from "node:path";
import { registryAgent, registryRequest } from "../control-plane/registry-http.js";
import { type Mesh, MeshConfigError, parseMesh, type RegionEndpoints, regionOf } from "../protocol/mesh.js";

export class UsageError extends Error {}

/** A failure to report on stderr: a message and, when the server listed them, every problem. */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly problems: string[] = [],
    /** The HTTP status the admin API answered with, if it did. */
    readonly status?: number,
  ) {
    super(message);
  }
}

export type OptionSpec = Record<string, { type: "string" | "boolean"; default?: string | boolean }>;
export interface Context {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
  mesh: () => Mesh;
  api: () => AdminClient;
  json: boolean;
}
export interface Command {
  args: string[];
  options?: OptionSpec;
  run(ctx: Context): Promise<number>;
}

export const JSON_OPT: OptionSpec = { json: { type: "boolean", default: false } };

/**
 * Credentials of the admin commands, from (first found):
 *   MERIDIAN_USER with MERIDIAN_PASSWORD_FILE (the password is the file's first line), or
 *   <data>/auth/admin-password, written by `meridian up --auth`, as the user `admin`.
 * Passwords are only read from files, never taken on the command line
 * (where `ps` and shell history would show them). None: requests go
 * without credentials (a registry without auth).
 */
export function cliAuthorization(dataDir: string, env = process.env): string | undefined {
  let user: string | undefined;
  let file: string | undefined;
  if (env.MERIDIAN_USER !== undefined && env.MERIDIAN_USER !== "") {
    user = env.MERIDIAN_USER;
    file = env.MERIDIAN_PASSWORD_FILE;
    if (file === undefined)
      throw new UsageError("MERIDIAN_USER is set: MERIDIAN_PASSWORD_FILE must name the password's file");
  } else if (existsSync(join(dataDir, "auth", "admin-password"))) {
    user = "admin";
    file = join(dataDir, "auth", "admin-password");
  }
  if (user === undefined || file === undefined) return undefined;
  return `Basic ${Buffer.from(`${user}:${readSecret(file)}`).toString("base64")}`;
}

/** A secret from a file: its first line (a UsageError naming the file when it cannot be read). */
export function readSecret(file: string): string {
  try {
    return readFileSync(file, "utf8").split(/\r?\n/, 1)[0]!;
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
}

let defaultAuthorization: string | undefined;
let defaultMesh: Mesh | undefined;

/**
 * The mesh the admin commands talk to: an https:// registry in it is then
 * verified under the mesh CA (`mesh.tls.ca`) as well as the system's roots,
 * as the front door and the peers do, so `up --tls` needs no NODE_EXTRA_CA_CERTS.
 */
export function useMesh(mesh: Mesh): void {
  defaultMesh = mesh;
}

/** Send `authorization` with every AdminClient made from now on (the CLI sets it once from cliAuthorization). */
export function useAuthorization(authorization: string | undefined): void {
  defaultAuthorization = authorization;
}

/** Calls to one region's admin API; every failure becomes a CommandError with the server's problems. */
export class AdminClient {
  #agent: Agent | undefined;

  constructor(
    readonly region: RegionEndpoints,
    readonly authorization: string | undefined = defaultAuthorization,
  ) {}

  get<T>(path: string): Promise<T> {
    return this.send<T>("GET", path);
  }

  async send<T>(
    method: string,
    path: string,
    body?: { json: unknown } | { text: string; type: string },
  ): Promise<T> {
    const url = `${this.region.registry.replace(/\/+$/, "")}/admin/v1${path}`;
    const headers: Record<string, string> = {};
    if (this.authorization !== undefined) headers.authorization = this.authorization;
    const init: RequestInit = { method, signal: AbortSignal.timeout(60_000), headers };
    if (body !== undefined) {
      init.body = "json" in body ? JSON.stringify(body.json) : body.text;
      headers["content-type"] = "json" in body ? "application/json" : body.type;
    }
    let res: { status: number; ok: boolean };
    let text: string;
    try {
      if (url.startsWith("https:") && defaultMesh?.tls !== undefined) {
        this.#agent ??= registryAgent(defaultMesh, url, { keepAlive: false });
        const reply = await registryRequest(url, {
          agent: this.#agent,
          method,
          headers,
          ...(typeof init.body === "string" ? { body: init.body } : {}),
          signal: init.signal ?? undefined,
        });
        res = { status: reply.status, ok: reply.status >= 200 && reply.status < 300 };
        text = reply.body.toString("utf8");
      } else {
        const answer = await fetch(url, init);
        res = answer;
        text = await answer.text();
      }
    } catch (err) {
      const cause = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
      throw new CommandError(`cannot reach region ${this.region.name} at ${this.region.registry}: ${cause}`);
    }
    let value: unknown;
    try {
      value = text === "" ? {} : JSON.parse(text);
    } catch {
      throw new CommandError(
        `region ${this.region.name} answered ${res.status} with something other than JSON`,
      );
    }
    if (res.ok) return value as T;
    if (res.status === 401)
      throw new CommandError(
        `region ${this.region.name} needs credentials${this.authorization === undefined ? "" : " (those given were refused)"}: set MERIDIAN_USER and MERIDIAN_PASSWORD_FILE, or use the --data directory of \`meridian up --auth\``,
        [],
        401,
      );
    const e = (value as { errors?: Array<{ code: string; message: string; detail?: { errors?: string[] } }> })
      .errors?.[0];
    const problems = Array.isArray(e?.detail?.errors) ? e.detail.errors : [];
    const message =
      e === undefined
        ? `HTTP ${res.status}`
        : problems.length > 1
          ? `${problems.length} problems`
          : e.message;
    throw new CommandError(`${message} (region ${this.region.name})`, problems, res.status);
  }
}

export function readMesh(meshFile: string | undefined, dataDir: string): Mesh {
  const file = meshFile ?? join(dataDir, "mesh.json");
  try {
    return parseMesh(JSON.parse(readFileSync(file, "utf8")));
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
}

export function inMesh(mesh: Mesh, name: string): RegionEndpoints {
  try {
    return regionOf(mesh, name);
  } catch (err) {
    throw new UsageError(err instanceof MeshConfigError ? err.problems.join("; ") : (err as Error).message);
  }
}

export function printJson(value: unknown): number {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  return 0;
}

/** "copied 3, linked 2" (keys sorted), or "no changes". */
export function statsText(stats: Record<string, number>): string {
  const entries = Object.entries(stats).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return entries.length === 0 ? "no changes" : entries.map(([k, v]) => `${k} ${v}`).join(", ");
}
