/**
 * The permissions `meridian up` gives each NATS identity (cli/nats-auth.ts),
 * checked over a three-region mesh: only the operator may purge, delete or
 * update a stream or use wildcards beyond its own; everyone subscribes only
 * below its own inbox; a worker on another region's server touches only its
 * own durable. The real server's enforcement is security/test/nats-auth.
 */
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import { authorizationFor, ensureNatsIdentities, permissionsFor } from "../nats-auth.js";

const cleanup = cleanupStack({ after });
const REGIONS = ["a", "b", "c"];

test("seeds are 0600 in a 0700 directory, kept across calls, one key per identity", () => {
  const dir = join(tempDir(cleanup), "nats-auth");
  const first = ensureNatsIdentities(dir, REGIONS);
  const again = ensureNatsIdentities(dir, REGIONS);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.equal(statSync(first.regions.a!.node.seedFile).mode & 0o777, 0o600);
  assert.equal(again.regions.b!.worker.publicKey, first.regions.b!.worker.publicKey);
  const keys = new Set(
    [first.operator, ...REGIONS.flatMap((r) => Object.values(first.regions[r]!))].map((i) => i.publicKey),
  );
  assert.equal(keys.size, 1 + 3 * REGIONS.length);
  // Every server knows the operator, its own node, peer and worker, and every other region's worker.
  assert.equal(authorizationFor(first, "a").users.length, 1 + 3 + 2);
});

test("no identity but the operator may purge, delete or update streams, or subscribe beyond its inbox (a node: and its region's rate-limit shares)", () => {
  for (const server of REGIONS)
    for (const region of REGIONS)
      for (const role of ["node", "peer", "worker"] as const) {
        const p = permissionsFor(role, region, server, REGIONS);
        if (p === undefined) {
          assert.notEqual(role, "worker");
          assert.notEqual(region, server);
          continue;
        }
        const what = `${role} of ${region} on ${server}`;
        // Beyond its inbox, a node hears only its own region's rate-limit shares (core NATS, no stream).
        assert.deepEqual(
          p.subscribe.allow,
          role === "node"
            ? [`_INBOX_${region}-${role}.>`, `meridian-limits.${server}`]
            : [`_INBOX_${region}-${role}.>`],
          what,
        );
        for (const subject of p.publish.allow) {
          assert.doesNotMatch(subject, /STREAM\.(PURGE|DELETE|UPDATE|MSG\.DELETE)/, `${what}: ${subject}`);
          assert.ok(subject !== ">" && !subject.startsWith("$JS.API.>"), `${what}: ${subject}`);
          if (region !== server)
            assert.ok(
              subject === "$JS.API.INFO" || subject.includes(`replicate-to-${region}`),
              `${what}: ${subject}`,
            );
          else if (subject.startsWith("meridian.")) assert.equal(subject, `meridian.${server}.>`, what);
        }
      }
  assert.deepEqual(permissionsFor("operator", "", "a", REGIONS)!.publish.allow, [">"]);
});
