/**
 * Issue 17, item 5: webhooks as CloudEvents, delivered from a region's log
 * by replication/webhook-delivery.ts. A real nats-server holds region a's
 * stream (events appended through the real JetStreamLog), a real HTTP
 * receiver on 127.0.0.1 records every request, and the cloudevents SDK's
 * HTTP.toEvent parses what it got; the HMAC is verified with the secret.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { HTTP } from "cloudevents";
import { pino } from "pino";
import { JetStreamLog } from "../../node/data/jetstream-log.js";
import type { Digest } from "../../protocol/digest.js";
import { type EventBody, makeEvent, type RegistryEvent } from "../../protocol/events.js";
import { verifyWebhook, type WebhookSubscription } from "../../protocol/webhook.js";
import { type After, cleanupStack, eventually, silentLogger, startTestNats } from "../../testing/harness.js";
import { WebhookDeliverer } from "../webhook-delivery.js";

const SECRET = "s3cret-hmac-key-for-tests";
const D = (c: string) => `sha256:${c.repeat(64)}` as Digest;

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

/** A receiver: `mode` decides each answer; every request is recorded, answered or not. */
async function receiver(after: After) {
  const state = {
    mode: "ok" as "ok" | "fail" | "stall",
    got: [] as Received[],
    stalled: [] as ServerResponse[],
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      state.got.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      if (state.mode === "stall") state.stalled.push(res);
      else res.writeHead(state.mode === "ok" ? 204 : 500).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  after(async () => {
    for (const res of state.stalled) res.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return { state, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` };
}

async function setup(after: After, options: { allowLoopback?: boolean; timeoutMs?: number } = {}) {
  const nats = await startTestNats(after);
  const log = JetStreamLog.open({ servers: [nats.url], region: "a", name: "test-a", logger: silentLogger });
  after(() => log.close());
  await log.ready();
  const nc = await connect({ servers: nats.url });
  after(() => nc.close());
  const deliverer = new WebhookDeliverer({
    js: jetstream(nc),
    jsm: await jetstreamManager(nc),
    region: "a",
    logger: traceLogger,
    allowLoopback: options.allowLoopback ?? true,
    timeoutMs: options.timeoutMs ?? 2_000,
    backoffScale: 0.05,
  });
  after(() => deliverer.close());
  let wall = Date.now();
  const append = async (body: EventBody, extra: { cause?: string; origin?: string } = {}) => {
    const event = makeEvent(body, {
      id: randomUUID(),
      origin: extra.origin ?? "a",
      hlc: { wall: wall++, logical: 0 },
      actor: "alice",
      ...(extra.cause === undefined ? {} : { cause: extra.cause, srcSeq: 1 }),
    }) as RegistryEvent;
    const { seq } = await log.append(event);
    return { event, seq };
  };
  return { deliverer, append };
}

function pushed(repo: string, digest: Digest, tag?: string): EventBody {
  return {
    type: "manifest.pushed",
    repo,
    digest,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    size: 100,
    blobs: [],
    manifests: [],
    ...(tag === undefined ? {} : { tag }),
  } as EventBody;
}

function sub(url: string, extra: Partial<WebhookSubscription> = {}): WebhookSubscription {
  return { name: "ci", url, project: "team", ...extra };
}

/** Every line any deliverer logged, at every level (the secret must be in none). */
const logged: string[] = [];
const traceLogger = pino({ level: "trace" }, { write: (line: string) => logged.push(line) });

const idsOf = (got: Received[]) => got.map((r) => JSON.parse(r.body).id as string);

test("a push becomes one signed CloudEvent 1.0 the SDK parses; replicas, tags and filters", async (t) => {
  const after = cleanupStack(t);
  const { state, url } = await receiver(after);
  const { deliverer, append } = await setup(after);
  await deliverer.set({ subscription: sub(url), secret: Buffer.from(SECRET) });
  const p = await append(pushed("team/app", D("a"), "v1"));
  await append(pushed("other/app", D("b"), "v1")); // another project: not this subscription's
  const r = await append(pushed("team/app", D("c")), { cause: randomUUID(), origin: "b" }); // a replica from b
  const tg = await append({ type: "tag.set", repo: "team/app", tag: "latest", digest: D("a") } as EventBody);
  await append({ type: "blob.pushed", repo: "team/app", digest: D("d"), size: 1 } as EventBody); // not announced
  await eventually(() => state.got.length >= 3, 10_000);
  await new Promise((res) => setTimeout(res, 300));
  assert.deepEqual(idsOf(state.got), [p.event.id, r.event.id, tg.event.id]);

  const first = state.got[0] as Received;
  const now = Math.floor(Date.now() / 1000);
  assert.equal(first.headers["content-type"], "application/cloudevents+json; charset=utf-8");
  const ts = first.headers["x-meridian-timestamp"] as string;
  const sig = first.headers["x-meridian-signature"] as string;
  assert.match(sig, /^sha256=[0-9a-f]{64}$/);
  assert.ok(verifyWebhook(SECRET, ts, sig, first.body, now), "the HMAC verifies with the secret");
  assert.ok(!verifyWebhook("wrong", ts, sig, first.body, now), "not with another secret");
  assert.ok(!verifyWebhook(SECRET, ts, sig, first.body.replace("v1", "v2"), now), "nor over a changed body");
  assert.ok(!verifyWebhook(SECRET, ts, sig, first.body, now + 3600), "nor an hour later (replay)");

  const ce = HTTP.toEvent({ headers: first.headers as Record<string, string>, body: first.body });
  const one = Array.isArray(ce) ? ce[0] : ce;
  assert.ok(one !== undefined);
  assert.equal(one.specversion, "1.0");
  assert.equal(one.id, p.event.id);
  assert.equal(one.source, "meridian/a");
  assert.equal(one.type, "io.meridian.pushed");
  assert.equal(one.subject, "team/app:v1");
  assert.equal(one.time, new Date(p.event.at).toISOString());
  assert.equal(one.datacontenttype, "application/json");
  assert.deepEqual(one.data, {
    repository: "team/app",
    tag: "v1",
    digest: D("a"),
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    actor: "alice",
    region: "a",
    origin: "a",
  });
  const replica = JSON.parse((state.got[1] as Received).body);
  assert.equal(replica.type, "io.meridian.replicated");
  assert.equal(replica.subject, `team/app@${D("c")}`);
  assert.equal(replica.data.origin, "b");
  assert.equal(JSON.parse((state.got[2] as Received).body).type, "io.meridian.tag.moved");
  for (const got of state.got) assert.ok(!JSON.stringify(got).includes(SECRET), "the secret is never sent");
  assert.ok(!JSON.stringify(deliverer.deliveries("ci")).includes(SECRET));
  assert.equal(deliverer.deliveries("ci").length, 3);
  assert.ok(deliverer.deliveries("ci").every((a) => a.status === 204 && a.error === undefined));

  // Filters: only tag events of team/b* repositories.
  await deliverer.set({
    subscription: sub(url, { name: "tags", events: ["tag"], repos: ["team/b*"] }),
    secret: Buffer.from(SECRET),
  });
  await eventually(() => deliverer.deliveries("ci").length >= 3, 1_000); // the first stays as it was
  const before = state.got.length;
  const want = await append({ type: "tag.set", repo: "team/box", tag: "v1", digest: D("e") } as EventBody);
  await append(pushed("team/box", D("e"), "v2"));
  await append({ type: "tag.set", repo: "team/app", tag: "v9", digest: D("e") } as EventBody);
  await eventually(() => deliverer.deliveries("ci").length >= 6, 10_000);
  await new Promise((res) => setTimeout(res, 300));
  const tagsGot = deliverer.deliveries("tags").map((a) => a.eventId);
  assert.deepEqual(tagsGot, [want.event.id], "only the team/b* tag event");
  assert.equal(state.got.length - before, 4);

  // A deleted subscription receives nothing more.
  await deliverer.delete("tags");
  await deliverer.delete("ci");
  const n = state.got.length;
  await append({ type: "tag.set", repo: "team/box", tag: "v3", digest: D("e") } as EventBody);
  await new Promise((res) => setTimeout(res, 800));
  assert.equal(state.got.length, n);
  assert.ok(!logged.join("").includes(SECRET), "the secret is never logged");
});

test("a receiver answering 500 for a while gets every event once it recovers; replay re-sends the same ids", async (t) => {
  const after = cleanupStack(t);
  const { state, url } = await receiver(after);
  const { deliverer, append } = await setup(after);
  state.mode = "fail";
  await deliverer.set({ subscription: sub(url), secret: Buffer.from(SECRET) });
  const sent: string[] = [];
  let firstSeq = 0;
  for (let i = 0; i < 5; i++) {
    const { event, seq } = await append(pushed("team/app", D(String(i)), `t${i}`));
    if (i === 0) firstSeq = seq;
    sent.push(event.id);
  }
  await eventually(() => state.got.length >= 10, 15_000); // each tried at least twice
  assert.ok(deliverer.deliveries("ci").some((a) => a.status === 500 && a.error === "receiver answered 500"));
  state.mode = "ok";
  await eventually(() => deliverer.deliveries("ci").filter((a) => a.status === 204).length >= 5, 30_000);
  const okIds = deliverer
    .deliveries("ci")
    .filter((a) => a.status === 204)
    .map((a) => a.eventId);
  assert.deepEqual(new Set(okIds), new Set(sent), "nothing lost");
  assert.ok(
    idsOf(state.got).every((id) => sent.includes(id)),
    "duplicates only with the ids of the log events",
  );

  const n = state.got.length;
  await deliverer.replay("ci", firstSeq + 2);
  await eventually(() => state.got.length >= n + 3, 10_000);
  await new Promise((res) => setTimeout(res, 300));
  assert.deepEqual(
    idsOf(state.got.slice(n)),
    sent.slice(2),
    "replay from a sequence: the same ids, in order",
  );
});

test("a receiver that never answers: appends unaffected, deliveries time out and retry; loopback refused unless allowed", async (t) => {
  const after = cleanupStack(t);
  const { state, url } = await receiver(after);
  const { deliverer, append } = await setup(after, { timeoutMs: 400 });
  state.mode = "stall";
  await deliverer.set({ subscription: sub(url), secret: Buffer.from(SECRET) });
  const started = Date.now();
  const sent: string[] = [];
  for (let i = 0; i < 20; i++)
    sent.push((await append(pushed("team/app", D(String(i % 10)), `s${i}`))).event.id);
  assert.ok(Date.now() - started < 10_000, "appends finish while the receiver stalls");
  await eventually(
    () => deliverer.deliveries("ci").filter((a) => a.error === "timed out").length >= 2,
    15_000,
  );
  assert.ok(
    deliverer.deliveries("ci").every((a) => a.durationMs < 5_000),
    "each attempt bounded by the timeout",
  );
  state.mode = "ok";
  await eventually(
    () =>
      new Set(
        deliverer
          .deliveries("ci")
          .filter((a) => a.status === 204)
          .map((a) => a.eventId),
      ).size === 20,
    60_000,
  );

  // Without allowLoopback, a receiver on 127.0.0.1 is refused before any connection.
  const { state: other, url: otherUrl } = await receiver(after);
  const strict = await setup(after, { allowLoopback: false });
  await strict.deliverer.set({
    subscription: sub(otherUrl, { name: "strict" }),
    secret: Buffer.from(SECRET),
  });
  await strict.append(pushed("team/app", D("f"), "x"));
  await eventually(() => strict.deliverer.deliveries("strict").length >= 1, 10_000);
  assert.match(
    strict.deliverer.deliveries("strict")[0]?.error ?? "",
    /receiver address 127\.0\.0\.1 refused/,
  );
  assert.equal(other.got.length, 0);
  assert.ok(!logged.join("").includes(SECRET), "nor while retrying");
});
