/**
 * `meridian backup` and `meridian restore` (issue 15, item 7): a region that
 * has no peer to rebuild from (a single-region install, or a mesh that lost
 * every region) comes back from a snapshot. With a peer, `rebuild-region`
 * (./dr.ts) is the better tool: it also brings what happened after the
 * snapshot.
 *
 * **A snapshot** is the region's log up to one sequence number S (read at
 * the start: everything acknowledged before the backup began is in it)
 * plus every blob those events name (blob.pushed, and manifest.pushed's own
 * digest, blobs and child manifests), written to a target (./backup-target.ts):
 * `events-S.ndjson` (one `{"seq","event"}` line per event, in order), then
 * the blobs, then `backup.json` naming that events file — so a target always
 * describes one complete snapshot: a backup cut short leaves the previous
 * one in force (the events files of earlier snapshots stay beside it: they
 * are small, and removing them is left to whoever prunes old backups). The
 * region keeps serving throughout (an online backup:
 * blobs are immutable by digest, and the events past S are simply not in
 * this snapshot). Blobs are copied through the blob store interface,
 * verified against their digest, and only when the target lacks them, so a
 * later backup to the same target copies only new blobs. A blob an event
 * names that is no longer in the region's store (content deleted and
 * collected since) is reported as skipped, by digest.
 *
 * **Restore** needs a wiped region: its stream empty or absent, or holding
 * only this snapshot's events (a restore cut short, which it then finishes)
 * and events replicated in from live peers since the wipe; a write of the
 * region's own that is not in the snapshot is refused, changing nothing. Its
 * store may be empty or not. It copies the
 * snapshot's blobs into the region's store first (verified again, skipping
 * those present), then appends the events in their order, each with its own
 * id as the message id, so a restore cut short and run again appends no
 * event twice (JetStream's de-duplication window, 2 minutes; past it, run
 * it into a wiped stream again). Nodes may be running: they apply the events
 * as they arrive, as from any append. On an empty stream the events get
 * back their sequence numbers 1..N when the backed-up stream had no gaps.
 * In a mesh, the other regions' workers re-read the restored log from its
 * start (their durable consumers lived in the wiped region's JetStream) and
 * skip what they already hold (events are de-duplicated by origin id).
 */
import { pino } from "pino";
import type { BlobStore } from "../node/data/blob-store.js";
import { JetStreamLog } from "../node/data/jetstream-log.js";
import type { NatsClientConfig } from "../node/data/nats-connect.js";
import { type BlobStoreConfig, openBlobStore } from "../node/data/open-blob-store.js";
import type { Digest } from "../protocol/digest.js";
import { decodeEvent, encodeEvent, type RegistryEvent } from "../protocol/events.js";
import { type BackupTarget, openTarget, type TargetS3Settings } from "./backup-target.js";
import { mib, type ProgressOptions, progress } from "./progress.js";

export const BACKUP_FORMAT = "meridian-backup/1";

/** What `backup.json` says. */
export interface SnapshotDescription {
  format: typeof BACKUP_FORMAT;
  region: string;
  /** The last sequence number of the log in the snapshot (0: empty). */
  lastSeq: number;
  events: number;
  eventsFile: string;
  blobs: number;
  bytes: number;
  /** Blobs the events name that the region no longer stored. */
  skipped: Digest[];
  createdAt: string;
}

export interface RegionAccess {
  region: string;
  /** The region's NATS: one URL or its cluster's list. */
  nats: string | string[];
  natsClient?: NatsClientConfig;
  store: BlobStoreConfig;
}

export interface BackupOptions extends RegionAccess {
  /** A directory or s3://BUCKET[/PREFIX]. */
  to: string;
  targetS3?: TargetS3Settings;
  /** Where progress is drawn (./progress.ts; default stderr). */
  progressTo?: ProgressOptions["stream"];
}

export interface RestoreOptions extends RegionAccess {
  from: string;
  targetS3?: TargetS3Settings;
  progressTo?: ProgressOptions["stream"];
}

/**
 * Refused, nothing changed in the region: a restore (the region is not
 * wiped, the snapshot is not one), or a backup that found none of the blobs
 * its events name (the wrong store: it would be a snapshot of nothing).
 */
export class RefusedError extends Error {}

