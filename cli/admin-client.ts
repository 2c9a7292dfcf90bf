/**
 * Plumbing of the admin commands (cli/admin.ts, cli/dr.ts): the command and
 * context shapes, the client of a region's admin API (every failure a
 * CommandError carrying the server's problems), and reading the mesh file.
 */
import { existsSync, readFileSync } from "node:fs";
import type { Agent } from "node:http";
import { join } from "node:path";
import { registryAgent, registryRequest } from "../control-plane/registry-http.js";
import {
  type Mesh,
  MeshConfigError,
  parseMesh,
  type RegionEndpoints,
  regionOf,
  registriesOf,
} from "../protocol/mesh.js";

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

export type OptionSpec = Record<
  string,
  {
    type: "string" | "boolean";
    default?: string | boolean /** Repeatable: a list of values. */;
    multiple?: boolean;
  }
>;
export interface Context {
  values: Record<string, string | boolean | string[] | undefined>;
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

/** Time to a region's first answer (its response headers) before it counts as not answering: reads. */
export const READ_ANSWER_MS = 5_000;
/** The same for writes (a server-side change may take a moment). */
export const WRITE_ANSWER_MS = 15_000;
/** Whole call, answer body included. */
const CALL_MS = 60_000;

/** No answer at all from a region: refused, reset, or nothing within the answer bound. */
class NoAnswer extends Error {
  constructor(
    message: string,
    /** Nothing reached the region (the connection was refused): safe to send anywhere. */
    readonly refused: boolean,
    /** The transport's own words (a refused connection's). */
    readonly detail = message,
  ) {
    super(message);
  }
}

/**
 * Writes that mean the same sent twice (to one region or two): PUT, DELETE,
 * and the POSTs that set a state (a policy's YAML, an undelete, a breaker's
 * reset). A POST that starts something (a policy run, a failover, a
 * rebuild, a new credential) is not: it goes elsewhere only when the first
 * region refused the connection.
 */
function idempotent(method: string, path: string): boolean {
  if (method !== "POST") return true;
  return path === "/policies" || path === "/undelete" || /^\/policies\/[^/]+\/reset-breaker$/.test(path);
}

/**
 * Calls to a region's admin API; every failure becomes a CommandError with
 * the server's problems. With `fallbacks` (the CLI without `--region`: the
 * mesh's other regions, in order), a call the region does not answer
 * (connection refused, or no response headers within READ_ANSWER_MS for a
 * read, WRITE_ANSWER_MS for a write) is sent to the next region, saying so on
 * stderr: every admin change is an event that replicates, so any region's
 * admin API serves it. A write is sent elsewhere after a silence only when it
 * is idempotent (it may have been applied where it went unanswered). The
 * region that answered serves the client's later calls (a run requested
 * there is followed there).
 *
 * A region of several registry nodes (mesh.json `registry` as a list, no
 * load balancer in front) is tried node by node first, by the same rules:
 * its nodes share the region's log, so any of them serves the call, and the
 * next node is asked when one does not answer (refused, or silent for an
 * idempotent call), before the next region. The node that answered is asked
 * first next time.
 */
export class AdminClient {
  #agent: Agent | undefined;
  #regions: RegionEndpoints[];
  /** Each region's nodes in the order to ask them (the last that answered first). */
  readonly #nodes = new Map<string, string[]>();

  constructor(
    region: RegionEndpoints,
    readonly authorization: string | undefined = defaultAuthorization,
    fallbacks: readonly RegionEndpoints[] = [],
  ) {
    this.#regions = [region, ...fallbacks.filter((r) => r.name !== region.name)];
  }

  /**
   * Bounds of a write's answer and of the whole call (default
   * WRITE_ANSWER_MS and CALL_MS): a change that is long by nature (a
   * promotion waits for its copy) raises them.
   */
  writeAnswerMs = WRITE_ANSWER_MS;
  callMs = CALL_MS;

  /** The region the calls go to (the last that answered). */
  get region(): RegionEndpoints {
    return this.#regions[0]!;
  }

  get<T>(path: string): Promise<T> {
    return this.send<T>("GET", path);
  }

  async send<T>(
    method: string,
    path: string,
    body?: { json: unknown } | { text: string; type: string },
  ): Promise<T> {
    const missed: string[] = [];
    for (let i = 0; i < this.#regions.length; i++) {
      const region = this.#regions[i]!;
      try {
        const answer = await this.#sendTo<T>(region, method, path, body);
        if (i > 0) this.#regions = [region, ...this.#regions.filter((r) => r !== region)];
        return answer;
      } catch (err) {
        if (!(err instanceof NoAnswer)) throw err;
        missed.push(`${region.name}: ${err.message}`);
        const next = this.#regions[i + 1];
        if (next === undefined || !(err.refused || idempotent(method, path))) {
          if (this.#regions.length === 1)
            throw new CommandError(
              err.refused
                ? `cannot reach region ${region.name} at ${where(region)}: ${err.detail}; ${START_HINT}`
                : `region ${region.name} at ${where(region)} ${err.message}; is it down or frozen? name another with --region`,
            );
          throw new CommandError(
            next === undefined
              ? `no region answered (${missed.join("; ")}); ${START_HINT}`
              : `region ${region.name} ${err.message}; not sent elsewhere (it may have been applied there): check, then retry or name a region with --region`,
          );
        }
        process.stderr.write(`meridian: region ${region.name} ${err.message}; trying region ${next.name}\n`);
      }
    }
    throw new CommandError("no region to ask");
  }

  /** One call to a region: its nodes in turn (see the class comment); NoAnswer when none answered. */
  async #sendTo<T>(
    region: RegionEndpoints,
    method: string,
    path: string,
    body?: { json: unknown } | { text: string; type: string },
  ): Promise<T> {
    const nodes = this.#nodes.get(region.name) ?? registriesOf(region);
    for (let i = 0; ; i++) {
      const node = nodes[i]!;
      try {
        const answer = await this.#sendToNode<T>(region, node, method, path, body);
        if (i > 0) this.#nodes.set(region.name, [node, ...nodes.filter((n) => n !== node)]);
        return answer;
      } catch (err) {
        const next = nodes[i + 1];
        if (!(err instanceof NoAnswer) || next === undefined || !(err.refused || idempotent(method, path)))
          throw err;
        process.stderr.write(
          `meridian: region ${region.name}'s node ${node} ${err.message}; trying its node ${next}\n`,
        );
      }
    }
  }

