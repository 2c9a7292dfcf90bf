/**
 * The dashboard's pure parts and its feed (mesh-client/dashboard-state.ts,
 * dashboard-feed.ts): the colours against the thresholds, throughput from
 * successive counter samples, session tokens (forged, foreign and expired
 * ones refused), the event-stream caps, and the feed: no collection while
 * nobody watches, one shared collection per tick while some do, stopped
 * when the last one leaves. The feed's source here counts its calls: the
 * feed's own behaviour is what is tested; the real sources are tested
 * against real meshes (control-plane/test/dashboard*.test.ts).
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { DashboardFeed, FEED_TICK_MS, SessionTokens, SseClients, subjectOf } from "../dashboard-feed.js";
import {
  type DashboardSource,
  type DashboardState,
  FAILED_READS_TO_BAD,
  LAG_OK_MS,
  LAG_WARN_MS,
  LinkReader,
  linkLevel,
  regionLevel,
  Throughput,
} from "../dashboard-state.js";

const all = { figures: true, src: true, dst: true };

test("a link's colour: the worse of p99 and the oldest pending against 5 s and 60 s", () => {
  const cases: Array<[string, Parameters<typeof linkLevel>[0], Parameters<typeof linkLevel>[1], string]> = [
    ["quiet", { pending: 0 }, all, "idle"],
    ["fast", { lagP50Ms: 200, lagP99Ms: 900, pending: 0 }, all, "ok"],
    ["p99 at the ok bound", { lagP99Ms: LAG_OK_MS, pending: 0 }, all, "warn"],
    ["slow p99", { lagP99Ms: 20_000, pending: 0 }, all, "warn"],
    ["old backlog, fast p99", { lagP99Ms: 500, pending: 3, oldestPendingMs: 7_000 }, all, "warn"],
    ["p99 at the warn bound", { lagP99Ms: LAG_WARN_MS }, all, "bad"],
    ["stuck backlog", { pending: 9, oldestPendingMs: 120_000 }, all, "bad"],
    ["pending, no lag yet, young", { pending: 2, oldestPendingMs: 100 }, all, "ok"],
    ["unreadable figures", { lagP99Ms: 10 }, { figures: false, src: true, dst: true }, "bad"],
    ["destination down", { lagP99Ms: 10 }, { figures: true, src: true, dst: false }, "bad"],
    ["source down", { lagP99Ms: 10, pending: 0 }, { figures: true, src: false, dst: true }, "bad"],
    ["health not known", { lagP99Ms: 10 }, { figures: true, src: undefined, dst: undefined }, "ok"],
  ];
  for (const [name, link, reach, want] of cases) assert.equal(linkLevel(link, reach).level, want, name);
  assert.match(linkLevel({ pending: 9, oldestPendingMs: 120_000 }, all).why, /oldest pending 120 s/);
  assert.match(linkLevel({ lagP99Ms: 20_000 }, all).why, /p99 20 s/);
});

test("a region's colour: down red, refusing writes amber, unknown grey", () => {
  assert.equal(regionLevel(true, ""), "ok");
  assert.equal(regionLevel(true, undefined), "ok");
  assert.equal(regionLevel(true, "failed over to b at epoch 2"), "warn");
  assert.equal(regionLevel(false, ""), "bad");
  assert.equal(regionLevel(undefined, undefined), "unknown");
});

test("throughput: bytes per second over the window; a counter that went down starts again", () => {
  const t = new Throughput();
  assert.equal(t.observe("a>b", 0, 0), undefined);
  assert.equal(t.observe("a>b", 1000, 1000), 1000);
  assert.equal(t.observe("a>b", 3000, 2000), 1500);
  assert.equal(t.observe("a>b", undefined, 2500), undefined);
  // Older samples leave the 5 s window: the rate is the recent one.
  for (let s = 3; s <= 10; s++) t.observe("a>b", 3000, s * 1000);
  assert.equal(t.observe("a>b", 3000, 11_000), 0);
  // The worker restarted: its counter is back at 10.
  assert.equal(t.observe("a>b", 10, 12_000), undefined);
  assert.equal(t.observe("a>b", 510, 13_000), 500);
  assert.equal(t.observe("c>b", 5, 13_000), undefined, "each link on its own");
});

test("session tokens: the subject back until expiry; forged, foreign and expired ones refused", () => {
  let now = 1_000_000;
  const tokens = new SessionTokens(600_000, () => now);
  const { token, expiresAt } = tokens.issue("user:admin");
  assert.equal(expiresAt, 1_600_000);
  assert.deepEqual(tokens.verify(token), { subject: "user:admin", expiresAt });
  const [payload, mac] = token.split(".") as [string, string];
  // A payload naming someone else, with the old MAC: refused.
  const other = Buffer.from(JSON.stringify({ s: "user:root", e: expiresAt, n: "00" })).toString("base64url");
  for (const forged of [`${other}.${mac}`, `${payload}.${mac.slice(1)}`, `${payload}.`, payload, "", "a.b.c"])
    assert.equal(tokens.verify(forged), undefined, forged);
  assert.equal(new SessionTokens().verify(token), undefined, "another process's key");
  assert.equal(tokens.verify("x".repeat(5000)), undefined);
  now = expiresAt - 1;
  assert.ok(tokens.verify(token));
  now = expiresAt;
  assert.equal(tokens.verify(token), undefined, "expired");
});

test("the subject of credentials names the user, never the password", () => {
  const basic = `Basic ${Buffer.from("admin:s3cret:with-colon").toString("base64")}`;
  assert.equal(subjectOf(basic), "user:admin");
  const bearer = subjectOf("Bearer abc.def.ghi");
  assert.match(bearer, /^token:[0-9a-f]{12}$/);
  assert.ok(!bearer.includes("abc"));
});

test("event streams: at most N per address and M in all; a release frees a place", () => {
  const sse = new SseClients(2, 3);
  assert.ok(sse.acquire("1.1.1.1"));
  assert.ok(sse.acquire("1.1.1.1"));
  assert.equal(sse.acquire("1.1.1.1"), false, "per address");
  assert.ok(sse.acquire("2.2.2.2"));
  assert.equal(sse.acquire("3.3.3.3"), false, "in all");
  sse.release("1.1.1.1");
  assert.ok(sse.acquire("3.3.3.3"));
  assert.equal(sse.open, 3);
});

function countingSource(): DashboardSource & { refreshes: number } {
  const source = {
    refreshes: 0,
    async refresh() {
      source.refreshes++;
      await sleep(20);
    },
    snapshot(): DashboardState {
      return {
        scope: "mesh",
        servedBy: "test",
        at: new Date().toISOString(),
        thresholds: { okMs: LAG_OK_MS, warnMs: LAG_WARN_MS },
        regions: [],
        links: [],
        homes: [],
      };
    },
  };
  return source;
}

test("the feed collects only while someone watches, once per tick for everyone, and stops after the last", async () => {
  const source = countingSource();
  const feed = new DashboardFeed(source);
  await sleep(FEED_TICK_MS + 200);
  assert.equal(source.refreshes, 0, "nobody watches: nothing is collected");
  const got = { one: 0, two: 0 };
  const stopOne = feed.subscribe(() => got.one++);
  const stopTwo = feed.subscribe(() => got.two++);
  await sleep(2.5 * FEED_TICK_MS);
  assert.ok(source.refreshes >= 2 && source.refreshes <= 4, `${source.refreshes} refreshes in 2.5 ticks`);
  assert.equal(got.one, got.two, "both watchers get every state");
  assert.equal(got.one, source.refreshes, "one collection per state, shared");
  // A request for the state within a tick of the last refresh reuses it.
  const before = source.refreshes;
  await feed.current();
  assert.ok(source.refreshes <= before + 1);
  stopOne();
  stopTwo();
  await sleep(FEED_TICK_MS + 100);
  const stoppedAt = source.refreshes;
  await sleep(2 * FEED_TICK_MS);
  assert.equal(source.refreshes, stoppedAt, "no collection after the last watcher left");
  assert.equal(feed.ticking, false);
  feed.close();
});

test("push sends what is known at once, without IO; close ends every stream", async () => {
  const source = countingSource();
  const feed = new DashboardFeed(source);
  let states = 0;
  let closed = 0;
  feed.subscribe(
    () => states++,
    () => closed++,
  );
  await sleep(100); // the first tick's refresh and state
  const refreshes = source.refreshes;
  const sent = states;
  feed.push();
  assert.equal(states, sent + 1);
  assert.equal(source.refreshes, refreshes, "no refresh for a push");
  feed.close();
  assert.equal(closed, 1);
  assert.equal(feed.watchers, 0);
});

test("link figures from a worker's metrics page: lag, backlog, rate over successive reads; stale when it stops answering", async (t) => {
  let bytes = 1000;
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(
      [
        "# HELP meridian_replication_recent_lag_seconds recent lag",
        'meridian_replication_recent_lag_seconds{src="a",dst="b",quantile="0.5"} 0.2',
        'meridian_replication_recent_lag_seconds{src="a",dst="b",quantile="0.99"} 7.5',
        'meridian_replication_pending_events{src="a",dst="b"} 3',
        'meridian_replication_oldest_pending_age_seconds{src="a",dst="b"} 1.5',
        `meridian_replication_bytes_total{src="a",dst="b"} ${bytes}`,
        'meridian_replication_pending_events{src="c",dst="b"} 0',
        "",
      ].join("\n"),
    );
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const worker = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const reader = new LinkReader(
    [
      { region: "b", worker },
      { region: "c", worker: undefined },
    ],
    ["a", "b", "c"],
  );
  await reader.refresh(800);
  await sleep(200);
  bytes = 3000;
  await reader.refresh(800);
  const cells = reader.cells(() => true);
  const ab = cells.find((c) => c.src === "a" && c.dst === "b")!;
  assert.equal(ab.lagP50Ms, 200);
  assert.equal(ab.lagP99Ms, 7500);
  assert.equal(ab.pending, 3);
  assert.equal(ab.level, "warn");
  assert.ok(ab.bytesPerSecond! > 2000 && ab.bytesPerSecond! <= 10_000, `${ab.bytesPerSecond} B/s`);
  assert.equal(cells.find((c) => c.src === "c" && c.dst === "b")!.level, "idle");
  assert.equal(cells.find((c) => c.dst === "c")!.level, "unknown", "no metrics page named: not a fault");
  assert.equal(reader.cells((r) => r !== "b").find((c) => c.src === "a" && c.dst === "b")!.level, "bad");

  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  const ab2 = () => reader.cells(() => true).find((c) => c.src === "a" && c.dst === "b")!;
  for (let i = 1; i < FAILED_READS_TO_BAD; i++) {
    await reader.refresh(300);
    assert.equal(ab2().stale, true, "the last good figures, marked stale");
    assert.equal(ab2().lagP99Ms, 7500);
    assert.equal(ab2().level, "warn", `judged on the last good figures after ${i} failed read(s)`);
    assert.equal(ab2().bytesPerSecond, undefined);
  }
  await reader.refresh(300);
  assert.equal(ab2().level, "bad", `${FAILED_READS_TO_BAD} failed reads in a row`);
  assert.match(ab2().why, /unreadable/);
});