const quiet = pino({ level: "silent" });

function openLog(access: RegionAccess, name: string): JetStreamLog {
  return JetStreamLog.open({
    servers: Array.isArray(access.nats) ? access.nats : [access.nats],
    region: access.region,
    name,
    nats: access.natsClient,
    logger: quiet,
  });
}

/** The blobs a snapshot's events name, in first-named order. */
function blobsOf(events: readonly RegistryEvent[]): Map<Digest, number | undefined> {
  const out = new Map<Digest, number | undefined>();
  for (const e of events) {
    if (e.type === "blob.pushed") out.set(e.digest, e.size);
    else if (e.type === "manifest.pushed") {
      out.set(e.digest, e.size);
      for (const d of [...e.blobs, ...e.manifests]) if (!out.has(d)) out.set(d, undefined);
    }
  }
  return out;
}

/** Copy `digest` from one store into another unless it is there; its size, or undefined when `from` lacks it. */
async function copyBlob(
  from: BlobStore,
  to: BlobStore,
  digest: Digest,
): Promise<{ size?: number; copied: boolean }> {
  const size = await from.stat(digest);
  if (size === undefined) return { copied: false };
  if ((await to.stat(digest)) !== undefined) return { size, copied: false };
  await to.write(await from.read(digest), digest, size);
  return { size, copied: true };
}

export async function backup(options: BackupOptions): Promise<SnapshotDescription & { newBlobs: number }> {
  const shown = (label: string, total: number, noun: string) =>
    progress(label, total, { stream: options.progressTo, noun });
  const log = openLog(options, "meridian-backup");
  const store = await openBlobStore(options.store);
  try {
    const target = await openTarget(options.to, options.targetS3);
    await log.ready();
    const lastSeq = await log.lastSeq();
    const events: { seq: number; event: RegistryEvent }[] = [];
    const reading = shown(`backup of ${options.region}: events`, lastSeq, "events");
    if (lastSeq > 0) {
      const stop = new AbortController();
      for await (const e of log.tail(1, stop.signal)) {
        events.push(e);
        reading.update(e.seq);
        if (e.seq >= lastSeq) break;
      }
      stop.abort();
    }
    reading.update(lastSeq);
    reading.finish();
    const eventsFile = `events-${lastSeq}.ndjson`;
    const lines = events.map(({ seq, event }) =>
      JSON.stringify({ seq, event: JSON.parse(Buffer.from(encodeEvent(event)).toString("utf8")) }),
    );
    await target.put(eventsFile, Buffer.from(lines.length === 0 ? "" : `${lines.join("\n")}\n`));

    const wanted = blobsOf(events.map((e) => e.event));
    let done = 0;
    let bytes = 0;
    let newBlobs = 0;
    const skipped: Digest[] = [];
    const copying = shown(`backup of ${options.region}: blobs`, wanted.size, "blobs");
    for (const digest of wanted.keys()) {
      const { size, copied } = await copyBlob(store, target.blobs, digest);
      done++;
      if (size === undefined) skipped.push(digest);
      else bytes += size;
      if (copied) newBlobs++;
      copying.update(done, `${mib(bytes)} MiB, ${newBlobs} new`);
    }
    copying.finish();
    if (wanted.size > 0 && skipped.length === wanted.size)
      throw new RefusedError(
        `none of the ${wanted.size} blobs region ${options.region}'s log names is in its store (${storeName(options.store)}): the wrong store? (a mesh of 'up --s3': add --s3); backup.json left as it was`,
      );
    const description: SnapshotDescription = {
      format: BACKUP_FORMAT,
      region: options.region,
      lastSeq,
      events: events.length,
      eventsFile,
      blobs: wanted.size - skipped.length,
      bytes,
      skipped,
      createdAt: new Date().toISOString(),
    };
    await target.put("backup.json", Buffer.from(`${JSON.stringify(description, null, 2)}\n`));
    return { ...description, newBlobs };
  } finally {
    await log.close();
  }
}

