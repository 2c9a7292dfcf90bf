/**
 * Automatic failover: the pure decision as a table, then three live regions
 * whose peers fail over on their own when the home region dies.
 */
import assert from "node:assert/strict";
import { createServer, Agent as HttpAgent } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { type After, cleanupStack, eventually, freePort } from "../../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";
import { autoFailoverDecision, NodeTurns, recovered } from "../auto-failover.js";
import type { PeerHealth, RemotePeerView } from "../heartbeat.js";
import { registryRequest } from "../registry-http.js";

const NOW = 1_000_000;
const health = (
  peer: string,
  state: PeerHealth["state"],
  lastSeenAgo: number | undefined,
  peers: RemotePeerView[] = [],
): PeerHealth => ({
  peer,
  state,
  misses: state === "down" ? 3 : 0,
  rttMs: 1,
  lastSeenAt: lastSeenAgo === undefined ? undefined : NOW - lastSeenAgo,
  lastError: undefined,
  applied: {},
  epoch: 0,
  peers,
});
const sees = (region: string, up: boolean): RemotePeerView => ({ region, up, rttMs: 1, lastSeenAtMs: 0 });

describe("autoFailoverDecision", () => {
  const base = { now: NOW, regions: ["a", "b", "c"], afterMs: 5_000, done: new Set<string>() };
  const cases: Array<
    [string, Parameters<typeof autoFailoverDecision>[0], ReturnType<typeof autoFailoverDecision>]
  > = [
    [
      "the successor acts once the dark region has been gone long enough and the others agree",
      { ...base, self: "a", health: [health("b", "down", 6_000), health("c", "up", 0, [sees("b", false)])] },
      { from: "b", to: "a" },
    ],
    [
      "not before afterMs",
      { ...base, self: "a", health: [health("b", "down", 4_000), health("c", "up", 0, [sees("b", false)])] },
      undefined,
    ],
    [
      "not while another region still hears from it (this peer is the one cut off)",
      { ...base, self: "a", health: [health("b", "down", 9_000), health("c", "up", 0, [sees("b", true)])] },
      undefined,
    ],
    [
      "not when a witness has not reported on it yet",
      { ...base, self: "a", health: [health("b", "down", 9_000), health("c", "up", 0, [])] },
      undefined,
    ],
    [
      "only the successor (the first region of the mesh that is up) acts",
      { ...base, self: "c", health: [health("a", "up", 0, [sees("b", false)]), health("b", "down", 9_000)] },
      undefined,
    ],
    [
      "a down region is skipped as successor",
      {
        ...base,
        regions: ["a", "b", "c", "d"],
        self: "c",
        health: [
          health("a", "down", 9_000),
          health("b", "down", 9_000),
          health("d", "up", 0, [sees("a", false)]),
        ],
      },
      { from: "a", to: "c" },
    ],
    [
      "alone in a mesh of three, a peer never acts (it may be the one cut off)",
      { ...base, self: "c", health: [health("a", "down", 9_000), health("b", "down", 9_000)] },
      undefined,
    ],
    [
      "in a mesh of two nothing can confirm; the survivor acts",
      { ...base, regions: ["a", "b"], self: "b", health: [health("a", "down", 9_000)] },
      { from: "a", to: "b" },
    ],
    [
      "never for a region never seen",
      {
        ...base,
        self: "a",
        health: [health("b", "down", undefined), health("c", "up", 0, [sees("b", false)])],
      },
      undefined,
    ],
    [
      "once per outage",
      {
        ...base,
        done: new Set(["b"]),
        self: "a",
        health: [health("b", "down", 9_000), health("c", "up", 0, [sees("b", false)])],
      },
      undefined,
    ],
  ];
  for (const [name, input, want] of cases)
    test(name, () => assert.deepEqual(autoFailoverDecision(input), want));

  test("a region seen up again may be failed over again in a later outage", () => {
    const done = new Set(["b", "c"]);
    recovered([health("b", "up", 0), health("c", "down", 9_000)], done);
    assert.deepEqual([...done], ["c"]);
  });
});

