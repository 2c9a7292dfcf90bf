/**
 * The scrub (issue 15, item 5): re-read every blob of the region's store at a
 * bounded rate, re-hash it, and deal with any whose bytes no longer match
 * their digest (bit rot, a disk or an S3 backend returning wrong bytes, a
 * hand edit):
 *
 * 1. quarantine: the bytes are moved out of the digest's place
 *    (`BlobStore.quarantine`: `quarantine/` in the store, kept for a look,
 *    never read again). From then on the digest is absent here, so a GET of
 *    it is a miss and fetch on miss (./fetch-on-miss.ts) serves it from a
 *    healthy region, verified, storing it again as it goes; a HEAD still
 *    answers from the view's link (the size is metadata, and right).
 * 2. repair: a repository of this region that links the digest is found in
 *    the view, and the bytes are fetched by digest from the nearest other
 *    region holding them there (the region's peer: ./mesh-link.ts `locate`,
 *    `fetchFromMesh`), verified as they stream and committed (the store's
 *    `write` with the expected digest and size: wrong bytes are never
 *    stored). A manifest is fetched whole (`locate` returns its verified
 *    bytes). Without a mesh, or when no region holds it, the blob stays
 *    quarantined (pulls of it are 404 BLOB_UNKNOWN / MANIFEST_UNKNOWN) and the
 *    alert says so: restore it from a backup. A digest no repository links
 *    (a fetch-on-miss cache, an orphan) is quarantined and not repaired.
 *
 * Each finding is an `alert.raised` event in the region's log (kind
 * `blob-corrupt`, then `blob-repaired` or nothing more), so `meridian alerts`
 * and GET /admin/v1/alerts show it in every region; no new event type was
 * needed (alerts already replicate and have a projection). Metrics
 * `meridian_scrub_*`: runs by outcome, bytes and blobs checked, corrupt blobs
 * found, repairs by outcome, the last finished run's time.
 *
 * Why in the node (not the worker or the peer): the node already holds
 * everything a scrub touches — the blob store, the view (which repository
 * links a digest), the link to its peer that fetches by digest from other
 * regions, the log it appends alerts to, and the admin API that starts a run
 * and reports its progress — so nothing new crosses a process boundary. A
 * region of several nodes sharing one store must let one of them run the
 * background pass (`scrub.intervalHours` 0 on the others; `meridian up
 * --nodes N` does that); a manual run goes to whichever node the CLI reaches.
 *
 * What a pull does meanwhile: a manifest's stored bytes are verified when
 * they are read into the node's manifest cache (once per fill, a few KiB;
 * never on a cached GET): wrong ones are quarantined, the GET is answered
 * from another region (fetch on miss), and `repairReported` repairs them in
 * the background (a run of trigger `read`). A blob GET does not hash what it
 * serves (that would put a hash of every byte on the blob fast path), so
 * between a layer's corruption and the scrub's pass a GET serves the wrong
 * bytes. No client accepts them silently: every OCI client (docker,
 * containerd, podman, skopeo) checks a blob's digest and fails the pull; and
 * replication and fetch on miss in other regions verify what they copy, so a
 * bad copy never spreads. For layers the scrub is the detector; its rate
 * bounds how long that window lasts.
 *
 * Pacing: bytes are read at most `bytesPerSecond` averaged over the run
 * (a sleep after each chunk that got ahead), so a pass over S bytes takes
 * about S / rate. One run at a time per node; asking for a run while one is
 * going returns that one.
 *
 * A race accepted: a blob replaced by good bytes between its hash and its
 * quarantine (only a write of a digest that was absent does that) is
 * quarantined needlessly and repaired again; nothing is lost.
 */
import { randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import { Counter, Gauge } from "prom-client";
import { algorithmOf, type Digest, digestFromHash, digestOf, newHash } from "../protocol/digest.js";
import { BlobNotFoundError } from "../protocol/errors.js";
import type { EventBody } from "../protocol/events.js";
import type { StoredBlob } from "./data/blob-store.js";
import {
  Pace,
  type RepairSource,
  type ScrubberOptions,
  type ScrubFinding,
  type ScrubRun,
} from "./scrub-types.js";

export type { RepairSource, ScrubberOptions, ScrubFinding, ScrubRun } from "./scrub-types.js";

const KEEP_RUNS = 20;
/** The actor of the scrub's alerts. */
export const SCRUB_ACTOR = "scrub";

export class Scrubber {
  readonly #o: ScrubberOptions;
  readonly #runs: ScrubRun[] = [];
  #current: Promise<ScrubRun> | undefined;
  /** Digests reported corrupt by a read, being repaired. */
  readonly #reported = new Set<Digest>();
  #running: ScrubRun | undefined;
  readonly #stop = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  readonly #metrics: {
    runs: Counter<"trigger" | "outcome">;
    bytes: Counter;
    blobs: Counter<"result">;
    repairs: Counter<"outcome">;
    last: Gauge;
  };

  constructor(options: ScrubberOptions) {
    this.#o = options;
    const registers = [options.metrics];
    this.#metrics = {
      runs: new Counter({
        name: "meridian_scrub_runs_total",
        help: "Scrub passes finished, by trigger (background, manual) and outcome (ok, failed)",
        labelNames: ["trigger", "outcome"] as const,
        registers,
      }),
      bytes: new Counter({
        name: "meridian_scrub_bytes_total",
        help: "Blob bytes the scrub re-read and re-hashed",
        registers,
      }),
      blobs: new Counter({
        name: "meridian_scrub_blobs_total",
        help: "Blobs the scrub checked, by result: ok, corrupt (bytes not matching the digest: quarantined), vanished (deleted before their turn), error (could not be read)",
        labelNames: ["result"] as const,
        registers,
      }),
      repairs: new Counter({
        name: "meridian_scrub_repairs_total",
        help: "Corrupt blobs by what became of them: repaired (copied back from a peer, verified), unrepaired (no region could give them; they stay quarantined), unreferenced (nothing links them; quarantined only)",
        labelNames: ["outcome"] as const,
        registers,
      }),
      last: new Gauge({
        name: "meridian_scrub_last_run_timestamp_seconds",
        help: "When the last scrub pass finished (Unix time; 0: none yet)",
        registers,
      }),
    };
    for (const outcome of ["ok", "failed"])
      for (const trigger of ["background", "manual"]) this.#metrics.runs.inc({ trigger, outcome }, 0);
    for (const result of ["ok", "corrupt", "vanished", "error"]) this.#metrics.blobs.inc({ result }, 0);
    for (const outcome of ["repaired", "unrepaired", "unreferenced"])
      this.#metrics.repairs.inc({ outcome }, 0);
  }

  /** Background passes: the first after `firstAfterMs`, then `intervalMs` after each ends. */
  schedule(firstAfterMs: number, intervalMs: number): void {
    const next = (ms: number) => {
      this.#timer = setTimeout(() => {
        void this.#start("background", true).then(() => {
          if (!this.#stop.signal.aborted) next(intervalMs);
        });
      }, ms);
      this.#timer.unref();
    };
    next(firstAfterMs);
  }

  /** The run going on, or a new one (manual); its record is live (read it for progress). */
  run(options: { repair?: boolean } = {}): ScrubRun {
    if (this.#running === undefined) void this.#start("manual", options.repair ?? true);
    return this.#running!;
  }

  /** Wait for the run going on (if any) to end. */
  async idle(): Promise<void> {
    await this.#current;
  }

  /** A run of this node by id: the one going on or a recent one. */
  get(runId: string): ScrubRun | undefined {
    if (this.#running?.runId === runId) return this.#running;
    return this.#runs.find((r) => r.runId === runId);
  }

  /** This node's recent runs, oldest first, the one going on last. */
  list(): ScrubRun[] {
    return this.#running === undefined ? [...this.#runs] : [...this.#runs, this.#running];
  }

  /**
   * A blob found corrupt outside a run (a manifest read whose bytes did not
   * match: node/data/registry.ts), already quarantined: recorded and repaired
   * like a run's finding, in the background, once per digest at a time.
   * Shown in the node's runs as a run of trigger `read` with that one finding.
   */
  repairReported(repo: string, digest: Digest, actual: Digest, size: number): void {
    if (this.#reported.has(digest) || this.#stop.signal.aborted) return;
    this.#reported.add(digest);
    const run = this.#newRun("read", true);
    run.blobs = 1;
    run.totalBytes = size;
    run.checked = 1;
    run.corrupt = 1;
    this.#metrics.blobs.inc({ result: "corrupt" });
    void this.#corrupt(run, { digest, size, modifiedMs: Date.now() }, actual, this.#stop.signal, false)
      .then(
        (finding) => {
          run.findings.push(finding);
          this.#metrics.repairs.inc({ outcome: finding.outcome });
          if (finding.outcome === "repaired") run.repaired++;
          run.state = "finished";
        },
        (err) => {
          run.state = "failed";
          run.error = String((err as Error)?.message ?? err).slice(0, 500);
        },
      )
      .finally(() => {
        this.#reported.delete(digest);
        run.finishedAt = new Date().toISOString();
        this.#keep(run);
      });
    void repo; // the repository is looked up again (any repository linking it will do)
  }

  /** Stop the background passes and any run going on (it ends `failed`: stopped). */
  async close(): Promise<void> {
    clearTimeout(this.#timer);
    this.#stop.abort(new Error("the node is stopping"));
    await this.#current;
  }

  #newRun(trigger: ScrubRun["trigger"], repair: boolean): ScrubRun {
    return {
      runId: randomUUID(),
      region: this.#o.region,
      trigger,
      repair,
      state: "running",
      startedAt: new Date().toISOString(),
      bytesPerSecond: this.#o.bytesPerSecond,
      blobs: 0,
      totalBytes: 0,
      checked: 0,
      bytes: 0,
      vanished: 0,
      errors: 0,
      corrupt: 0,
      repaired: 0,
      findings: [],
    };
  }

  #keep(run: ScrubRun): void {
    this.#runs.push(run);
    if (this.#runs.length > KEEP_RUNS) this.#runs.shift();
  }

  #start(trigger: ScrubRun["trigger"], repair: boolean): Promise<ScrubRun> {
    if (this.#current !== undefined) return this.#current;
    const run = this.#newRun(trigger, repair);
    this.#running = run;
    this.#current = this.#pass(run)
      .then(
        () => {
          run.state = "finished";
        },
        (err) => {
          run.state = "failed";
          run.error = String((err as Error)?.message ?? err).slice(0, 500);
          this.#o.logger.warn({ err, runId: run.runId }, "scrub failed");
        },
      )
      .then(() => {
        run.finishedAt = new Date().toISOString();
        this.#metrics.runs.inc({ trigger, outcome: run.state === "finished" ? "ok" : "failed" });
        this.#metrics.last.set(Date.now() / 1000);
        this.#keep(run);
        this.#running = undefined;
        this.#current = undefined;
        this.#o.logger.info(
          {
            runId: run.runId,
            checked: run.checked,
            bytes: run.bytes,
            corrupt: run.corrupt,
            repaired: run.repaired,
          },
          "scrub finished",
        );
        return run;
      });
    return this.#current;
  }

  async #pass(run: ScrubRun): Promise<void> {
    const { store } = this.#o;
    const signal = this.#stop.signal;
    if (store.listBlobs === undefined || store.quarantine === undefined)
      throw new Error("this blob store cannot be scrubbed (no listBlobs/quarantine)");
    // Two walks: one counting (the progress's totals) and one checking, rather than a list of
    // every digest in memory (a store of millions of blobs). A blob committed between the two
    // walks may be checked beyond the count.
    for await (const blob of store.listBlobs(signal)) {
      run.blobs++;
      run.totalBytes += blob.size;
    }
    const pace = new Pace(this.#o.bytesPerSecond);
    for await (const blob of store.listBlobs(signal)) {
      signal.throwIfAborted();
      let actual: Digest | undefined;
      try {
        actual = await this.#hash(blob.digest, pace, run, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        // One unreadable blob (an S3 hiccup, an I/O error) does not end a pass of hours.
        run.errors++;
        this.#metrics.blobs.inc({ result: "error" });
        this.#o.logger.warn({ err, digest: blob.digest, runId: run.runId }, "scrub could not read a blob");
        continue;
      }
      if (actual === undefined) {
        run.vanished++;
        this.#metrics.blobs.inc({ result: "vanished" });
        continue;
      }
      run.checked++;
      if (actual === blob.digest) {
        this.#metrics.blobs.inc({ result: "ok" });
        continue;
      }
      run.corrupt++;
      this.#metrics.blobs.inc({ result: "corrupt" });
      const finding = await this.#corrupt(run, blob, actual, signal);
      run.findings.push(finding);
      this.#metrics.repairs.inc({ outcome: finding.outcome });
      if (finding.outcome === "repaired") run.repaired++;
    }
  }

  /** What the stored bytes of `digest` hash to now; undefined when it is gone. */
  async #hash(digest: Digest, pace: Pace, run: ScrubRun, signal: AbortSignal): Promise<Digest | undefined> {
    const algorithm = algorithmOf(digest);
    const hash = newHash(algorithm);
    let stream: Readable;
    try {
      stream = await this.#o.store.read(digest, undefined, signal);
    } catch (err) {
      if (err instanceof BlobNotFoundError) return undefined;
      throw err;
    }
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        hash.update(chunk);
        run.bytes += chunk.byteLength;
        this.#metrics.bytes.inc(chunk.byteLength);
        await pace.took(chunk.byteLength, signal);
      }
    } finally {
      stream.destroy();
    }
    return digestFromHash(hash, algorithm);
  }

  /** Quarantine, record, repair, record: one corrupt blob. */
  async #corrupt(
    run: ScrubRun,
    blob: StoredBlob,
    actual: Digest,
    signal: AbortSignal,
    quarantine = true,
  ): Promise<ScrubFinding> {
    const { digest, size } = blob;
    const log = this.#o.logger;
    if (quarantine) await this.#o.store.quarantine!(digest, signal);
    const repo = await this.#linkingRepo(digest);
    log.error(
      { digest, actual, repo, runId: run.runId },
      "stored blob does not match its digest: quarantined",
    );
    const finding: ScrubFinding = {
      digest,
      actual,
      size,
      ...(repo === undefined ? {} : { repo: repo.name }),
      outcome: repo === undefined ? "unreferenced" : "unrepaired",
    };
    await this.#alert(
      "blob-corrupt",
      `stored bytes of ${digest} in ${this.#o.region} do not match the digest (they hash to ${actual}): quarantined`,
      finding,
      run,
    );
    if (repo === undefined || !run.repair) return finding;
    if (this.#o.source === undefined) {
      finding.error = "no mesh to repair from: restore it from a backup";
      return finding;
    }
    try {
      finding.from = await this.#repair(this.#o.source, repo, digest, size, signal);
      finding.outcome = "repaired";
      log.warn(
        { digest, repo: repo.name, peer: finding.from, runId: run.runId },
        "corrupt blob repaired from a peer",
      );
      await this.#alert(
        "blob-repaired",
        `${digest} in ${this.#o.region} repaired from region ${finding.from}`,
        finding,
        run,
      );
    } catch (err) {
      finding.error = String((err as Error)?.message ?? err).slice(0, 300);
      log.warn({ err, digest, repo: repo.name, runId: run.runId }, "corrupt blob not repaired");
    }
    return finding;
  }

  /** Copy `digest` back from the nearest other region holding it in `repo`, verified; returns that region. */
  async #repair(
    source: RepairSource,
    repo: { name: string; manifest: boolean },
    digest: Digest,
    size: number,
    signal: AbortSignal,
  ): Promise<string> {
    const located = await source.locate(repo.name, digest, repo.manifest);
    if (repo.manifest) {
      // locate verified the manifest's bytes against the digest; writeAll checks again.
      if (digestOf(located.content, algorithmOf(digest)) !== digest) throw new Error("peer sent wrong bytes");
      await this.#o.store.writeAll(located.content, digest, signal);
    } else {
      await this.#o.store.write(
        source.fetchFromMesh(repo.name, digest, signal),
        digest,
        located.size ?? size,
        signal,
      );
    }
    return located.region;
  }

  /** A repository of this region whose view links `digest` (as a blob or a manifest). */
  async #linkingRepo(digest: Digest): Promise<{ name: string; manifest: boolean } | undefined> {
    const content = this.#o.content;
    let last: string | undefined;
    for (let page = 0; page < 100_000; page++) {
      const { items } = await content.repositories(1000, last);
      for (const name of items) {
        if ((await content.manifest(name, digest)) !== undefined) return { name, manifest: true };
        if ((await content.blobLink(name, digest)) !== undefined) return { name, manifest: false };
      }
      if (items.length < 1000) return undefined;
      last = items[items.length - 1];
    }
    return undefined;
  }

  async #alert(kind: string, message: string, finding: ScrubFinding, run: ScrubRun): Promise<void> {
    const { repo, ...detail } = finding;
    try {
      await this.#o.record(
        {
          type: "alert.raised",
          kind,
          message,
          ...(repo === undefined ? {} : { repo }),
          detail: { ...detail, region: this.#o.region, runId: run.runId },
        } as EventBody,
        SCRUB_ACTOR,
      );
    } catch (err) {
      // The log may be down: the finding is still in the run's record, the metric and the log line.
      this.#o.logger.warn({ err, digest: finding.digest }, "scrub alert not stored");
    }
  }
}
