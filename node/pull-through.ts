/**
 * Pull-through cache (issue 17, item 3): a project that is a proxy of an
 * upstream registry (protocol/proxy.ts, `meridian project proxy`) answers a
 * pull that misses here from upstream, stores what it fetched through the
 * ordinary write path (blob bytes verified and committed by the store, then
 * `blob.pushed`, `manifest.pushed`, `tag.set` in the one commit step), and
 * serves it from there. So cached content is in the log like a push: it
 * replicates by policy, counts against the project's quota, shows in tag
 * history (actor `system`), and is collected by GC like anything else.
 *
 * Choices where the issue was silent:
 * - A manifest is stored (and so served) only once its whole closure is
 *   stored: an index's children (every platform), each manifest's config and
 *   layers. A cached tag is then always a whole image: pulled again while the
 *   upstream is gone, nothing is missing. The first pull of a tag waits for
 *   that closure (a cost for very large images and many-platform indexes).
 * - A blob miss is fetched whole into the store, then served from it (the
 *   first client waits for the fetch; nothing is relayed before it is
 *   verified, so a corrupt upstream byte never reaches any client). A HEAD
 *   of a blob miss fetches it too. Bytes stream through the store's hashing
 *   write: never buffered whole, never visible unless their digest matched.
 * - Freshness: when this node last confirmed each tag with upstream is
 *   kept in memory (LRU, `CHECKED_TAGS`); a tag not seen since the node
 *   started is checked on its first pull. A check waits at most
 *   `checkTimeoutMs`; past it (or when upstream fails) the cached tag is
 *   served, logged and counted, and a check still running finishes in the
 *   background (bounded by `fetchTimeoutMs` per request). A tag upstream no
 *   longer has is kept (served as cached): a proxy is no mirror of deletes.
 * - Each upstream request is one of at most `concurrency` per node and
 *   endpoint (a closure's requests take turns; no request holds a turn
 *   while waiting for another, so nested fetches cannot deadlock). A pull
 *   that hits never waits for a turn, and one endpoint's slow requests
 *   hold only that endpoint's turns: a slow upstream delays only its own
 *   misses (and its own tag checks, which give up at `checkTimeoutMs`).
 * - Concurrent misses of one manifest (by repository and reference) or one
 *   blob (by digest) share one fetch.
 * - Credentials: the endpoint's credentials file and CA file are read on
 *   this node's host when the endpoint's client is made (again when the
 *   endpoint or one of the files changes); an unreadable file is an upstream error (logged with
 *   its path, never its content).
 */
import { LRUCache } from "lru-cache";
import PQueue from "p-queue";
import type { Logger } from "pino";
import { Counter, type Registry as MetricsRegistry } from "prom-client";
import {
  ExternalRegistryError,
  type ManifestBytes,
  type OciRegistryClient,
} from "../mesh-client/oci-registry-client.js";
import { projectOf } from "../protocol/access.js";
import { Setting } from "../protocol/config-schema.js";
import { type Digest, isDigest } from "../protocol/digest.js";
import {
  AccessDeniedError,
  BlobNotFoundError,
  DigestMismatchError,
  ManifestInvalidError,
  ManifestNotFoundError,
  MeridianError,
  SizeInvalidError,
  UpstreamError,
} from "../protocol/errors.js";
import { parseManifest } from "../protocol/manifest.js";
import { type ProxyConfig, tagIsStale, upstreamRepository } from "../protocol/proxy.js";
import type { Reference, Registry } from "./data/registry.js";
import { REASONS, reasonOf, UpstreamClients } from "./pull-through-upstream.js";

/** The node's `pullThrough` settings (node/config.ts NODE_SETTINGS). */
export function pullThroughSettings() {
  return Setting.section({
    concurrency: Setting.integer({
      env: "MERIDIAN_PULL_THROUGH_CONCURRENCY",
      default: 8,
      minimum: 1,
      maximum: 256,
      doc: "pull-through cache projects (issue 17): most upstream requests this node has in flight at once to one endpoint (manifests, blobs, tag checks); more wait their turn",
    }),
    checkTimeoutMs: Setting.integer({
      env: "MERIDIAN_PULL_THROUGH_CHECK_TIMEOUT_MS",
      default: 3_000,
      minimum: 100,
      maximum: 60_000,
      doc: "how long a pull of a cached tag past its freshness waits for upstream (the HEAD, and a moved tag's fetch) before it is served the cached tag",
    }),
    fetchTimeoutMs: Setting.integer({
      env: "MERIDIAN_PULL_THROUGH_FETCH_TIMEOUT_MS",
      default: 30_000,
      minimum: 100,
      maximum: 600_000,
      doc: "a miss's upstream request: the longest wait for its answer, and for each next chunk of a body",
    }),
  });
}

