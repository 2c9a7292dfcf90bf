/** Issue 17, item 5: the pure parts of webhooks (protocol/webhook.ts), by tables. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { AUTHORITY_TYPES, authorizeEvent, type EventFacts } from "../event-authority.js";
import type { RegistryEvent } from "../events.js";
import {
  parseWebhookSubscription,
  receiverAddressAllowed,
  signWebhook,
  verifyWebhook,
  webhookBackoffMs,
} from "../webhook.js";

test("receiver addresses: metadata, link-local, unspecified and multicast refused; loopback only when allowed", () => {
  const cases: Array<[string, boolean, boolean]> = [
    ["169.254.169.254", true, false],
    ["169.254.1.1", true, false],
    ["fe80::1", true, false],
    ["::ffff:169.254.169.254", true, false],
    ["0.0.0.0", true, false],
    ["::", true, false],
    ["224.0.0.1", true, false],
    ["ff02::1", true, false],
    ["127.0.0.1", false, false],
    ["127.0.0.1", true, true],
    ["::1", false, false],
    ["::1", true, true],
    ["10.1.2.3", false, true],
    ["192.168.0.10", false, true],
    ["93.184.216.34", false, true],
  ];
  for (const [address, allowLoopback, want] of cases)
    assert.equal(
      receiverAddressAllowed(address, allowLoopback),
      want,
      `${address} loopback=${allowLoopback}`,
    );
});

test("signature: over timestamp and body; wrong secret, changed body, stale or malformed timestamp refused", () => {
  const body = '{"id":"x"}';
  const sig = signWebhook("k", 1000, body);
  assert.match(sig, /^sha256=[0-9a-f]{64}$/);
  assert.ok(verifyWebhook("k", "1000", sig, body, 1000));
  assert.ok(verifyWebhook("k", "1000", sig, body, 1299));
  assert.ok(!verifyWebhook("k", "1000", sig, body, 1301));
  assert.ok(!verifyWebhook("k2", "1000", sig, body, 1000));
  assert.ok(!verifyWebhook("k", "1000", sig, '{"id":"y"}', 1000));
  assert.ok(!verifyWebhook("k", "1001", sig, body, 1000), "the timestamp is signed");
  assert.ok(!verifyWebhook("k", "1e3", sig, body, 1000));
  assert.ok(!verifyWebhook("k", undefined, sig, body, 1000));
  assert.ok(!verifyWebhook("k", "1000", "sha256=00", body, 1000));
});

test("backoff: 1 s doubling to 5 min, jitter within half", () => {
  assert.equal(webhookBackoffMs(0, 0), 500);
  assert.equal(webhookBackoffMs(0, 0.999999), 1000);
  assert.equal(webhookBackoffMs(3, 0.999999), 8000);
  for (let n = 0; n < 100; n++) {
    const ms = webhookBackoffMs(n, Math.random());
    assert.ok(ms >= 500 && ms <= 300_000, `${n}: ${ms}`);
  }
  assert.equal(webhookBackoffMs(1000, 0.999999), 300_000);
});

test("subscriptions: every problem listed; credentials in the URL and unknown kinds refused", () => {
  assert.deepEqual(
    parseWebhookSubscription({ name: "ci", url: "https://h/x", project: "team", events: ["pushed"] }),
    {
      name: "ci",
      url: "https://h/x",
      project: "team",
      events: ["pushed"],
    },
  );
  assert.throws(
    () =>
      parseWebhookSubscription({
        name: "Bad Name",
        url: "ftp://h",
        project: "",
        events: ["nope"],
        repos: [],
      }),
    (err: Error) =>
      ["name:", "url:", "project:", "events:", "repos:"].every((field) => err.message.includes(field)),
  );
  assert.throws(
    () => parseWebhookSubscription({ name: "a", url: "https://u:p@h/", project: "t" }),
    /credentials/,
  );
});

test("who may make webhook events: system admins, a project admin of the subscription's project only", () => {
  const at = { id: "e1", v: 1, origin: "a", hlc: { wall: 1, logical: 0 }, at: "2026-01-01T00:00:00Z" };
  const set = (actor: string, project: string) =>
    ({
      ...at,
      actor,
      type: "webhook.set",
      subscription: { name: "ci", url: "https://h/x", project },
    }) as RegistryEvent;
  const del = (actor: string, project: string) =>
    ({ ...at, actor, type: "webhook.deleted", project, name: "ci" }) as RegistryEvent;
  const replay = (actor: string, project: string) =>
    ({ ...at, actor, type: "webhook.replay", project, name: "ci", region: "a", fromSeq: 1 }) as RegistryEvent;
  const admin: EventFacts = { actorUser: { systemAdmin: true, roles: {} } };
  const teamAdmin: EventFacts = { actorUser: { systemAdmin: false, roles: { team: "projectAdmin" } } };
  const teamDev: EventFacts = { actorUser: { systemAdmin: false, roles: { team: "developer" } } };
  for (const make of [set, del, replay]) {
    assert.ok(AUTHORITY_TYPES.has(make("x", "team").type), "needs a proof");
    assert.equal(authorizeEvent(make("root", "other"), admin).allowed, true);
    assert.equal(authorizeEvent(make("pa", "team"), teamAdmin).allowed, true);
    assert.equal(authorizeEvent(make("pa", "other"), teamAdmin).allowed, false, "not another project's");
    assert.equal(authorizeEvent(make("dev", "team"), teamDev).allowed, false);
    assert.equal(authorizeEvent(make("ghost", "team"), {}).allowed, false);
    assert.equal(authorizeEvent(make("config", "team"), {}).allowed, false);
  }
});