describe("automatic failover with live regions", () => {
  let mesh: ProxiedMesh;
  let cleanup: After;
  cleanup = cleanupStack({ after });
  const client = (region: string) => new OciClient(mesh.regions.get(region)!.registry);
  const homes = async (region: string) => {
    const res = await client(region).fetch("/admin/v1/rules");
    const { rules } = (await res.json()) as {
      rules: Array<{ scope: string; homes: Record<string, string> }>;
    };
    return rules.find((r) => r.scope === "auto/")?.homes;
  };

  /** Wait for a condition; on timeout, fail with the regions' worker and peer logs (CI runs are otherwise opaque). */
  const until = async (what: string, ms: number, cond: () => Promise<boolean>) => {
    try {
      await eventually(cond, ms, 100);
    } catch (err) {
      const logs = [...mesh.regions]
        .map(
          ([name, r]) =>
            `--- ${name} worker\n${r.worker.log().slice(-3_000)}\n--- ${name} peer\n${r.peer.log().slice(-3_000)}`,
        )
        .join("\n");
      throw new Error(`${what}: ${(err as Error).message}\n${logs}`);
    }
  };

  before(async () => {
    mesh = await startProxiedMesh(cleanup, ["a", "b", "c"], {
      peer: { MERIDIAN_AUTO_FAILOVER_AFTER_MS: "1500" },
    });
  });

  test("when the home dies, the first region of the mesh takes it over, once, and takes writes", async () => {
    const res = await client("b").fetch("/admin/v1/rules", {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ scope: "auto/", tagMerge: "home-region", home: "b" }),
    });
    assert.equal(res.status, 200);
    await until(
      "the rule reaches a and c",
      30_000,
      async () => (await homes("a"))?.["0"] === "b" && (await homes("c"))?.["0"] === "b",
    );
    await mesh.killRegion("b");
    await until("a takes b's repositories over", 30_000, async () => (await homes("c"))?.["1"] !== undefined);
    assert.deepEqual(await homes("c"), { "0": "b", "1": "a" });
    assert.deepEqual(await homes("a"), { "0": "b", "1": "a" });
    const c = client("a");
    const config = await c.pushBlob("auto/app", Buffer.from("{}"));
    // The view has the new homes; a's peer lifts its fence once its own heartbeat reads the
    // new epoch ("catching up", 503 UNAVAILABLE: a client retries), within a tick or two.
    let status = 0;
    await until("a takes writes as the new home", 10_000, async () => {
      const res = await c.fetch("/v2/auto/app/manifests/v1", {
        method: "PUT",
        headers: { "content-type": OCI_MANIFEST },
        body: JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [] }),
      });
      status = res.status;
      const text = await res.text();
      if (status !== 201 && !(status === 503 && /catching up/.test(text)))
        throw new Error(`manifest push ${status}: ${text}`);
      return status === 201;
    });
    assert.equal(status, 201);
    // Nobody fails over again while b stays dark.
    await new Promise((r) => setTimeout(r, 1_000));
    assert.deepEqual(await homes("c"), { "0": "b", "1": "a" });
  });
});

describe("NodeTurns (the peer's calls to its region's nodes)", () => {
  test("a node that refuses is passed over for the next; the one that answered is asked first after", async () => {
    const server = createServer((req, res) => res.writeHead(200).end(req.url));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const live = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const dead = `http://127.0.0.1:${await freePort()}`;
    const agent = new HttpAgent();
    const asked: string[] = [];
    try {
      const turns = new NodeTurns([dead, `${live}/`]);
      const call = (node: string) => {
        asked.push(node);
        return registryRequest(`${node}/admin/v1/failover`, { agent, method: "POST", body: "{}" });
      };
      const first = await turns.ask(call);
      assert.equal(first.status, 200);
      assert.deepEqual(asked, [dead, live]);
      asked.length = 0;
      await turns.ask(call);
      assert.deepEqual(asked, [live], "the node that answered is asked first");
      await assert.rejects(new NodeTurns([dead]).ask(call), /ECONNREFUSED/);
    } finally {
      agent.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});
