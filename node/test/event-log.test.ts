/**
 * The EventLog conformance suite (node/data/event-log.ts), as
 * blob-store.test.ts is BlobStore's: every implementation runs
 * `eventLogSuite` with a factory for a fresh, empty log on a server it can
 * stop and start again. JetStreamLog runs it against a real nats-server.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { LogConflictError, LogUnavailableError } from "../../protocol/errors.js";
import {
  decodeEvent,
  type EventBody,
  makeEvent,
  type RegistryEvent,
  subjectFor,
} from "../../protocol/events.js";
import {
  type After,
  cleanupStack,
  eventually,
  restartNats,
  silentLogger,
  startTestNats,
  startTestNatsCluster,
  type TestNatsCluster,
  tempDir,
} from "../../testing/harness.js";
import type { Delivery, DeliveryHandler, Outcome } from "../data/durable-subscription.js";
import type { EventLog, LoggedEvent } from "../data/event-log.js";
import { JetStreamLog } from "../data/jetstream-log.js";

/** One fresh log, plus what the suite needs to look behind it. */
export interface EventLogHarness {
  log: EventLog;
  /** Resolves once the log can take appends. */
  ready(): Promise<void>;
  /** The subject `lastOnSubject` knows this event by. */
  subjectOf(event: RegistryEvent): string;
  /** Make the log's backend unreachable, then reachable again (its data kept). */
  stopBackend(): Promise<void>;
  startBackend(): Promise<void>;
}

let counter = 0;
function event(body: EventBody): RegistryEvent {
  counter++;
  return makeEvent(body, {
    id: `log-suite-${process.pid}-${counter}`,
    origin: "suite",
    hlc: { wall: counter, logical: 0 },
    actor: "tester",
  });
}
const tagSet = (tag: string) =>
  event({ type: "tag.set", repo: "suite/app", tag, digest: `sha256:${"a".repeat(64)}` as never });
const policyDeleted = (name: string) => event({ type: "policy.deleted", name });

/** Take `n` events from a tail starting at `from`, then stop it. */
async function take(log: EventLog, from: number, n: number, timeoutMs = 20_000): Promise<LoggedEvent[]> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  const out: LoggedEvent[] = [];
  try {
    for await (const entry of log.tail(from, ac.signal)) {
      out.push(entry);
      if (out.length === n) break;
    }
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
  return out;
}

/**
 * Run a subscription until `done()` says so (or `timeoutMs`), then stop it
 * and wait for it to end (the outcomes under way applied).
 */
async function subscribeUntil(
  log: EventLog,
  durable: string,
  handler: DeliveryHandler,
  done: () => boolean,
  options: { depth?: number; ackWaitMs?: number; timeoutMs?: number } = {},
): Promise<void> {
  const ac = new AbortController();
  const errors: unknown[] = [];
  const running = log.subscribe(durable, handler, {
    signal: ac.signal,
    ...(options.depth === undefined ? {} : { depth: options.depth }),
    ...(options.ackWaitMs === undefined ? {} : { ackWaitMs: options.ackWaitMs }),
    onError: (err) => errors.push(err),
  });
  try {
    await eventually(done, options.timeoutMs ?? 20_000);
  } finally {
    ac.abort();
    await running;
  }
}

const nameOf = (d: Delivery) => (decodeEvent(d.data) as { name: string }).name;

