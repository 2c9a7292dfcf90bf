/**
 * Issue 10, finding 7: 100,000 failed logins with an 11 KB user name added
 * 1 GiB to the audit stream in 24 s, which then discarded every legitimate
 * record; logins refused with 429 were still audited at full rate. Against
 * a real node process with authentication on: a flood of failed logins with
 * huge names stores a bounded number of bounded records (one aggregate for
 * the rest, and an alert), and a real user's pull afterwards is recorded.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { cleanupStack, eventually } from "../../testing/harness.js";
import { OciClient } from "../../testing/oci-client.js";
import {
  type AuthNode,
  adminCall,
  audit,
  basic,
  createUser,
  metric,
  seedPublic,
  startAuthNode,
} from "./login-support.js";

const cleanup = cleanupStack({ after });
const FLOOD = 1500;
const HUGE = 11 * 1024;

describe("audit flood", () => {
  let node: AuthNode;
  const started = new Date().toISOString();

  test("a flood of failed logins with 11 KB names stores bounded records, aggregated and alerted", async () => {
    node = await startAuthNode(cleanup);
    await createUser(node.admin, "carol", "carol's password");
    await seedPublic(node.admin, "pub/app", "v1");
    // Carol signs in before the flood: her verified credentials are remembered, so the flood's
    // failures from this address (the limiter's) do not lock her out afterwards.
    assert.equal(
      (await new OciClient(node.url, basic("carol", "carol's password")).fetch("/v2/")).status,
      200,
    );
    const statuses = new Map<number, number>();
    for (let sent = 0; sent < FLOOD; sent += 50) {
      await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const username = `${"x".repeat(HUGE)}${sent + i}`;
          const res = await fetch(`${node.url}/auth/token`, {
            method: "POST",
            headers: { "content-type": "application/x-www-form-urlencoded" },
            body: new URLSearchParams({ grant_type: "password", username, password: "guess" }).toString(),
          });
          await res.arrayBuffer();
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        }),
      );
    }
    // Five were checked (the limit), the rest refused before any check.
    assert.equal((statuses.get(401) ?? 0) + (statuses.get(429) ?? 0), FLOOD, JSON.stringify([...statuses]));
    // The suppressed ones are summed up in aggregate records at the end of each window.
    let failed: Awaited<ReturnType<typeof audit>> = { records: [], bytes: 0 };
    const counted = () => failed.records.reduce((n, r) => n + (typeof r.count === "number" ? r.count : 1), 0);
    await eventually(
      async () => {
        failed = await audit(node.admin, `action=login.failed&since=${started}&limit=10000`);
        return failed.records.some((r) => typeof r.count === "number") && counted() >= FLOOD;
      },
      120_000,
      1000,
    ).catch(() => undefined);
    // Before: 1500 records of 11 KB each (16 MiB). Now a few dozen short ones.
    assert.ok(failed.records.length <= 50, `${failed.records.length} login.failed records stored`);
    assert.ok(failed.bytes < 64 * 1024, `${failed.bytes} bytes of login.failed records`);
    for (const r of failed.records) assert.ok(String(r.actor).length <= 256, "actor truncated");
    assert.equal(counted(), FLOOD, "every failure is accounted for, in records or counts");
    assert.ok((await metric(node.url, "meridian_audit_login_failures_suppressed_total")) > 0);
    // An operator is told: an alert (GET /admin/v1/alerts) names the flood.
    await eventually(
      async () => {
        const { alerts } = (await adminCall(node.admin, "GET", "/alerts")) as {
          alerts: Array<{ kind: string }>;
        };
        return alerts.some((a) => a.kind === "login-flood");
      },
      30_000,
      250,
    );
  });

  test("a real user's pull after the flood is in the audit log", async () => {
    const carol = new OciClient(node.url, basic("carol", "carol's password"));
    const res = await carol.fetch("/v2/pub/app/manifests/v1");
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    await eventually(
      async () => (await audit(node.admin, "actor=carol&action=pull")).records.length > 0,
      15_000,
      250,
    );
    const { records } = await audit(node.admin, "actor=carol");
    assert.ok(records.some((r) => r.action === "pull" && r.repo === "pub/app"));
  });
});
