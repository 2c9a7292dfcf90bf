/**
 * The checkpoint file of `meridian import` (the record is protocol/import-plan.ts's
 * `ImportCheckpoint`): read at the start, written as tags finish.
 *
 * Writes are atomic (a temporary file in the same directory, then a rename,
 * mode 0600) and at most one a second while the run goes (a run of
 * thousands of small tags would otherwise spend its time rewriting the
 * file), and once more at the end or on SIGINT. A run killed without a
 * chance to write (SIGKILL) loses at most the last second's entries: those
 * tags are then found present in Meridian at the same digest by the next
 * run (one HEAD each), not copied again.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import {
  checkpointKey,
  checkpointMismatch,
  emptyCheckpoint,
  type ImportCheckpoint,
  parseCheckpoint,
} from "../protocol/import-plan.js";
import { CommandError, UsageError } from "./admin-client.js";

const WRITE_EVERY_MS = 1_000;

/** The default checkpoint: in the working directory, one per endpoint and region. */
export function defaultCheckpointPath(endpoint: string, region: string): string {
  return `meridian-import-${endpoint}-${region}.checkpoint.json`;
}

export class CheckpointFile {
  readonly checkpoint: ImportCheckpoint;
  #dirty = false;
  #lastWrite = 0;
  #timer: NodeJS.Timeout | undefined;

  /** Read `path` (or start empty); a file for another import is a usage error. */
  constructor(
    readonly path: string,
    of: Omit<ImportCheckpoint, "version" | "done">,
  ) {
    if (!existsSync(path)) {
      this.checkpoint = emptyCheckpoint(of);
      return;
    }
    let read: ImportCheckpoint;
    try {
      read = parseCheckpoint(readFileSync(path, "utf8"));
    } catch (err) {
      throw new CommandError(
        `checkpoint ${path}: ${(err as Error).message}; remove it or name another with --checkpoint`,
      );
    }
    const mismatch = checkpointMismatch(read, of);
    if (mismatch !== undefined)
      throw new UsageError(`checkpoint ${path}: ${mismatch}; name another with --checkpoint FILE`);
    this.checkpoint = read;
  }

  get entries(): number {
    return Object.keys(this.checkpoint.done).length;
  }

  /** Record a finished tag; written within a second. */
  finished(repo: string, tag: string, digest: string): void {
    this.checkpoint.done[checkpointKey(repo, tag)] = digest;
    this.#dirty = true;
    const wait = this.#lastWrite + WRITE_EVERY_MS - performance.now();
    if (wait <= 0) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), wait);
  }

  /** Write now when anything changed (write + rename). */
  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!this.#dirty) return;
    const tmp = join(dirname(this.path), `.${basename(this.path)}.${process.pid}.tmp`);
    writeFileSync(tmp, `${JSON.stringify(this.checkpoint, null, 1)}\n`, { mode: 0o600 });
    renameSync(tmp, this.path);
    this.#dirty = false;
    this.#lastWrite = performance.now();
  }
}
