/**
 * The audit log (node/audit.ts) against a real nats-server: records written
 * and read back through every filter, time windows and limits; an empty
 * stream (or a window past its end) answers at once; records survive the
 * log's close and reopen; records made while NATS is down are buffered up to
 * a bound and stored once it is back. Also the GET /audit route (through
 * fastify's inject) and its pure parameter parsing, as tables.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, nanos } from "@nats-io/transport-node";
import Fastify from "fastify";
import { Registry as MetricsRegistry } from "prom-client";
import { type NatsServerProcess, startNatsServer } from "../../cli/nats-server.js";
import { parseAuditTime } from "../../protocol/audit-time.js";
import { LogUnavailableError, UnsupportedError } from "../../protocol/errors.js";
import {
  cleanupStack,
  eventually,
  freePort,
  restartNats,
  silentLogger,
  startTestNats,
  tempDir,
} from "../../testing/harness.js";
import { type AuditEntry, AuditLog, type AuditRecord, auditStreamName, auditSubject } from "../audit.js";
import { auditRoutes, parseAuditQuery } from "../http/audit-routes.js";
import { handleError } from "../http/errors.js";

const cleanup = cleanupStack({ after });
let nats: NatsServerProcess;

before(async () => {
  nats = await startTestNats(cleanup);
});

async function openLog(region: string, extra: Partial<Parameters<typeof AuditLog.open>[0]> = {}) {
  const log = await AuditLog.open({ servers: [nats.url], region, logger: silentLogger, ...extra });
  cleanup(() => log.close()); // close is idempotent
  await log.ready();
  return log;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const ENTRIES: AuditEntry[] = [
  {
    actor: "alice",
    kind: "user",
    action: "push",
    address: "10.0.0.1",
    repo: "app/web",
    reference: "v1",
    status: 201,
  },
  {
    actor: "alice",
    kind: "user",
    action: "pull",
    address: "10.0.0.1",
    repo: "app/web",
    reference: `sha256:${"a".repeat(64)}`,
    status: 200,
  },
  {
    actor: "anonymous",
    kind: "anonymous",
    action: "pull",
    address: "10.0.0.9",
    repo: "app/api",
    status: 401,
  },
  {
    actor: "ci-bot",
    kind: "robot",
    action: "push",
    address: "10.0.0.7",
    repo: "app/api",
    reference: "main",
    status: 201,
  },
  {
    actor: "bob",
    kind: "user",
    action: "login.failed",
    address: "10.0.0.3",
    status: 401,
    detail: "bad password",
  },
  { actor: "alice", kind: "user", action: "admin", address: "10.0.0.1", status: 200, detail: "PUT /rules" },
  {
    actor: "bob",
    kind: "user",
    action: "delete",
    address: "10.0.0.3",
    repo: "app/web",
    reference: "v1",
    status: 202,
  },
  { actor: "replicator", kind: "service", action: "login", address: "127.0.0.1", status: 200 },
];

/** Fields compared when a record is read back (the log adds `at` and `region`). */
function strip(r: AuditRecord): AuditEntry {
  const { at: _at, region: _region, ...rest } = r;
  return rest;
}

async function recordAll(log: AuditLog, entries: AuditEntry[], expectTotal: number): Promise<void> {
  for (const e of entries) log.record(e);
  await eventually(async () => (await log.query({ limit: 10_000 })).length === expectTotal);
}