  async #sendToNode<T>(
    region: RegionEndpoints,
    node: string,
    method: string,
    path: string,
    body?: { json: unknown } | { text: string; type: string },
  ): Promise<T> {
    const url = `${node.replace(/\/+$/, "")}/admin/v1${path}`;
    const headers: Record<string, string> = {};
    if (this.authorization !== undefined) headers.authorization = this.authorization;
    const answerMs = method === "GET" ? READ_ANSWER_MS : this.writeAnswerMs;
    const noAnswer = new AbortController();
    const timer = setTimeout(() => noAnswer.abort(), answerMs);
    const signal = AbortSignal.any([noAnswer.signal, AbortSignal.timeout(Math.max(this.callMs, answerMs))]);
    const init: RequestInit = { method, signal, headers };
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
          signal,
        });
        clearTimeout(timer);
        res = { status: reply.status, ok: reply.status >= 200 && reply.status < 300 };
        text = reply.body.toString("utf8");
      } else {
        const answer = await fetch(url, init);
        clearTimeout(timer); // answered: the body has the rest of CALL_MS
        res = answer;
        text = await answer.text();
      }
    } catch (err) {
      clearTimeout(timer);
      if (noAnswer.signal.aborted) throw new NoAnswer(`did not answer within ${answerMs} ms`, false);
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const code = cause?.code ?? (err as { code?: string }).code;
      if (code === "ECONNREFUSED" || code === "ECONNRESET" || code === "UND_ERR_CONNECT_TIMEOUT")
        throw new NoAnswer(
          `could not be reached (${code})`,
          code === "ECONNREFUSED",
          cause?.message ?? (err as Error).message,
        );
      throw new CommandError(
        `cannot reach region ${region.name} at ${node}: ${cause?.message ?? (err as Error).message}; ${START_HINT}`,
      );
    }
    let value: unknown;
    try {
      value = text === "" ? {} : JSON.parse(text);
    } catch {
      throw new CommandError(`region ${region.name} answered ${res.status} with something other than JSON`);
    }
    if (res.ok) return value as T;
    if (res.status === 401)
      throw new CommandError(
        `region ${region.name} needs credentials${this.authorization === undefined ? "" : " (those given were refused)"}: set MERIDIAN_USER and MERIDIAN_PASSWORD_FILE, or use the --data directory of \`meridian up --auth\``,
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
    // Signed in, but not allowed: say who is signed in and how to be someone else.
    const next =
      res.status === 403
        ? `; signed in as ${signedInAs(this.authorization) ?? "nobody"}: set MERIDIAN_USER and MERIDIAN_PASSWORD_FILE to a user allowed this (a system admin for mesh-wide changes; 'meridian whoami' shows your rights)`
        : "";
    throw new CommandError(`${message} (region ${region.name})${next}`, problems, res.status);
  }
}

/** What to do when no region's admin API answers at all. */
const START_HINT =
  "is 'meridian up' running? start it with 'npm start' (or 'meridian up --data DIR'), or pass the --data DIR / --mesh FILE of the mesh that runs";

/** The user of a Basic authorization (undefined for none or another scheme). */
function signedInAs(authorization: string | undefined): string | undefined {
  if (authorization?.startsWith("Basic ") !== true) return undefined;
  const text = Buffer.from(authorization.slice(6), "base64").toString("utf8");
  return text.slice(0, Math.max(0, text.indexOf(":")));
}

/** Where a region's admin API is: its registry, or its nodes' URLs. */
function where(region: RegionEndpoints): string {
  return registriesOf(region).join(", ");
}

export function readMesh(meshFile: string | undefined, dataDir: string): Mesh {
  const file = meshFile ?? join(dataDir, "mesh.json");
  try {
    return parseMesh(JSON.parse(readFileSync(file, "utf8")));
  } catch (err) {
    throw new UsageError(
      `cannot read ${file}: ${(err as Error).message}; ${
        (err as { code?: string }).code === "ENOENT"
          ? `'meridian up' writes it when the mesh starts: start one with 'npm start' (or 'meridian up --data ${dataDir}'), or pass --data DIR / --mesh FILE of a running mesh`
          : "pass --data DIR / --mesh FILE of a mesh 'meridian up' started"
      }`,
    );
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

/** A repository name as URL path segments: whatever was typed reaches the server as the name. */
export function segments(repo: string): string {
  return repo.split("/").map(encodeURIComponent).join("/");
}

/** Sort order of names: by code unit, the same on every machine (no locale). */
export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
