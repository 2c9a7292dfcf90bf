/**
 * The repositories' home regions as the front door routes writes by them
 * (see "Where a request goes" in ./front-door-requests.ts): the union of
 * every up region's `GET /admin/v1/rules` (mergeHomeRules), re-read every
 * `rulesRefreshMs`, at once after an admin write passed through the front
 * door, and on demand (at most every 250 ms) when a write finds no home.
 */
import type { Agent } from "node:http";
import type { Logger } from "pino";
import type { ServiceToken } from "../mesh-client/service-token.js";
import { type HomeRules, homeOf, mergeHomeRules, type RulesDocument } from "./front-door-routing.js";
import { registryRequest } from "./registry-http.js";

/** At most this often, a write that finds no home re-reads the rules first. */
const HOMES_ON_DEMAND_MS = 250;

/** The repositories' home regions, re-read from every up region's admin API. */
export class HomeCache {
  #rules: HomeRules = new Map();
  #startedAt = 0;
  #stale = false;
  #inflight: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly sources: () => Array<{ registry: string; agent: Agent }>,
    private readonly timeoutMs: number,
    private readonly log: Logger,
    /** Signs in to the regions' admin API when they run with auth. */
    private readonly token?: ServiceToken,
  ) {}

  get rules(): HomeRules {
    return this.#rules;
  }

  start(everyMs: number): void {
    this.#timer = setInterval(() => void this.refresh(), everyMs);
  }

  stop(): Promise<void> {
    clearInterval(this.#timer);
    return this.#inflight ?? Promise.resolve();
  }

  /** Re-read before the next write is routed (an admin write passed through). */
  invalidate(): void {
    this.#stale = true;
    void this.refresh();
  }

  /** Before routing a write: re-read if invalidated, or if `repo` has no home and the rules are not fresh. */
  async beforeWrite(repo: string | undefined, now: number): Promise<void> {
    if (this.#stale) return this.refresh();
    if (
      repo !== undefined &&
      homeOf(repo, this.#rules) === undefined &&
      now - this.#startedAt >= HOMES_ON_DEMAND_MS
    )
      return this.refresh();
  }

  refresh(): Promise<void> {
    if (this.#inflight !== undefined) return this.#inflight;
    this.#startedAt = Date.now();
    this.#stale = false;
    this.#inflight = this.#read().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  async #read(): Promise<void> {
    const registries = this.sources();
    const documents: RulesDocument[] = [];
    await Promise.all(
      registries.map(async ({ registry, agent }) => {
        try {
          const res = await registryRequest(`${registry}/admin/v1/rules`, {
            agent,
            ...(this.token === undefined ? {} : { headers: { authorization: await this.token.header() } }),
            signal: AbortSignal.timeout(this.timeoutMs),
          });
          if (res.status === 200) documents.push(JSON.parse(res.body.toString("utf8")) as RulesDocument);
        } catch (err) {
          this.log.debug({ err, registry }, "rules unavailable");
        }
      }),
    );
    if (documents.length > 0) this.#rules = mergeHomeRules(documents);
  }
}
