/**
 * The process's NATS connection manager (node/data/nats-connection.ts) on a
 * real nats-server: a first dial to a server not up yet keeps trying and
 * connects once it is; disconnections and reconnections are reported; the
 * manager's close() closes every connection it opened, a dial under way too.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { cleanupStack, eventually, restartNats, startTestNats, tempDir } from "../../testing/harness.js";
import { NatsConnectionManager } from "../data/nats-connection.js";

describe("NATS connection manager", () => {
  const cleanup = cleanupStack({ after });

  test("dials until the server is up, reports outages, and closes every connection it opened", async () => {
    const storeDir = tempDir(cleanup, "meridian-nats-");
    let nats = await startTestNats(cleanup, storeDir);
    const url = nats.url;
    await nats.stop();
    const manager = new NatsConnectionManager(undefined);
    cleanup(() => manager.close());
    let failedDials = 0;
    const events: string[] = [];
    const late = manager.open({
      servers: [url],
      name: "manager-test-late",
      retryMs: 100,
      onDialFailed: () => failedDials++,
      onDisconnect: () => events.push("disconnect"),
      onReconnect: () => events.push("reconnect"),
    });
    await eventually(() => failedDials >= 2, 10_000);
    assert.equal(late.current, undefined, "not connected while the server is down");
    nats = await restartNats(cleanup, nats, storeDir);
    const nc = await late.connected;
    assert.ok(nc !== undefined && !nc.isClosed());
    const second = manager.open({ servers: [url], name: "manager-test-second" });
    assert.ok((await second.connected) !== undefined);

    await nats.stop();
    await eventually(() => events.includes("disconnect"), 15_000);
    nats = await restartNats(cleanup, nats, storeDir);
    await eventually(() => events.includes("reconnect"), 20_000);

    // A dial under way when the manager closes stops too.
    const never = manager.open({ servers: ["nats://127.0.0.1:1"], name: "manager-test-never", retryMs: 100 });
    await manager.close();
    assert.equal(await never.connected, undefined);
    assert.ok(late.closed && second.closed && never.closed);
    await eventually(() => nc.isClosed() && second.current?.isClosed() === true, 10_000);
  });
});