/** The snapshot a target holds, checked. */
export async function readSnapshot(
  target: BackupTarget,
): Promise<{ description: SnapshotDescription; events: RegistryEvent[] }> {
  const raw = await target.get("backup.json");
  if (raw === undefined) throw new RefusedError(`${target.location}: no backup.json (not a Meridian backup)`);
  const description = JSON.parse(raw.toString("utf8")) as SnapshotDescription;
  if (description.format !== BACKUP_FORMAT || !/^events-\d+\.ndjson$/.test(description.eventsFile ?? ""))
    throw new RefusedError(`${target.location}: backup.json is not of format ${BACKUP_FORMAT}`);
  const file = await target.get(description.eventsFile);
  if (file === undefined) throw new RefusedError(`${target.location}: ${description.eventsFile} is missing`);
  const events: RegistryEvent[] = [];
  let previous = 0;
  for (const line of file.toString("utf8").split("\n")) {
    if (line === "") continue;
    const { seq, event } = JSON.parse(line) as { seq: number; event: unknown };
    if (!(Number.isInteger(seq) && seq > previous))
      throw new RefusedError(`${description.eventsFile}: sequence ${seq} out of order`);
    previous = seq;
    // Validated as any event read from a log is.
    events.push(decodeEvent(Buffer.from(JSON.stringify(event))));
  }
  if (events.length !== description.events)
    throw new RefusedError(
      `${description.eventsFile}: ${events.length} events where backup.json says ${description.events}`,
    );
  return { description, events };
}

export async function restore(options: RestoreOptions): Promise<{
  lastSeq: number;
  events: number;
  /** Events already in the log from an earlier, cut-short restore. */
  resumedAt: number;
  appended: number;
  blobs: number;
  copied: number;
  bytes: number;
}> {
  const shown = (label: string, total: number, noun: string) =>
    progress(label, total, { stream: options.progressTo, noun });
  const target = await openTarget(options.from, options.targetS3);
  const { description, events } = await readSnapshot(target);
  if (description.region !== options.region)
    throw new RefusedError(
      `${options.from} is a backup of region ${description.region}, not ${options.region}`,
    );
  const log = openLog(options, "meridian-restore");
  const store = await openBlobStore(options.store);
  try {
    await log.ready();
    const present = await log.lastSeq();
    // A region whose log holds writes of its own (events without a `cause`: made by its clients,
    // admins or nodes) that are not this snapshot's is refused: it is not wiped, and a restore
    // would mix two histories. Events the region's worker replicated in from live peers since the
    // wipe (they carry `cause`) are fine, and so are this snapshot's own (a restore cut short:
    // their re-appends are de-duplicated).
    const inSnapshot = new Set(events.map((e) => e.id));
    let already = 0;
    if (present > 0) {
      const foreign: string[] = [];
      const stop = new AbortController();
      for await (const { seq, event } of log.tail(1, stop.signal)) {
        if (inSnapshot.has(event.id)) already++;
        else if (event.cause === undefined) foreign.push(`${event.type} (seq ${seq})`);
        if (seq >= present) break;
      }
      stop.abort();
      if (foreign.length > 0)
        throw new RefusedError(
          `region ${options.region}'s log holds ${foreign.length} writes of its own that are not this snapshot's (${foreign.slice(0, 3).join(", ")}${foreign.length > 3 ? ", …" : ""}): restore is for a wiped region (empty its stream first); nothing was changed`,
        );
    }
    // Blobs first: no event may name bytes the region does not have yet.
    const wanted = blobsOf(events);
    let done = 0;
    let copied = 0;
    let bytes = 0;
    const copying = shown(`restore of ${options.region}: blobs`, wanted.size, "blobs");
    for (const digest of wanted.keys()) {
      const result = await copyBlob(target.blobs, store, digest);
      done++;
      if (result.copied) copied++;
      bytes += result.size ?? 0;
      copying.update(done, `${mib(bytes)} MiB`);
    }
    copying.finish();
    let appended = 0;
    const appending = shown(`restore of ${options.region}: events`, events.length, "events");
    for (const event of events) {
      const { duplicate } = await log.append(event);
      if (!duplicate) appended++;
      appending.update(appended);
    }
    appending.finish();
    return {
      resumedAt: already,
      lastSeq: await log.lastSeq(),
      events: events.length,
      appended,
      blobs: wanted.size,
      copied,
      bytes,
    };
  } finally {
    await log.close();
  }
}

function storeName(store: BlobStoreConfig): string {
  return store.type === "s3" ? `s3://${store.s3?.bucket}` : store.root;
}