/** Tags whose last confirmation with upstream a node remembers (least recently used out first). */
export const CHECKED_TAGS = 100_000;
/** How long after a failed check a tag is served as cached without asking upstream again. */
export const RETRY_CHECK_MS = 30_000;
/** Deepest index nesting followed (an index of indexes of images is 2). */
const MAX_DEPTH = 4;
/** The actor of what the cache stores (reserved: no user can bear it). */
const ACTOR = "system";

export interface PullThroughOptions {
  registry: Registry;
  logger: Logger;
  metrics: MetricsRegistry;
  concurrency: number;
  checkTimeoutMs: number;
  fetchTimeoutMs: number;
  /** The clock (tests of freshness pass none: real time). */
  now?: () => number;
}

export interface Upstream {
  proxy: ProxyConfig;
  repository: string;
}

export class PullThrough {
  readonly #reg: Registry;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #checkTimeoutMs: number;
  readonly #concurrency: number;
  /** One queue of turns per endpoint: a slow upstream holds only its own turns. */
  readonly #queues = new Map<string, PQueue>();
  readonly #clients: UpstreamClients;
  readonly #manifests = new Map<string, Promise<void>>();
  readonly #blobs = new Map<Digest, Promise<void>>();
  readonly #checks = new Map<string, Promise<unknown>>();
  /** `repo:tag` → when this node last confirmed it with upstream. */
  readonly #checked = new LRUCache<string, number>({ max: CHECKED_TAGS });
  readonly #requests: Counter<"kind" | "result">;
  readonly #errors: Counter<"reason">;

