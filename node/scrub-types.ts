/**
 * The scrubber's shapes (./scrub.ts): where it repairs from, what it finds,
 * a run's record and its options; and the pace that keeps a pass at its
 * rate. Split from scrub.ts to keep that file readable.
 */

import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { Registry as MetricsRegistry } from "prom-client";
import type { Digest } from "../protocol/digest.js";
import type { EventBody } from "../protocol/events.js";
import type { BlobStore } from "./data/blob-store.js";
import type { ContentReads } from "./data/projections/content-reads.js";

/** What the scrub needs of the mesh (a MeshLink): where a repository holds a digest elsewhere, and its bytes. */
export interface RepairSource {
  locate(
    repo: string,
    reference: string,
    manifest: boolean,
  ): Promise<{ region: string; size: number; content: Buffer; digest: string }>;
  fetchFromMesh(repo: string, digest: Digest, signal?: AbortSignal): Readable;
}

export interface ScrubFinding {
  digest: Digest;
  /** What the bytes hash to now. */
  actual: Digest;
  size: number;
  /** A repository of this region linking the digest (none: nothing links it, not repaired). */
  repo?: string;
  outcome: "repaired" | "unrepaired" | "unreferenced";
  /** The region the good bytes came from. */
  from?: string;
  error?: string;
}

export interface ScrubRun {
  runId: string;
  region: string;
  /** background, manual, or read (a manifest read found it: `repairReported`). */
  trigger: "background" | "manual" | "read";
  repair: boolean;
  state: "running" | "finished" | "failed";
  startedAt: string;
  finishedAt?: string;
  error?: string;
  bytesPerSecond: number;
  /** Blobs the first walk of the store counted, and their bytes. */
  blobs: number;
  totalBytes: number;
  /** Blobs and bytes re-hashed so far. */
  checked: number;
  bytes: number;
  /** Blobs gone before their turn (deleted meanwhile). */
  vanished: number;
  /** Blobs that could not be read (the store failed: logged, the pass goes on); checked next pass. */
  errors: number;
  corrupt: number;
  repaired: number;
  findings: ScrubFinding[];
}

export interface ScrubberOptions {
  region: string;
  store: BlobStore;
  content: ContentReads;
  /** The mesh, to repair from; none: corrupt blobs stay quarantined. */
  source?: RepairSource;
  /** Append an admin event (an alert) to the region's log: Registry.commitAdmin. */
  record(body: EventBody, actor: string): Promise<unknown>;
  bytesPerSecond: number;
  metrics: MetricsRegistry;
  logger: Logger;
}

/** Finished runs kept for GET /admin/v1/scrub/runs (this node's, newest last). */

/** Keeps a byte stream at or under `rate` bytes per second on average since its start. */
export class Pace {
  readonly #start = Date.now();
  #bytes = 0;

  constructor(readonly rate: number) {}

  async took(bytes: number, signal: AbortSignal): Promise<void> {
    this.#bytes += bytes;
    const due = this.#start + (this.#bytes / this.rate) * 1000;
    const ahead = due - Date.now();
    if (ahead > 1) await sleep(ahead, undefined, { signal });
  }
}