describe("AuditLog on JetStream", () => {
  test("records are read back whole, in order, through every filter", async () => {
    const log = await openLog("filters");
    const before = Date.now();
    await recordAll(log, ENTRIES, ENTRIES.length);

    const all = await log.query({});
    assert.deepEqual(all.map(strip), ENTRIES);
    for (const r of all) {
      assert.equal(r.region, "filters");
      assert.equal(new Date(r.at).toISOString(), r.at);
      assert.ok(Date.parse(r.at) >= before - 1 && Date.parse(r.at) <= Date.now());
    }
    for (let i = 1; i < all.length; i++) assert.ok(all[i - 1]!.at <= all[i]!.at);

    const pick = (f: (e: AuditEntry) => boolean) => ENTRIES.filter(f);
    assert.deepEqual(
      (await log.query({ actor: "alice" })).map(strip),
      pick((e) => e.actor === "alice"),
    );
    assert.deepEqual(
      (await log.query({ action: "pull" })).map(strip),
      pick((e) => e.action === "pull"),
    );
    assert.deepEqual(
      (await log.query({ action: "login.failed" })).map(strip),
      pick((e) => e.action === "login.failed"),
    );
    assert.deepEqual(
      (await log.query({ repo: "app/api" })).map(strip),
      pick((e) => e.repo === "app/api"),
    );
    assert.deepEqual((await log.query({ actor: "alice", repo: "app/web", action: "push" })).map(strip), [
      ENTRIES[0],
    ]);
    assert.deepEqual(await log.query({ actor: "nobody" }), []);
    assert.deepEqual(await log.query({ repo: "app" }), [], "repo matches exactly, not as a prefix");
  });

  test("since and until select by the record's time", async () => {
    const log = await openLog("window");
    const batch = (tag: string): AuditEntry[] =>
      [1, 2, 3].map((i) => ({
        actor: "carol",
        kind: "user",
        action: "pull",
        address: "10.1.1.1",
        repo: "w/r",
        reference: `${tag}${i}`,
        status: 200,
      }));
    await recordAll(log, batch("a"), 3);
    await sleep(30);
    const t1 = new Date();
    await sleep(30);
    await recordAll(log, batch("b"), 6);
    await sleep(30);
    const t2 = new Date();
    await sleep(30);
    await recordAll(log, batch("c"), 9);

    const refs = async (q: Parameters<AuditLog["query"]>[0]) => (await log.query(q)).map((r) => r.reference);
    assert.deepEqual(await refs({ since: t1 }), ["b1", "b2", "b3", "c1", "c2", "c3"]);
    assert.deepEqual(await refs({ until: t1 }), ["a1", "a2", "a3"]);
    assert.deepEqual(await refs({ since: t1, until: t2 }), ["b1", "b2", "b3"]);
    assert.deepEqual(await refs({ since: t2 }), ["c1", "c2", "c3"]);
    assert.deepEqual(await refs({ since: t1, until: t2, limit: 2 }), ["b2", "b3"]);
    assert.deepEqual(await refs({ since: new Date(Date.now() + 3_600_000) }), []);
    assert.deepEqual(await refs({ until: new Date(Date.now() - 3_600_000) }), []);
  });

  test("limit returns the newest matches (oldest first), default 1000 and at most 10000", async () => {
    const log = await openLog("limits");
    const entries: AuditEntry[] = Array.from({ length: 1_050 }, (_, i) => ({
      actor: i === 0 ? "first" : i % 2 === 0 ? "even" : "odd",
      kind: "user",
      action: "pull",
      address: "10.2.2.2",
      repo: "l/r",
      reference: `t${i}`,
      status: 200,
    }));
    await recordAll(log, entries, 1_050);
    assert.deepEqual(
      (await log.query({ limit: 5 })).map((r) => r.reference),
      ["t1045", "t1046", "t1047", "t1048", "t1049"],
    );
    assert.deepEqual(
      (await log.query({ actor: "odd", limit: 3 })).map((r) => r.reference),
      ["t1045", "t1047", "t1049"],
    );
    // The only match is the oldest record: found however far back it is.
    assert.deepEqual(
      (await log.query({ actor: "first", limit: 3 })).map((r) => r.reference),
      ["t0"],
    );
    const newest = await log.query({});
    assert.equal(newest.length, 1000);
    assert.equal(newest[0]!.reference, "t50");
    assert.equal(newest[999]!.reference, "t1049");
    assert.equal((await log.query({ limit: 50_000 })).length, 1_050);
    assert.equal((await log.query({ actor: "odd", limit: 10_000 })).length, 525);
    assert.equal((await log.query({ actor: "even", limit: 10_000 })).length, 524);
  });

  test("an empty stream, and a filter matching nothing, answer at once", async () => {
    const log = await openLog("empty");
    let started = Date.now();
    assert.deepEqual(await log.query({}), []);
    assert.deepEqual(await log.query({ since: new Date(0), until: new Date(), actor: "x" }), []);
    assert.ok(Date.now() - started < 1_000, `took ${Date.now() - started} ms`);

    await recordAll(log, ENTRIES.slice(0, 2), 2);
    started = Date.now();
    assert.deepEqual(await log.query({ actor: "nobody" }), []);
    assert.deepEqual(await log.query({ since: new Date(Date.now() - 60_000), action: "admin" }), []);
    assert.ok(Date.now() - started < 1_000, `took ${Date.now() - started} ms`);
  });

  test("the stream is the region's own, with the configured limits; records survive close and reopen", async () => {
    let log = await openLog("durable", { maxAgeDays: 30, maxBytes: 64 * 1024 * 1024 });
    // Recorded and closed at once: close stores what is buffered.
    for (const e of ENTRIES) log.record(e);
    await log.close();
    assert.equal(log.dropped, 0);
    log.record(ENTRIES[0]!);
    assert.equal(log.dropped, 1, "a record after close is dropped, and counted");

    const nc = await connect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      let info = await jsm.streams.info(auditStreamName("durable"));
      assert.equal(info.config.name, "AUDIT_durable");
      assert.deepEqual(info.config.subjects, [auditSubject("durable")]);
      assert.equal(info.config.storage, "file");
      assert.equal(info.config.retention, "limits");
      assert.equal(info.config.max_age, nanos(30 * 86_400_000));
      assert.equal(info.config.max_bytes, 64 * 1024 * 1024);
      assert.equal(info.config.mirror ?? undefined, undefined);
      assert.equal((info.config.sources ?? []).length, 0);
      // Records are stored in batches: one message holds several.
      assert.ok(
        info.state.messages >= 1 && info.state.messages <= ENTRIES.length,
        `${info.state.messages} messages`,
      );

      // Reopened with other limits: the same stream, updated, with its records.
      log = await openLog("durable");
      assert.deepEqual((await log.query({})).map(strip), ENTRIES);
      info = await jsm.streams.info(auditStreamName("durable"));
      assert.equal(info.config.max_age, nanos(90 * 86_400_000));
      assert.equal(info.config.max_bytes, 1024 * 1024 * 1024);

      // Two regions on one server keep separate streams.
      const other = await openLog("durable-2");
      await recordAll(other, ENTRIES.slice(0, 1), 1);
      assert.equal((await log.query({})).length, ENTRIES.length);
    } finally {
      await nc.close();
    }
  });

  test("while NATS is down records are buffered up to a bound, then dropped and counted", async () => {
    const own = cleanup;
    const storeDir = tempDir(own, "meridian-audit-nats-");
    let server = await startTestNats(own, storeDir);
    const metrics = new MetricsRegistry();
    const log = await AuditLog.open({
      servers: [server.url],
      region: "outage",
      logger: silentLogger,
      maxBuffered: 5,
      metrics,
    });
    own(() => log.close());
    await log.ready();
    await recordAll(log, ENTRIES.slice(0, 1), 1);

    await server.stop();
    // Queries fail fast while NATS is away.
    await eventually(async () => {
      try {
        await log.query({});
        return false;
      } catch (err) {
        return err instanceof LogUnavailableError;
      }
    });
    for (const e of ENTRIES) log.record(e); // 8 records, room for 5
    assert.equal(log.buffered, 5);
    assert.equal(log.dropped, 3);
    const counter = await metrics.getSingleMetric("meridian_audit_records_dropped_total")!.get();
    assert.equal(counter.values[0]!.value, 3);

    server = await restartNats(own, server, storeDir);
    await eventually(async () => log.buffered === 0, 15_000);
    await eventually(async () => {
      try {
        return (await log.query({})).length === 6;
      } catch {
        return false;
      }
    }, 15_000);
    assert.deepEqual((await log.query({})).map(strip), [ENTRIES[0], ...ENTRIES.slice(0, 5)]);
    assert.equal(log.dropped, 3);
  });
});

