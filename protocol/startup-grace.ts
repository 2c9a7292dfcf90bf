/**
 * Start-up is quiet when nothing is wrong. The processes of a mesh start one
 * after another (`meridian up` starts region after region, each with its
 * nats-server, node, peer and worker; hosts boot in any order), so for a
 * while after a process starts the others refuse it: a peer's gRPC port is
 * not open yet, a source region's stream is not created yet, no other region
 * has answered the fence yet. That is start-up, not a fault.
 *
 * The rule every process follows: during the first `STARTUP_GRACE_MS` of its
 * life, a refusal by something that may still be starting is retried (with a
 * bounded backoff where the caller retries at all) and logged at info or
 * debug; one that is still there when the grace has passed is a fault and is
 * logged at warn, once, saying what is still unreachable. A failure of
 * something that was already up (a peer that answered, then stopped) is a
 * fault at once, grace or not.
 *
 * Where it applies: the replication worker (anti-entropy runs retried while a
 * source's peer refuses; a source stream not created yet), the control-plane
 * peer's heartbeat (a peer never seen yet), the node's fence ("no other
 * region has answered yet").
 */

/** How long after a process's start refusals by others are expected (30 s). */
export const STARTUP_GRACE_MS = 30_000;

/** Whether `nowMs` is still within the start-up grace of a process started at `startedAtMs`. */
export function inStartupGrace(startedAtMs: number, nowMs: number, graceMs = STARTUP_GRACE_MS): boolean {
  return nowMs - startedAtMs < graceMs;
}
