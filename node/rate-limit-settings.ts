/**
 * The node's `rateLimits` settings (./rate-limits.ts says what they mean),
 * apart from ./config.ts so that file stays one screenful of sections.
 */
import { Setting } from "../protocol/config-schema.js";

export function rateLimitSettings() {
  const { integer, number } = Setting;
  return {
    pullsPerSecond: number({
      env: "MERIDIAN_RATE_PULLS_PER_SECOND",
      default: 0,
      minimum: 0,
      doc: "registry reads (GET/HEAD of manifests, blobs, tags, referrers) a second per user or robot, per address when anonymous, across the region's nodes (0: no limit)",
    }),
    pullBurst: integer({
      env: "MERIDIAN_RATE_PULL_BURST",
      default: 200,
      minimum: 1,
      doc: "reads allowed at once before the per-second rate applies",
    }),
    pushesPerSecond: number({
      env: "MERIDIAN_RATE_PUSHES_PER_SECOND",
      default: 0,
      minimum: 0,
      doc: "registry writes (uploads, manifest puts, deletes) a second per user or robot, per address when anonymous (0: no limit)",
    }),
    pushBurst: integer({
      env: "MERIDIAN_RATE_PUSH_BURST",
      default: 100,
      minimum: 1,
      doc: "writes allowed at once before the per-second rate applies",
    }),
    addressPullsPerSecond: number({
      env: "MERIDIAN_RATE_ADDRESS_PULLS_PER_SECOND",
      default: 0,
      minimum: 0,
      doc: "reads a second per client address, whoever signs in (0: no limit; mind NAT: many users may share an address)",
    }),
    addressPushesPerSecond: number({
      env: "MERIDIAN_RATE_ADDRESS_PUSHES_PER_SECOND",
      default: 0,
      minimum: 0,
      doc: "writes a second per client address (0: no limit)",
    }),
    shareIntervalMs: integer({
      env: "MERIDIAN_RATE_SHARE_INTERVAL_MS",
      default: 200,
      minimum: 20,
      maximum: 10_000,
      doc: "how often a node tells the region's other nodes what it let through (the limit's slack across nodes)",
    }),
  };
}
