/**
 * Issue 17, item 5, leftovers of the webhook work (replication/webhook-http.ts,
 * replication/webhook-delivery.ts): the receiver's address is resolved once
 * per attempt and the connection made to the address checked (DNS
 * rebinding cannot reach a refused address); orphan durables (a
 * subscription deleted while the worker was down) are removed. A real
 * nats-server holds the region's streams; a real receiver on 127.0.0.1.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { lookup } from "node:dns";
import { test } from "node:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { JetStreamLog } from "../../node/data/jetstream-log.js";
import type { Digest } from "../../protocol/digest.js";
import { type EventBody, makeEvent, type RegistryEvent, streamName } from "../../protocol/events.js";
import { auditStreamName, auditSubject } from "../../protocol/siem.js";
import type { WebhookSubscription } from "../../protocol/webhook.js";
import { type After, cleanupStack, eventually, silentLogger, startTestNats } from "../../testing/harness.js";
import { startWebhookReceiver } from "../../testing/webhook-receiver.js";
import { WebhookDeliverer } from "../webhook-delivery.js";
import { checkedAddresses, pinnedLookup, type Resolver } from "../webhook-http.js";

const D = (c: string) => `sha256:${c.repeat(64)}` as Digest;

async function setup(after: After, options: { allowLoopback?: boolean; resolve?: Resolver } = {}) {
  const nats = await startTestNats(after);
  const log = JetStreamLog.open({ servers: [nats.url], region: "a", name: "test-a", logger: silentLogger });
  after(() => log.close());
  await log.ready();
  const nc = await connect({ servers: nats.url });
  after(() => nc.close());
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const make = () => {
    const d = new WebhookDeliverer({
      js,
      jsm,
      region: "a",
      logger: silentLogger,
      allowLoopback: options.allowLoopback ?? true,
      timeoutMs: 2_000,
      backoffScale: 0.05,
      ...(options.resolve === undefined ? {} : { resolve: options.resolve }),
    });
    after(() => d.close());
    return d;
  };
  let wall = Date.now();
  const push = async (tag: string) => {
    const event = makeEvent(
      {
        type: "manifest.pushed",
        repo: "team/app",
        digest: D("a"),
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        size: 1,
        blobs: [],
        manifests: [],
        tag,
      } as EventBody,
      { id: randomUUID(), origin: "a", hlc: { wall: wall++, logical: 0 }, actor: "alice" },
    ) as RegistryEvent;
    await log.append(event);
    return event.id;
  };
  return { make, push, jsm };
}

const sub = (url: string, extra: Partial<WebhookSubscription> = {}): WebhookSubscription => ({
  name: "ci",
  url,
  project: "team",
  ...extra,
});

test("the address check: every resolved address checked, literals not resolved, the lookup pinned", async () => {
  const fixed =
    (...addresses: string[]): Resolver =>
    async () =>
      addresses;
  const never: Resolver = async () => assert.fail("a literal address is not resolved");
  await assert.rejects(
    checkedAddresses("h.example", false, fixed("169.254.169.254")),
    /169\.254\.169\.254 refused/,
  );
  await assert.rejects(
    checkedAddresses("h.example", false, fixed("10.0.0.1", "169.254.169.254")),
    /169\.254\.169\.254 refused/,
    "one refused address refuses the name",
  );
  await assert.rejects(checkedAddresses("h.example", false, fixed("::ffff:169.254.169.254")), /refused/);
  await assert.rejects(checkedAddresses("h.example", false, fixed("fe80::1")), /refused/);
  await assert.rejects(checkedAddresses("h.example", false, fixed("127.0.0.1")), /127\.0\.0\.1 refused/);
  await assert.rejects(checkedAddresses("h.example", false, fixed()), /resolves to nothing/);
  await assert.rejects(checkedAddresses("h.example", false, fixed("not-an-ip")), /refused/);
  assert.deepEqual(await checkedAddresses("h.example", true, fixed("127.0.0.1")), ["127.0.0.1"]);
  assert.deepEqual(await checkedAddresses("10.1.2.3", false, never), ["10.1.2.3"]);
  assert.deepEqual(await checkedAddresses("[::1]", true, never), ["::1"]);
  await assert.rejects(checkedAddresses("169.254.169.254", false, never), /refused/);

  // The pinned lookup answers the checked addresses whatever name it is asked for, in both forms.
  const pinned = pinnedLookup(["10.0.0.7", "::1"]);
  const one = await new Promise<unknown[]>((r) =>
    pinned("attacker.example", {}, (...args: unknown[]) => r(args)),
  );
  assert.deepEqual(one, [null, "10.0.0.7", 4]);
  const all = await new Promise<unknown[]>((r) =>
    pinned("attacker.example", { all: true }, (...args: unknown[]) => r(args)),
  );
  assert.deepEqual(all, [
    null,
    [
      { address: "10.0.0.7", family: 4 },
      { address: "::1", family: 6 },
    ],
  ]);
});

test("DNS rebinding: one resolution per attempt, the connection goes to the checked address; a name turning to metadata is refused", async (t) => {
  const after = cleanupStack(t);
  const r = await startWebhookReceiver(after);
  // A name no DNS answers (.invalid, RFC 6761): it can only be reached through the pinned address.
  let answer = "127.0.0.1";
  const asked: string[] = [];
  const resolve: Resolver = async (host) => {
    asked.push(host);
    const now = answer;
    // What a rebinding server does: a second lookup of the name would get the metadata address.
    answer = "169.254.169.254";
    return [now];
  };
  const { make, push } = await setup(after, { resolve });
  const deliverer = make();
  await deliverer.set({ subscription: sub(`http://rebind.invalid:${r.port}/hook`), secret: Buffer.alloc(0) });
  const first = await push("v1");
  await eventually(() => deliverer.deliveries("ci").length >= 1, 10_000);
  assert.equal(deliverer.deliveries("ci")[0]?.status, 204, "delivered to the checked address");
  assert.equal(r.state.got.length, 1);
  assert.equal(JSON.parse(r.state.got[0]?.body ?? "{}").id, first);
  assert.equal(r.state.got[0]?.headers.host, `rebind.invalid:${r.port}`, "the name is kept in Host");
  assert.deepEqual(asked, ["rebind.invalid"], "resolved once for the attempt: no second lookup to rebind");

  // The name now answers the metadata address: refused before any connection, retried, never sent.
  await push("v2");
  await eventually(() => deliverer.deliveries("ci").filter((a) => a.error !== undefined).length >= 2, 10_000);
  assert.match(deliverer.deliveries("ci")[1]?.error ?? "", /receiver address 169\.254\.169\.254 refused/);
  assert.equal(r.state.got.length, 1, "nothing reached a receiver");
  const attempts = deliverer.deliveries("ci").length;
  assert.equal(asked.length, attempts, "one resolution per attempt");
});

test("localhost through the system resolver: delivered when loopback is allowed, refused otherwise", async (t) => {
  const after = cleanupStack(t);
  const r = await startWebhookReceiver(after);
  const { make, push } = await setup(after);
  const deliverer = make();
  await deliverer.set({ subscription: sub(`http://localhost:${r.port}/hook`), secret: Buffer.alloc(0) });
  await push("v1");
  await eventually(() => deliverer.deliveries("ci").some((a) => a.status === 204), 10_000);
  assert.equal(r.state.got.length, 1);

  const strictSetup = await setup(after, { allowLoopback: false });
  const strict = strictSetup.make();
  await strict.set({
    subscription: sub(`http://localhost:${r.port}/hook`, { name: "s" }),
    secret: Buffer.alloc(0),
  });
  await strictSetup.push("v1");
  await eventually(() => strict.deliveries("s").length >= 1, 10_000);
  const localhostAddresses = await new Promise<string[]>((res) =>
    lookup("localhost", { all: true }, (_e, list) => res((list ?? []).map((a) => a.address))),
  );
  assert.match(strict.deliveries("s")[0]?.error ?? "", /receiver address (127\.0\.0\.1|::1) refused/);
  assert.ok(localhostAddresses.length > 0);
  assert.equal(r.state.got.length, 1, "nothing more reached the receiver");
});

test("orphan durables: removed when the subscription is deleted, and at start for those deleted while down", async (t) => {
  const after = cleanupStack(t);
  const r = await startWebhookReceiver(after);
  const { make, push, jsm } = await setup(after);
  const names = async (stream: string) => (await jsm.consumers.list(stream).next()).map((c) => c.name).sort();
  const first = make();
  for (const name of ["keep", "gone", "dropped"])
    await first.set({ subscription: sub(r.url, { name }), secret: Buffer.alloc(0) });
  await push("v1");
  await eventually(() => r.state.got.length >= 3, 10_000);
  assert.deepEqual(await names(streamName("a")), ["webhook-dropped", "webhook-gone", "webhook-keep"]);
  await first.delete("dropped");
  assert.deepEqual(
    await names(streamName("a")),
    ["webhook-gone", "webhook-keep"],
    "a deleted subscription's durable",
  );
  // A SIEM durable on the audit stream whose subscription is gone, and a durable that is not a webhook's.
  await jsm.streams.add({ name: auditStreamName("a"), subjects: [auditSubject("a")] });
  await jsm.consumers.add(auditStreamName("a"), {
    durable_name: "siem-old",
    ack_policy: "explicit" as never,
  });
  await jsm.consumers.add(streamName("a"), {
    durable_name: "replicate-to-b",
    ack_policy: "explicit" as never,
  });
  await first.close(); // the worker stops; "gone" is deleted meanwhile

  const second = make();
  await second.set({ subscription: sub(r.url, { name: "keep" }), secret: Buffer.alloc(0) });
  const removed = await second.removeOrphans([sub(r.url, { name: "keep" })]);
  assert.deepEqual(removed.sort(), ["siem-old", "webhook-gone"]);
  assert.deepEqual(
    await names(streamName("a")),
    ["replicate-to-b", "webhook-keep"],
    "others' durables untouched",
  );
  assert.deepEqual(await names(auditStreamName("a")), []);
  // The kept subscription goes on from where it was: the next event only, once.
  const n = r.state.got.length;
  const next = await push("v2");
  await eventually(() => r.state.got.length >= n + 1, 10_000);
  await new Promise((res) => setTimeout(res, 300));
  assert.deepEqual(
    r.state.got.slice(n).map((g) => JSON.parse(g.body).id),
    [next],
  );
  // Turned into a SIEM subscription: its position on the event stream goes, one on the audit stream comes.
  await second.set({
    subscription: sub(r.url, { name: "keep", project: "*", siem: true }),
    secret: Buffer.alloc(0),
  });
  assert.deepEqual(await names(streamName("a")), ["replicate-to-b"]);
  await eventually(async () => (await names(auditStreamName("a"))).includes("siem-keep"), 10_000);
});