  constructor(options: PullThroughOptions) {
    this.#reg = options.registry;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
    this.#checkTimeoutMs = options.checkTimeoutMs;
    this.#concurrency = options.concurrency;
    this.#requests = new Counter({
      name: "meridian_node_pull_through_requests_total",
      help: "Pulls in pull-through cache projects by kind (manifest, blob) and result: hit (served from the cache), fresh (a tag confirmed with upstream), refreshed (a tag moved upstream, fetched and moved here), stale (a cached tag served because upstream failed or was slow), miss (fetched from upstream), absent (upstream does not have it), failed (upstream failed a miss)",
      labelNames: ["kind", "result"] as const,
      registers: [options.metrics],
    });
    this.#errors = new Counter({
      name: "meridian_node_pull_through_upstream_errors_total",
      help: "Upstream requests of pull-through cache projects that failed, by reason (unauthorized, not_found, timeout, connect, digest_mismatch, server, other)",
      labelNames: ["reason"] as const,
      registers: [options.metrics],
    });
    for (const reason of REASONS) this.#errors.inc({ reason }, 0);
    this.#clients = new UpstreamClients(this.#reg.view.endpoints, this.#logger, options, (reason) =>
      this.#errors.inc({ reason }),
    );
  }

  /** The upstream of `repo` when its project is a proxy (no IO: the view holds proxies in memory). */
  upstreamOf(repo: string): Upstream | undefined {
    const proxy = this.#reg.view.proxies.proxyOf(projectOf(repo));
    if (proxy === undefined) return undefined;
    const repository = upstreamRepository(repo, proxy);
    return repository === undefined ? undefined : { proxy, repository };
  }

  /** A push into a proxy project: refused with DENIED naming the upstream (the cache is upstream's copy). */
  refusePush(repo: string): void {
    const proxy = this.#reg.view.proxies.proxyOf(projectOf(repo));
    if (proxy === undefined) return;
    throw new AccessDeniedError(
      `${proxy.project} is a pull-through cache of endpoint ${proxy.endpoint}: push to the upstream registry instead`,
      { detail: { project: proxy.project, endpoint: proxy.endpoint } },
    );
  }

  count(kind: "manifest" | "blob", result: string): void {
    this.#requests.inc({ kind, result });
  }

  /**
   * A cached tag was found here (digest `cached`): when it is past its
   * freshness, confirm it with upstream (HEAD), and fetch and move it when
   * upstream moved it, waiting at most `checkTimeoutMs`. Resolves true when
   * the tag may have moved (the caller resolves it again), false to serve
   * what it has. Never throws: upstream failures serve the cached tag.
   */
  async refresh(repo: string, tag: string, cached: Digest, up: Upstream): Promise<boolean> {
    const key = `${repo}:${tag}`;
    const checkedAt = this.#checked.get(key);
    if (checkedAt !== undefined && !tagIsStale(checkedAt, this.#now(), up.proxy)) {
      this.count("manifest", "hit");
      return false;
    }
    let pending = this.#checks.get(key);
    if (pending === undefined) {
      // Settles with the failure instead of rejecting: a check outliving its waiters must not go unhandled.
      pending = this.#check(repo, tag, cached, up).then(
        () => undefined,
        (err: unknown) => err ?? new Error("check failed"),
      );
      const settled = pending.finally(() => this.#checks.delete(key));
      this.#checks.set(key, settled);
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), this.#checkTimeoutMs);
    });
    const outcome = await Promise.race([pending, late]);
    clearTimeout(timer);
    if (outcome === undefined) return true;
    const log = { repo, tag, endpoint: up.proxy.endpoint };
    if (outcome === "late") this.#logger.warn(log, "upstream slow: cached tag served");
    else this.#logger.warn({ ...log, err: brief(outcome) }, "upstream check failed: cached tag served");
    this.count("manifest", "stale");
    return false;
  }

  /**
   * Confirm a tag with upstream. A failed check is not asked again for
   * min(freshness, RETRY_CHECK_MS): a dead upstream costs a pull of that tag
   * no wait meanwhile (a moved tag is then seen that much later).
   */
  async #check(repo: string, tag: string, cached: Digest, up: Upstream): Promise<void> {
    try {
      await this.#confirm(repo, tag, cached, up);
    } catch (err) {
      const interval = up.proxy.freshnessSeconds * 1000;
      this.#checked.set(`${repo}:${tag}`, this.#now() - interval + Math.min(interval, RETRY_CHECK_MS));
      throw err;
    }
  }

  async #confirm(repo: string, tag: string, cached: Digest, up: Upstream): Promise<void> {
    const clients = await this.#clients.for(up.proxy);
    const head = await this.#upstream(up.proxy.endpoint, () =>
      clients.check.headManifest(up.repository, tag),
    );
    // An upstream whose HEAD names no digest is asked with a GET (its bytes hashed by the client).
    const current =
      head === undefined || isDigest(head.digest)
        ? head?.digest
        : (await this.#upstream(up.proxy.endpoint, () => clients.check.getManifest(up.repository, tag)))
            ?.digest;
    if (current === undefined || current === cached) {
      this.count("manifest", "fresh");
    } else {
      await this.#shared(this.#manifests, `${repo}@${tag}`, () =>
        this.#fetchManifest(repo, { tag }, up, clients.fetch),
      );
      this.count("manifest", "refreshed");
    }
    this.#checked.set(`${repo}:${tag}`, this.#now());
  }

  /**
   * A manifest this region lacks in a proxy project: fetched from upstream
   * (its bytes verified against the digest asked for or the one upstream
   * names), its closure stored, then the manifest pushed here (by tag: the
   * tag set). ManifestNotFoundError when upstream does not have it;
   * UpstreamError when upstream failed.
   */
  async manifestMiss(repo: string, reference: Reference, up: Upstream): Promise<void> {
    const key = `${repo}@${"tag" in reference ? reference.tag : reference.digest}`;
    try {
      await this.#shared(this.#manifests, key, async () =>
        this.#fetchManifest(repo, reference, up, (await this.#clients.for(up.proxy)).fetch),
      );
      this.count("manifest", "miss");
    } catch (err) {
      this.count("manifest", err instanceof ManifestNotFoundError ? "absent" : "failed");
      // Upstream's manifest is no valid one: upstream's fault, not the client's request.
      if (err instanceof ManifestInvalidError)
        throw new UpstreamError(`upstream sent an invalid manifest: ${err.message}`, { cause: err });
      throw err;
    }
    if ("tag" in reference) this.#checked.set(`${repo}:${reference.tag}`, this.#now());
  }

  async #fetchManifest(
    repo: string,
    reference: Reference,
    up: Upstream,
    client: OciRegistryClient,
  ): Promise<void> {
    const ref = "tag" in reference ? reference.tag : reference.digest;
    const manifest = await this.#upstream(up.proxy.endpoint, () => client.getManifest(up.repository, ref));
    if (manifest === undefined)
      throw new ManifestNotFoundError("manifest unknown upstream", {
        detail: { repository: up.repository, reference: ref },
      });
    await this.#closure(repo, up, client, manifest, 0);
    await this.#reg.putManifest(repo, reference, manifest.bytes, manifest.mediaType, ACTOR);
    this.#logger.info({ repo, reference: ref, digest: manifest.digest }, "cached from upstream");
  }

  /** Store everything `manifest` refers to (blobs; an index's children, each with its own closure). */
  async #closure(
    repo: string,
    up: Upstream,
    client: OciRegistryClient,
    manifest: ManifestBytes,
    depth: number,
  ): Promise<void> {
    const parsed = parseManifest(manifest.bytes, manifest.mediaType);
    await Promise.all(parsed.blobs.map((digest) => this.#blob(repo, up, client, digest)));
    if (parsed.manifests.length > 0 && depth >= MAX_DEPTH)
      throw new UpstreamError(`upstream index ${manifest.digest} nests deeper than ${MAX_DEPTH}`);
    await Promise.all(
      parsed.manifests.map(async (digest) => {
        if ((await this.#reg.view.content.manifest(repo, digest)) !== undefined) return;
        await this.#shared(this.#manifests, `${repo}@${digest}`, async () => {
          const child = await this.#upstream(up.proxy.endpoint, () =>
            client.getManifest(up.repository, digest),
          );
          if (child === undefined)
            throw new UpstreamError(`upstream index ${manifest.digest} names ${digest}, which it lacks`);
          await this.#closure(repo, up, client, child, depth + 1);
          await this.#reg.putManifest(repo, { digest }, child.bytes, child.mediaType, ACTOR);
        });
      }),
    );
  }

  /**
   * A blob this region lacks in a proxy project: fetched into the store and
   * linked into `repo`. UpstreamError when upstream failed or sent other
   * bytes (nothing stored); BlobNotFoundError when upstream does not have it.
   */
  async blobMiss(repo: string, digest: Digest, up: Upstream): Promise<void> {
    try {
      await this.#blob(repo, up, (await this.#clients.for(up.proxy)).fetch, digest);
      this.count("blob", "miss");
    } catch (err) {
      const absent =
        err instanceof UpstreamError && (err.detail as { reason?: string })?.reason === "not_found";
      this.count("blob", absent ? "absent" : "failed");
      if (absent) throw new BlobNotFoundError("blob unknown upstream", { detail: { digest } });
      throw err;
    }
  }

  async #blob(repo: string, up: Upstream, client: OciRegistryClient, digest: Digest): Promise<void> {
    if ((await this.#reg.linkedBlobSize(repo, digest)) !== undefined) return;
    if ((await this.#reg.store.stat(digest)) === undefined) {
      await this.#shared(this.#blobs, digest, () =>
        this.#upstream(up.proxy.endpoint, async () => {
          // Another fetch of it may have committed between the stat above and this turn.
          if ((await this.#reg.store.stat(digest)) !== undefined) return;
          const { size, stream } = await client.getBlob(up.repository, digest);
          await this.#reg.store.write(stream, digest, size >= 0 ? size : undefined);
        }),
      );
    }
    if ((await this.#reg.linkStored(repo, digest, ACTOR)) === undefined)
      throw new UpstreamError(`blob ${digest} fetched from upstream is not in the store`);
  }

  /** One call per key at a time: every caller asking meanwhile shares its outcome. */
  #shared<K>(map: Map<K, Promise<void>>, key: K, run: () => Promise<void>): Promise<void> {
    let pending = map.get(key);
    if (pending === undefined) {
      pending = run().finally(() => map.delete(key));
      map.set(key, pending);
    }
    return pending;
  }

  /**
   * One upstream request in one of the node's `concurrency` turns; its
   * failure logged, counted by reason and turned into an UpstreamError
   * (whose message names the request and status, never a credential).
   */
  async #upstream<T>(endpoint: string, call: () => Promise<T>): Promise<T> {
    let queue = this.#queues.get(endpoint);
    if (queue === undefined) {
      queue = new PQueue({ concurrency: this.#concurrency });
      this.#queues.set(endpoint, queue);
    }
    try {
      return (await queue.add(call)) as T;
    } catch (err) {
      if (err instanceof DigestMismatchError || err instanceof SizeInvalidError) {
        // The store's own check of the bytes streamed in (the client's may not have fired first).
        this.#errors.inc({ reason: "digest_mismatch" });
        this.#logger.warn({ endpoint, err: err.message }, "upstream sent other bytes than asked for");
        throw new UpstreamError(`upstream sent other bytes than asked for: ${err.message}`, {
          cause: err,
          detail: { reason: "digest_mismatch" },
        });
      }
      if (!(err instanceof ExternalRegistryError)) {
        if (err instanceof MeridianError) throw err;
        this.#errors.inc({ reason: "other" });
        throw new UpstreamError(`upstream request failed: ${brief(err)}`, { cause: err });
      }
      const reason = reasonOf(err);
      this.#errors.inc({ reason });
      this.#logger.warn(
        { endpoint, reason, status: err.status, err: err.message },
        "upstream request failed",
      );
      const message =
        reason === "unauthorized"
          ? `upstream refused this registry's credentials (401): check the endpoint's credentials file; ${err.message}`
          : `upstream failed: ${err.message}`;
      throw new UpstreamError(message, { cause: err, detail: { reason } });
    }
  }
}

/** An error's message for a log line, bounded. */
function brief(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 300);
}
