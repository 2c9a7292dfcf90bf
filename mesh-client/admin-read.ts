/**
 * One read of a region's admin API (`GET /admin/v1…`) for the mesh-wide
 * views built here (locate.ts, activity.ts): the region's nodes from
 * mesh.json asked in turn until one answers, the whole read within one
 * deadline. Each request has its own connection (no keep-alive pool), its
 * socket destroyed at the deadline, so a frozen region leaves nothing open
 * behind and costs the caller one deadline, not more. An https:// node is
 * trusted under the mesh CA (`mesh.tls.ca`) as well as the system's roots,
 * as control-plane/registry-http.ts does for the front door.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { rootCertificates } from "node:tls";
import { type Mesh, type RegionEndpoints, registriesOf } from "../protocol/mesh.js";

/** The deadline of one region's read when the caller gives none. */
export const ADMIN_READ_MS = 5_000;
/** The most read of an answer's body: every route these reads use is bounded far below. */
const MAX_BODY = 8 << 20;

/** The region did not answer, or answered with an error (`status` and `code` then say which). */
export class AdminReadError extends Error {
  constructor(
    message: string,
    /** The HTTP status of the answer (absent: no answer). */
    readonly status?: number,
    /** The OCI error code of the answer, if it had one. */
    readonly code?: string,
  ) {
    super(message);
  }
}

export interface AdminReadOptions {
  /** The caller's `authorization` header, passed on as it is. */
  authorization?: string | undefined;
  /** The whole read, every node of the region included (default ADMIN_READ_MS). */
  timeoutMs?: number | undefined;
}

/**
 * `GET /admin/v1<path>` of `region`, its JSON answer. Rejects with an
 * AdminReadError: the first error answer (4xx, 5xx) as it is, or, when no
 * node answered within the deadline, the last node's failure.
 */
export async function adminGet<T>(
  mesh: Mesh,
  region: RegionEndpoints,
  path: string,
  options: AdminReadOptions = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? ADMIN_READ_MS);
  let failure = new AdminReadError(`region ${region.name}: no node to ask`);
  for (const node of registriesOf(region)) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    const url = `${node.replace(/\/+$/, "")}/admin/v1${path}`;
    let answer: { status: number; body: string };
    try {
      answer = await get(mesh, url, options.authorization, left);
    } catch (err) {
      failure = new AdminReadError(`region ${region.name} (${node}): ${(err as Error).message}`);
      continue;
    }
    let value: unknown;
    try {
      value = answer.body === "" ? {} : JSON.parse(answer.body);
    } catch {
      throw new AdminReadError(
        `region ${region.name} answered ${answer.status} with something other than JSON`,
        answer.status,
      );
    }
    if (answer.status >= 200 && answer.status < 300) return value as T;
    const e = (value as { errors?: Array<{ code?: string; message?: string }> }).errors?.[0];
    throw new AdminReadError(
      `region ${region.name}: ${e?.message ?? `HTTP ${answer.status}`}`,
      answer.status,
      e?.code,
    );
  }
  throw failure;
}

const cas = new WeakMap<Mesh, string[]>();

function get(
  mesh: Mesh,
  url: string,
  authorization: string | undefined,
  timeoutMs: number,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { accept: "application/json" };
    if (authorization !== undefined) headers.authorization = authorization;
    const secure = url.startsWith("https:");
    let ca: string[] | undefined;
    if (secure && mesh.tls !== undefined) {
      ca = cas.get(mesh) ?? [...rootCertificates, readFileSync(mesh.tls.ca, "utf8")];
      cas.set(mesh, ca);
    }
    const options = { agent: false as const, headers, ...(ca === undefined ? {} : { ca }) };
    // Until the whole answer is read: a node that answers its headers and then stalls is cut too.
    const timer = setTimeout(
      () => req.destroy(new Error(`did not answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const fail = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    const req = (secure ? https.get : http.get)(url, options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) req.destroy(new Error(`answer over ${MAX_BODY} bytes`));
        else chunks.push(c);
      });
      res.once("end", () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") });
      });
      res.once("error", fail);
      res.once("aborted", () => fail(new Error("answer cut short")));
    });
    req.once("error", fail);
  });
}
