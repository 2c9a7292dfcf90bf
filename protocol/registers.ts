/**
 * A repository's registers, as every region's view holds them and as the
 * peer service's RepoState call carries them between regions (anti-entropy
 * compares and replays them). The view (node/data/view.ts) keeps these
 * shapes; the conversions to and from the generated wire types are here so
 * the serving peer and the calling worker agree on them.
 */
import type { Digest } from "./digest.js";
import type { ManifestPushed } from "./events.js";
import type { RepoStateReply, RepoStateReply__Output } from "./generated/meridian/peer/v1/RepoStateReply.js";
import type { Write__Output } from "./generated/meridian/peer/v1/Write.js";
import type { Hlc } from "./hlc.js";

/** A write as registers remember it: who, when, and its identity. */
export interface Write {
  /** The write's identity (the origin event's id). */
  id: string;
  origin: string;
  hlc: Hlc;
  at: string;
  actor: string;
  epoch?: number;
}

/** What a view keeps of a manifest: the fields of its `manifest.pushed`. */
export type ManifestRecord = Pick<
  ManifestPushed,
  "mediaType" | "size" | "blobs" | "manifests" | "subject" | "artifactType" | "annotations" | "platforms"
>;

export interface ManifestRegister {
  /** Null when only a deletion has been seen (the push has not arrived yet). */
  record: ManifestRecord | null;
  live: boolean;
  w: Write;
}

export interface BlobRegister {
  size: number;
  live: boolean;
  w: Write;
}

export interface TagRecord {
  digest: Digest | null;
  hlc: Hlc;
  origin: string;
  /** The winning write's identity. */
  eventId: string;
  /** Log sequence of the event that made this write win here. */
  seq: number;
  at?: string;
  actor?: string;
  epoch?: number;
  /** The write the origin's register held when this one was made. */
  prev?: string;
}

/** A repository's registers, whole (what anti-entropy compares and replays). */
export interface RepoState {
  repo: string;
  tags: Array<{ tag: string; record: TagRecord }>;
  manifests: Array<{ digest: Digest; register: ManifestRegister }>;
  blobs: Array<{ digest: Digest; register: BlobRegister }>;
  deleted?: Write;
}

export function writeToWire(w: Write): Write__Output {
  return {
    id: w.id,
    origin: w.origin,
    wall: w.hlc.wall,
    logical: w.hlc.logical,
    at: w.at,
    actor: w.actor,
    epoch: w.epoch ?? 0,
  };
}

export function writeFromWire(w: Write__Output): Write {
  const out: Write = {
    id: w.id,
    origin: w.origin,
    hlc: { wall: w.wall, logical: w.logical },
    at: w.at,
    actor: w.actor,
  };
  if (w.epoch > 0) out.epoch = w.epoch;
  return out;
}

export function repoStateToWire(state: RepoState): RepoStateReply {
  return {
    repo: state.repo,
    tags: state.tags.map(({ tag, record }) => ({
      tag,
      digest: record.digest ?? "",
      prev: record.prev ?? "",
      write: writeToWire({
        id: record.eventId,
        origin: record.origin,
        hlc: record.hlc,
        at: record.at ?? new Date(record.hlc.wall).toISOString(),
        actor: record.actor ?? "system",
        epoch: record.epoch,
      }),
    })),
    manifests: state.manifests.map(({ digest, register }) => ({
      digest,
      live: register.live,
      write: writeToWire(register.w),
      recordJson: register.record === null ? "" : JSON.stringify(register.record),
    })),
    blobs: state.blobs.map(({ digest, register }) => ({
      digest,
      live: register.live,
      size: register.size,
      write: writeToWire(register.w),
    })),
    deleted: state.deleted === undefined ? undefined : writeToWire(state.deleted),
  };
}

export function repoStateFromWire(reply: RepoStateReply__Output): RepoState {
  const state: RepoState = {
    repo: reply.repo,
    tags: reply.tags.map((t) => {
      const w = writeFromWire(t.write!);
      return {
        tag: t.tag,
        record: {
          digest: t.digest === "" ? null : (t.digest as Digest),
          hlc: w.hlc,
          origin: w.origin,
          eventId: w.id,
          seq: 0,
          at: w.at,
          actor: w.actor,
          epoch: w.epoch,
          ...(t.prev === "" ? {} : { prev: t.prev }),
        },
      };
    }),
    manifests: reply.manifests.map((m) => ({
      digest: m.digest as Digest,
      register: {
        live: m.live,
        w: writeFromWire(m.write!),
        record: m.recordJson === "" ? null : JSON.parse(m.recordJson),
      },
    })),
    blobs: reply.blobs.map((b) => ({
      digest: b.digest as Digest,
      register: { live: b.live, size: b.size, w: writeFromWire(b.write!) },
    })),
  };
  if (reply.deleted) state.deleted = writeFromWire(reply.deleted);
  return state;
}
