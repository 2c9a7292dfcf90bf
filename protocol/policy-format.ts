/**
 * A policy as text: YAML in the input format (`policyToYaml`, which
 * `parsePolicies` reads back to the same policy) and rates for display.
 */
import { stringify } from "yaml";
import { matcherText, type Policy } from "./policy-types.js";

/** YAML for one policy, in the input format; `parsePolicies(policyToYaml(p))` is `[p]`. */
export function policyToYaml(policy: Policy): string {
  const doc: Record<string, unknown> = { name: policy.name };
  if (policy.sources.length === 1) doc.source = policy.sources[0];
  else doc.sources = policy.sources;
  if (policy.destinations.length === 1) doc.destination = policy.destinations[0];
  else doc.destinations = policy.destinations;
  const { include, exclude } = policy.repositories;
  doc.repositories = exclude.length === 0 ? include : { include, exclude };
  if (policy.tags.include.length > 0 || policy.tags.exclude.length > 0) {
    doc.tags = {
      include: policy.tags.include.map(matcherText),
      exclude: policy.tags.exclude.map(matcherText),
    };
  }
  if (policy.platforms.length > 0) doc.platforms = policy.platforms;
  doc.signedOnly = policy.signedOnly;
  doc.events = policy.events;
  doc.deletes = policy.deletes;
  doc.override = policy.override;
  doc.trigger = policy.trigger.type === "schedule" ? { schedule: policy.trigger.cron } : policy.trigger.type;
  if (policy.bandwidthBytesPerSecond !== undefined) doc.bandwidth = rateText(policy.bandwidthBytesPerSecond);
  if (policy.holdTagsForReferrers.length > 0) doc.holdTagsForReferrers = policy.holdTagsForReferrers;
  doc.enabled = policy.enabled;
  doc.exclusive = policy.exclusive;
  // lineWidth 0: never fold a long pattern across lines.
  return stringify(doc, { lineWidth: 0 });
}

/** For display: "50 MiB/s", "1.5 GiB/s", "800 B/s". */
export function formatBytesPerSecond(n: number): string {
  for (const [unit, size] of BINARY_UNITS) {
    if (n >= size) return `${Number((n / size).toFixed(2))} ${unit}/s`;
  }
  return `${Number(n.toFixed(2))} B/s`;
}

const BINARY_UNITS: readonly [string, number][] = [
  ["TiB", 2 ** 40],
  ["GiB", 2 ** 30],
  ["MiB", 2 ** 20],
  ["KiB", 2 ** 10],
];

/** "50MiB/s" when exact in a binary unit, else the plain number (so YAML round-trips exactly). */
function rateText(n: number): string | number {
  for (const [unit, size] of BINARY_UNITS) if (n % size === 0) return `${n / size}${unit}/s`;
  return n;
}