test("opened while NATS is down: open returns, records wait, and are stored once NATS starts", async () => {
  const port = await freePort();
  const log = await AuditLog.open({
    servers: [`nats://127.0.0.1:${port}`],
    region: "late",
    logger: silentLogger,
    waitMs: 200,
  });
  cleanup(() => log.close());
  await assert.rejects(log.query({}), LogUnavailableError);
  log.record(ENTRIES[0]!);
  log.record(ENTRIES[1]!);
  assert.equal(log.buffered, 2);
  const server = await startNatsServer({
    port,
    storeDir: tempDir(cleanup, "meridian-audit-late-"),
    name: `test-${process.pid}`,
  });
  cleanup(() => server.stop());
  await log.ready();
  await eventually(async () => (await log.query({})).length === 2, 10_000);
  assert.deepEqual((await log.query({})).map(strip), ENTRIES.slice(0, 2));
});

describe("GET /audit", () => {
  test("answers the region's records, filtered; malformed parameters are 400 UNSUPPORTED", async () => {
    const log = await openLog("route");
    await recordAll(log, ENTRIES, ENTRIES.length);
    const app = Fastify();
    await app.register(
      async (admin) => {
        admin.setErrorHandler(handleError);
        await auditRoutes(admin, log, "route");
      },
      { prefix: "/admin/v1" },
    );
    cleanup(() => app.close());

    let res = await app.inject({ url: "/admin/v1/audit?actor=alice&since=1h&limit=2" });
    assert.equal(res.statusCode, 200);
    const body = res.json() as { region: string; records: AuditRecord[] };
    assert.equal(body.region, "route");
    assert.deepEqual(body.records.map(strip), ENTRIES.filter((e) => e.actor === "alice").slice(-2));

    res = await app.inject({ url: "/admin/v1/audit?action=login.failed" });
    assert.deepEqual((res.json() as { records: AuditRecord[] }).records.map(strip), [ENTRIES[4]]);

    res = await app.inject({ url: "/admin/v1/audit?until=2000-01-01" });
    assert.deepEqual(res.json(), { region: "route", records: [] });

    for (const [query, message] of [
      ["since=yesterday", /invalid since "yesterday": want an ISO-8601 time/],
      ["until=15", /invalid until "15"/],
      ["action=pulled", /invalid action "pulled": want one of pull, push/],
      ["limit=0", /invalid limit "0": want a whole number from 1 to 10000/],
      ["limit=20000", /invalid limit "20000"/],
      ["actr=alice", /unknown parameter "actr"/],
      ["actor=a&actor=b", /parameter actor: give it once/],
      ["since=1h&until=2h", /since \(.*\) is after until/],
    ] as const) {
      res = await app.inject({ url: `/admin/v1/audit?${query}` });
      assert.equal(res.statusCode, 400, query);
      const e = (res.json() as { errors: Array<{ code: string; message: string }> }).errors[0]!;
      assert.equal(e.code, "UNSUPPORTED", query);
      assert.match(e.message, message, query);
    }
  });
});