export function eventLogSuite(name: string, open: (after: After) => Promise<EventLogHarness>) {
  describe(`EventLog: ${name}`, () => {
    const cleanup = cleanupStack({ after });
    const fresh = async () => {
      const h = await open(cleanup);
      await h.ready();
      return h;
    };

    test("appends get increasing sequences; lastSeq follows (0 when empty)", async () => {
      const { log } = await fresh();
      assert.equal(await log.lastSeq(), 0);
      assert.equal(log.writable, true);
      const a = await log.append(policyDeleted("a"));
      const b = await log.append(policyDeleted("b"));
      assert.deepEqual(a, { seq: 1, duplicate: false });
      assert.deepEqual(b, { seq: 2, duplicate: false });
      assert.equal(await log.lastSeq(), 2);
    });

    test("an append retried with the same event id is de-duplicated to its first sequence", async () => {
      const { log } = await fresh();
      const e = policyDeleted("once");
      const first = await log.append(e);
      await log.append(policyDeleted("other"));
      assert.deepEqual(await log.append(e), { seq: first.seq, duplicate: true });
      assert.equal(await log.lastSeq(), 2);
    });

    test("compare-and-set on a subject: the expected last sequence, or LogConflictError", async () => {
      const h = await fresh();
      const first = tagSet("v1");
      assert.equal((await h.log.append(first, { expectLastSubjectSeq: 0 })).seq, 1);
      await assert.rejects(h.log.append(tagSet("v1"), { expectLastSubjectSeq: 0 }), LogConflictError);
      const second = tagSet("v1");
      assert.equal((await h.log.append(second, { expectLastSubjectSeq: 1 })).seq, 2);
      await assert.rejects(h.log.append(tagSet("v1"), { expectLastSubjectSeq: 1 }), LogConflictError);
      // Another subject has its own sequence.
      assert.equal((await h.log.append(tagSet("v2"), { expectLastSubjectSeq: 0 })).seq, 3);
      assert.equal(await h.log.lastSeq(), 3, "refused appends left nothing");
    });

    test("lastOnSubject: the last event on a subject, undefined when it has none", async () => {
      const h = await fresh();
      const older = tagSet("latest");
      const newer = tagSet("latest");
      assert.equal(await h.log.lastOnSubject(h.subjectOf(older)), undefined);
      await h.log.append(older);
      await h.log.append(policyDeleted("between"));
      await h.log.append(newer);
      const last = await h.log.lastOnSubject(h.subjectOf(older));
      assert.equal(last?.seq, 3);
      assert.deepEqual(last?.event, newer);
    });

    test("tail yields every event from a sequence on, in order, those appended later too, until aborted", async () => {
      const { log } = await fresh();
      const events = [policyDeleted("1"), policyDeleted("2"), policyDeleted("3")];
      for (const e of events) await log.append(e);
      const later = [policyDeleted("4"), policyDeleted("5")];
      const tailed = take(log, 2, 4);
      for (const e of later) await log.append(e);
      const got = await tailed;
      assert.deepEqual(
        got.map((x) => x.seq),
        [2, 3, 4, 5],
      );
      assert.deepEqual(
        got.map((x) => x.event),
        [...events.slice(1), ...later],
      );
      // An aborted tail ends.
      const ac = new AbortController();
      ac.abort();
      const none: LoggedEvent[] = [];
      for await (const entry of log.tail(1, ac.signal)) none.push(entry);
      assert.deepEqual(none, []);
    });

    test("subscribe: each delivery's outcome is applied; acknowledged and given-up events never come again, retried ones do", async () => {
      const { log } = await fresh();
      for (const n of ["ack", "retry", "give-up", "last"]) await log.append(policyDeleted(n));
      const seen: Array<{ name: string; seq: number; redelivered: boolean }> = [];
      const outcomeOf = (d: Delivery): Outcome => {
        const name = nameOf(d);
        if (name === "retry" && !d.redelivered) return { outcome: "retry-later", delayMs: 200 };
        if (name === "give-up") return { outcome: "give-up", reason: "poison" };
        return { outcome: "ack" };
      };
      await subscribeUntil(
        log,
        "suite-durable",
        async (d) => {
          seen.push({ name: nameOf(d), seq: d.seq, redelivered: d.redelivered });
          return outcomeOf(d);
        },
        () => seen.some((s) => s.name === "retry" && s.redelivered) && seen.some((s) => s.name === "last"),
      );
      assert.deepEqual(
        seen.filter((s) => !s.redelivered).map((s) => [s.seq, s.name]),
        [
          [1, "ack"],
          [2, "retry"],
          [3, "give-up"],
          [4, "last"],
        ],
      );
      assert.deepEqual(
        seen.filter((s) => s.redelivered).map((s) => s.name),
        ["retry"],
        "only the event to retry came again",
      );
      // The durable resumes where it stood: only what is appended later comes to it.
      await log.append(policyDeleted("after"));
      const again: string[] = [];
      await subscribeUntil(
        log,
        "suite-durable",
        async (d) => {
          again.push(nameOf(d));
          return { outcome: "ack" };
        },
        () => again.includes("after"),
      );
      await new Promise((r) => setTimeout(r, 500)); // anything else would have come by now
      assert.deepEqual(again, ["after"]);
    });

    test("subscribe: handlers overlap up to `depth`, `earlier` settles in log order, outcomes applied in order", async () => {
      const { log } = await fresh();
      for (const n of ["1", "2", "3", "4"]) await log.append(policyDeleted(n));
      const ordered: number[] = [];
      /** How many had committed when each one's handler was called. */
      const committedAtStart: number[] = [];
      let releaseFirst!: () => void;
      const firstHeld = new Promise<void>((r) => {
        releaseFirst = r;
      });
      await subscribeUntil(
        log,
        "suite-ordered",
        async (d) => {
          committedAtStart.push(ordered.length);
          // The first one's slow part ends only once the fourth was called: they overlap,
          // and the later ones, done first, must still wait for it.
          if (d.seq === 1) await firstHeld;
          if (d.seq === 4) releaseFirst();
          await d.earlier;
          ordered.push(d.seq);
          return { outcome: "ack" };
        },
        () => ordered.length === 4,
        { depth: 4 },
      );
      assert.deepEqual(committedAtStart, [0, 0, 0, 0], "all four were handled at once");
      assert.deepEqual(ordered, [1, 2, 3, 4]);
    });

    test("subscribe: a delivery whose handler throws is not acknowledged and comes again", async () => {
      const { log } = await fresh();
      await log.append(policyDeleted("flaky"));
      const attempts: boolean[] = [];
      await subscribeUntil(
        log,
        "suite-throws",
        async (d) => {
          attempts.push(d.redelivered);
          if (!d.redelivered) throw new Error("handler failed");
          return { outcome: "ack" };
        },
        () => attempts.length >= 2,
        { ackWaitMs: 500 },
      );
      assert.deepEqual(attempts.slice(0, 2), [false, true]);
    });

    test("while the backend is down, appends fail fast with LogUnavailableError; tail rides it out", async () => {
      const h = await fresh();
      await h.log.append(policyDeleted("before"));
      const tailed = take(h.log, 1, 2, 30_000);
      await h.stopBackend();
      await eventually(() => !h.log.writable, 10_000);
      await assert.rejects(h.log.append(policyDeleted("refused")), LogUnavailableError);
      await h.startBackend();
      await eventually(() => h.log.writable, 20_000);
      const after = policyDeleted("after");
      // A cluster's connection is back before JetStream has elected its leaders again: until
      // then an append fails as LogUnavailableError (recoverable, a client's 503), so it is
      // retried as a client would, within a bound. The event's id makes a retry idempotent.
      const until = Date.now() + 20_000;
      for (;;) {
        try {
          await h.log.append(after);
          break;
        } catch (err) {
          if (!(err instanceof LogUnavailableError) || Date.now() > until) throw err;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      const got = await tailed;
      assert.deepEqual(
        got.map((x) => x.seq),
        [1, 2],
      );
      assert.deepEqual(got[1]?.event, after);
    });
  });
}

eventLogSuite("JetStreamLog on a real nats-server", async (after) => {
  const storeDir = tempDir(after, "meridian-nats-");
  let nats = await startTestNats(after, storeDir);
  const region = `suite${++counter}`;
  const log = JetStreamLog.open({
    servers: [nats.url],
    region,
    name: "event-log-suite",
    logger: silentLogger,
  });
  after(() => log.close());
  return {
    log,
    ready: () => log.ready(),
    subjectOf: (e) => subjectFor(region, e),
    stopBackend: () => nats.stop(),
    startBackend: async () => {
      nats = await restartNats(after, nats, storeDir);
    },
  };
});

// The same contract on a three-server JetStream cluster, streams at three replicas (issue 13):
// one cluster for the suite, a fresh region (so a fresh stream) per test.
let cluster: Promise<TestNatsCluster> | undefined;
eventLogSuite("JetStreamLog on a three-server JetStream cluster (R3)", async (after) => {
  cluster ??= startTestNatsCluster(after, 3);
  const c = await cluster;
  const region = `cluster${++counter}`;
  const log = JetStreamLog.open({
    servers: c.urls,
    region,
    name: "event-log-suite",
    replicas: 3,
    logger: silentLogger,
  });
  after(() => log.close());
  return {
    log,
    ready: () => log.ready(),
    subjectOf: (e) => subjectFor(region, e),
    stopBackend: () => c.stop(),
    startBackend: () => c.restart(),
  };
});
