/**
 * The external endpoints projection (issue 17, item 1; protocol/endpoints.ts):
 * endpoints as the log's endpoint.set / endpoint.deleted events leave them.
 *
 * Keys (values are JSON):
 *   ep!<name>    an endpoint    {endpoint | null, w}    last writer wins
 *
 * The merge is commutative and idempotent (last writer by write order), so
 * every region ends with the same endpoints whatever order events arrive in.
 * A value holds file paths, never a secret.
 */
import type { Endpoint } from "../../../protocol/endpoints.js";
import type { Write } from "../../../protocol/registers.js";
import { Batch, getJson, type Handlers, olderWrite, type Projection, type ViewDb } from "./store.js";

export interface EndpointReads {
  /** Live endpoints by name order, each with the write that set it. */
  endpoints(): Promise<Array<{ endpoint: Endpoint; w: Write }>>;
  /** One live endpoint, or undefined. */
  endpoint(name: string): Promise<{ endpoint: Endpoint; w: Write } | undefined>;
}

export class EndpointProjection implements Projection, EndpointReads {
  readonly #db: ViewDb;

  constructor(db: ViewDb) {
    this.#db = db;
  }

  readonly handlers: Handlers = {
    "endpoint.set": (batch, e, w) =>
      this.#set(
        batch,
        e.name,
        {
          name: e.name,
          url: e.url,
          ...(e.credentialsFile === undefined ? {} : { credentialsFile: e.credentialsFile }),
          ...(e.caFile === undefined ? {} : { caFile: e.caFile }),
          insecure: e.insecure,
        },
        w,
      ),
    "endpoint.deleted": (batch, e, w) => this.#set(batch, e.name, null, w),
  };

  async #set(batch: Batch, name: string, endpoint: Endpoint | null, w: Write): Promise<void> {
    const key = `ep!${name}`;
    const current = await getJson<{ w: Write }>(batch, key);
    if (current !== undefined && !olderWrite(current.w, w)) return;
    batch.put(key, JSON.stringify({ endpoint, w }));
  }

  async endpoints(): Promise<Array<{ endpoint: Endpoint; w: Write }>> {
    const out: Array<{ endpoint: Endpoint; w: Write }> = [];
    for (const [, raw] of await new Batch(this.#db).entriesUnder("ep!")) {
      const v = JSON.parse(raw) as { endpoint: Endpoint | null; w: Write };
      if (v.endpoint !== null) out.push({ endpoint: v.endpoint, w: v.w });
    }
    return out;
  }

  async endpoint(name: string): Promise<{ endpoint: Endpoint; w: Write } | undefined> {
    const v = await getJson<{ endpoint: Endpoint | null; w: Write }>(this.#db, `ep!${name}`);
    return v === undefined || v.endpoint === null ? undefined : { endpoint: v.endpoint, w: v.w };
  }
}