describe("since/until parsing", () => {
  const now = new Date("2024-05-10T12:00:00.000Z");
  const cases: Array<[string, string | RegExp]> = [
    ["15m", "2024-05-10T11:45:00.000Z"],
    ["90s", "2024-05-10T11:58:30.000Z"],
    ["2h", "2024-05-10T10:00:00.000Z"],
    ["7d", "2024-05-03T12:00:00.000Z"],
    ["1w", "2024-05-03T12:00:00.000Z"],
    ["1h30m", "2024-05-10T10:30:00.000Z"],
    ["0s", "2024-05-10T12:00:00.000Z"],
    [" 2h ", "2024-05-10T10:00:00.000Z"],
    ["2024-05-01", "2024-05-01T00:00:00.000Z"],
    ["2024-05-01T08:30:00Z", "2024-05-01T08:30:00.000Z"],
    ["2024-05-01T08:30:00.250Z", "2024-05-01T08:30:00.250Z"],
    ["2024-05-01T08:30:00+02:00", "2024-05-01T06:30:00.000Z"],
    ["2024-05-01T08:30", "2024-05-01T08:30:00.000Z"], // no zone: UTC
    ["2024-05-01 08:30:00", "2024-05-01T08:30:00.000Z"],
    ["", /invalid since ""/],
    ["15", /invalid since "15"/],
    ["1700000000000", /invalid since/],
    ["-15m", /invalid since/],
    ["15min", /invalid since/],
    ["m", /invalid since/],
    ["yesterday", /invalid since "yesterday"/],
    ["2024-13-01", /invalid since/],
    ["2024-05-01T25:00:00Z", /invalid since/],
    ["May 1 2024", /invalid since/],
  ];
  for (const [text, want] of cases) {
    test(JSON.stringify(text), () => {
      if (typeof want === "string") assert.equal(parseAuditTime(text, now, "since").toISOString(), want);
      else
        assert.throws(
          () => parseAuditTime(text, now, "since"),
          (err: unknown) => err instanceof UnsupportedError && want.test(err.message),
        );
    });
  }

  test("parseAuditQuery: defaults, every parameter, and its errors", () => {
    assert.deepEqual(parseAuditQuery({}, now), { limit: 1000 });
    assert.deepEqual(
      parseAuditQuery(
        { since: "1d", until: "2024-05-10T11:00:00Z", actor: "a", action: "admin", repo: "x/y", limit: "5" },
        now,
      ),
      {
        since: new Date("2024-05-09T12:00:00.000Z"),
        until: new Date("2024-05-10T11:00:00.000Z"),
        actor: "a",
        action: "admin",
        repo: "x/y",
        limit: 5,
      },
    );
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ limit: "1.5" }, /invalid limit "1.5"/],
      [{ limit: "-1" }, /invalid limit/],
      [{ limit: "10001" }, /invalid limit/],
      [{ action: "Pull" }, /invalid action "Pull"/],
      [{ repo: "" }, /parameter repo: empty/],
      [{ repo: ["a", "b"] }, /parameter repo: give it once/],
      [{ since: "1h", until: "2h" }, /since .* is after until/],
      [{ offset: "3" }, /unknown parameter "offset"/],
    ];
    for (const [params, message] of bad)
      assert.throws(
        () => parseAuditQuery(params, now),
        (err: unknown) => err instanceof UnsupportedError && message.test(err.message),
        JSON.stringify(params),
      );
  });
});
