/**
 * Issue 10, finding 9: a robot's repository glob `*a*a*a*a*a*a*a*a*b`
 * against a 48-character name took 4.3 s per request (the glob compiled to
 * a backtracking regular expression) and stalled `/healthz` long enough for
 * the front door to mark the region down. Against a real node process with
 * authentication on: the robot's requests are answered promptly, /healthz
 * stays responsive meanwhile, and a glob longer than the cap is refused.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { cleanupStack } from "../../testing/harness.js";
import { type AuthNode, adminCall, basic, startAuthNode } from "./login-support.js";

const cleanup = cleanupStack({ after });
const EVIL = "*a*a*a*a*a*a*a*a*b";

describe("robot globs", () => {
  let node: AuthNode;
  let robot: { name: string; secret: string };

  test("a robot with a glob built to backtrack", async () => {
    node = await startAuthNode(cleanup);
    await adminCall(node.admin, "PUT", "/projects/ci", { public: false });
    robot = (await adminCall(node.admin, "POST", "/robots", {
      name: "backtrack",
      grants: [{ project: "ci", repositories: EVIL, actions: ["pull"] }],
    })) as { name: string; secret: string };
  });

  test("its requests are answered promptly and /healthz stays responsive meanwhile", async () => {
    const repo = `ci/${"a".repeat(48)}`;
    const started = performance.now();
    const requests = Promise.all(
      Array.from({ length: 4 }, async () => {
        const res = await fetch(`${node.url}/v2/${repo}/tags/list`, {
          headers: { authorization: basic(robot.name, robot.secret) },
        });
        await res.arrayBuffer();
        return res.status;
      }),
    );
    await new Promise((r) => setTimeout(r, 20));
    const healthStarted = performance.now();
    const health = await fetch(`${node.url}/healthz`, { signal: AbortSignal.timeout(30_000) });
    const healthMs = performance.now() - healthStarted;
    assert.equal(health.status, 200);
    // The grant does not match: refused, not stalled.
    assert.deepEqual(await requests, [403, 403, 403, 403]);
    const allMs = performance.now() - started;
    // Before: 4.3 s per request, one after another on the event loop. Generous bounds.
    assert.ok(healthMs < 1000, `/healthz took ${healthMs} ms`);
    assert.ok(allMs < 3000, `the robot's requests took ${allMs} ms`);
  });

  test("a grant's glob longer than 255 characters is refused when the robot is made (400)", async () => {
    const res = await node.admin.fetch("/admin/v1/robots", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        name: "toolong",
        grants: [{ project: "ci", repositories: "*a".repeat(128), actions: ["pull"] }],
      }),
    });
    assert.equal(res.status, 400, await res.text());
  });
});
