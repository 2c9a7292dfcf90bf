/**
 * Records of the event log that change no state and exist to be announced
 * (issue 17, item 5: webhooks as CloudEvents, protocol/webhook.ts):
 * a failover made and a push refused by a quota. Part of ./event-types.ts
 * (which re-exports this file), kept apart for its size.
 */
import type { Envelope } from "./event-types.js";

/**
 * A failover made (node/data/failover.ts), appended once after the
 * `repository.configured` events that re-home its scopes, in the region
 * that made it: the one record a webhook announces as
 * `io.meridian.failover` (protocol/webhook.ts). A record, not a command:
 * the re-homing is the scopes' events; this changes no state.
 */
export interface FailoverRecorded extends Envelope {
  type: "failover.recorded";
  from: string;
  to: string;
  /* The failover's new epoch is the envelope's `epoch` (the scopes' events carry the same). */
  /** The scopes re-homed (repositories and `project/` prefixes; may be empty). */
  scopes: string[];
  force: boolean;
}
/**
 * A push refused by a project's quota (node/data/quota-refusals.ts), at most
 * one per (project, repository) per node per QUOTA_EXCEEDED_WINDOW_MS, so
 * a client retrying in a loop cannot flood the log. A record (announced as
 * `io.meridian.quota.exceeded`), changing no state.
 */
export interface QuotaExceeded extends Envelope {
  type: "quota.exceeded";
  project: string;
  repo: string;
  /** The region whose node refused. */
  region: string;
  limitBytes: number;
  usedBytes: number;
  requestedBytes: number;
}
/** At most one `quota.exceeded` per (project, repository) per node in this window. */
export const QUOTA_EXCEEDED_WINDOW_MS = 60_000;
