/**
 * Issue 17, item 5, the rest: failover and quota refusals as CloudEvents,
 * subscriptions of every project (`*`) and SIEM ones, the audit batch's
 * CloudEvents and who may make what (protocol/webhook.ts, protocol/siem.ts),
 * by tables.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Digest } from "../digest.js";
import { authorizeEvent, type EventFacts } from "../event-authority.js";
import { type EventBody, makeEvent, type RegistryEvent, validateEvent } from "../events.js";
import { auditCloudEvents } from "../siem.js";
import { cloudEventFor, parseWebhookSubscription, type WebhookSubscription } from "../webhook.js";

const ev = (body: EventBody, extra: { cause?: string; actor?: string; epoch?: number } = {}) =>
  makeEvent(body, {
    id: "e-1",
    origin: "a",
    hlc: { wall: 1, logical: 0 },
    actor: extra.actor ?? "root",
    at: "2026-01-01T00:00:00.000Z",
    ...(extra.epoch === undefined ? {} : { epoch: extra.epoch }),
    ...(extra.cause === undefined ? {} : { cause: extra.cause, srcSeq: 3 }),
  }) as RegistryEvent;

const sub = (extra: Partial<WebhookSubscription> = {}): WebhookSubscription => ({
  name: "s",
  url: "https://h/x",
  project: "team",
  ...extra,
});

const failover = ev(
  {
    type: "failover.recorded",
    from: "a",
    to: "b",
    scopes: ["team/", "other/app", "", "team/x"],
    force: true,
  },
  { epoch: 4 },
);
const quota = ev(
  {
    type: "quota.exceeded",
    project: "team",
    repo: "team/app",
    region: "a",
    limitBytes: 1000,
    usedBytes: 990,
    requestedBytes: 4096,
  },
  { actor: "system" },
);

test("a failover reaches every subscription asking for it, cut to its project; all of it for `*`", () => {
  const team = cloudEventFor(sub(), failover, "a");
  assert.equal(team?.type, "io.meridian.failover");
  assert.equal(team?.subject, "a->b");
  assert.equal(team?.id, "e-1");
  assert.deepEqual(team?.data.failover, {
    from: "a",
    to: "b",
    epoch: 4,
    force: true,
    scopes: ["team/", "", "team/x"],
  });
  assert.equal(team?.data.repository, undefined);
  assert.deepEqual(cloudEventFor(sub({ project: "*" }), failover, "a")?.data.failover?.scopes, [
    "team/",
    "other/app",
    "",
    "team/x",
  ]);
  assert.deepEqual(cloudEventFor(sub({ project: "zzz" }), failover, "a")?.data.failover?.scopes, [""]);
  // The repos filter is about repositories; a failover is mesh-wide and passes it.
  assert.ok(cloudEventFor(sub({ repos: ["team/only"] }), failover, "a") !== undefined);
  assert.equal(cloudEventFor(sub({ events: ["pushed"] }), failover, "a"), undefined, "not asked for");
  assert.ok(cloudEventFor(sub({ events: ["failover"] }), failover, "a") !== undefined);
  assert.equal(
    cloudEventFor(sub(), { ...failover, cause: "x" } as RegistryEvent, "b"),
    undefined,
    "a replica",
  );
  assert.equal(
    cloudEventFor(sub({ project: "*", siem: true }), failover, "a"),
    undefined,
    "a SIEM gets audit only",
  );
});

test("a quota refusal: its project's subscriptions and `*`, with the numbers", () => {
  const got = cloudEventFor(sub(), quota, "a");
  assert.equal(got?.type, "io.meridian.quota.exceeded");
  assert.equal(got?.subject, "team/app@");
  assert.deepEqual(got?.data, {
    repository: "team/app",
    actor: "system",
    region: "a",
    origin: "a",
    quota: { project: "team", limitBytes: 1000, usedBytes: 990, requestedBytes: 4096 },
  });
  assert.ok(cloudEventFor(sub({ project: "*", events: ["quota"] }), quota, "a") !== undefined);
  assert.equal(cloudEventFor(sub({ project: "other" }), quota, "a"), undefined);
  assert.equal(cloudEventFor(sub({ events: ["failover"] }), quota, "a"), undefined);
  assert.equal(cloudEventFor(sub({ repos: ["team/b*"] }), quota, "a"), undefined);
  // A `*` subscription hears every project's content events too.
  const push = ev({
    type: "manifest.pushed",
    repo: "zeta/app",
    digest: `sha256:${"a".repeat(64)}` as Digest,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    size: 1,
    blobs: [],
    manifests: [],
  } as EventBody);
  assert.equal(cloudEventFor(sub({ project: "*" }), push, "a")?.type, "io.meridian.pushed");
  assert.equal(cloudEventFor(sub(), push, "a"), undefined);
});

test("the records validate; bad ones are refused by field", () => {
  assert.equal(validateEvent(JSON.parse(JSON.stringify(failover))).type, "failover.recorded");
  assert.equal(validateEvent(JSON.parse(JSON.stringify(quota))).type, "quota.exceeded");
  assert.throws(() => validateEvent({ ...quota, usedBytes: -1 }), /usedBytes/);
  assert.throws(() => validateEvent({ ...quota, repo: "Bad Repo" }), /repo/);
  assert.throws(() => validateEvent({ ...failover, from: "NOT A REGION" }), /from/);
  assert.throws(() => validateEvent({ ...failover, scopes: [1] }), /scopes/);
  assert.throws(() => validateEvent({ ...failover, force: "yes" }), /force/);
});

test("subscriptions of every project and SIEM ones: shapes, and only system admins may make them", () => {
  assert.deepEqual(
    parseWebhookSubscription({ name: "siem", url: "https://s/in", project: "*", siem: true }),
    {
      name: "siem",
      url: "https://s/in",
      project: "*",
      siem: true,
    },
  );
  assert.throws(
    () => parseWebhookSubscription({ name: "s", url: "https://s/in", project: "team", siem: true }),
    /siem: wants project \*/,
  );
  assert.throws(
    () =>
      parseWebhookSubscription({
        name: "s",
        url: "https://s/in",
        project: "*",
        siem: true,
        events: ["pushed"],
      }),
    /no events or repos filter/,
  );
  assert.throws(() => parseWebhookSubscription({ name: "s", url: "https://s/in", project: "t*" }), /project/);
  assert.throws(
    () => parseWebhookSubscription({ name: "s", url: "https://s/in", project: "*", siem: "yes" }),
    /siem/,
  );
  const set = (project: string, siem?: boolean) =>
    ev(
      {
        type: "webhook.set",
        subscription: { name: "s", url: "https://s/in", project, ...(siem ? { siem } : {}) },
      } as EventBody,
      { actor: "pa" },
    );
  const teamAdmin: EventFacts = { actorUser: { systemAdmin: false, roles: { team: "projectAdmin" } } };
  const admin: EventFacts = { actorUser: { systemAdmin: true, roles: {} } };
  assert.equal(
    authorizeEvent(set("*"), teamAdmin).allowed,
    false,
    "a project admin may not reach every project",
  );
  assert.equal(authorizeEvent(set("*", true), teamAdmin).allowed, false, "nor the audit stream");
  assert.equal(authorizeEvent(set("*", true), admin).allowed, true);
  assert.equal(authorizeEvent(failover, teamAdmin).allowed, false, "a failover record needs a system admin");
  assert.equal(authorizeEvent(failover, admin).allowed, true);
  assert.equal(
    authorizeEvent(quota, {}).allowed,
    true,
    "a refusal record needs no right (it changes nothing)",
  );
});

test("audit records as a CloudEvents batch: stable ids by stream sequence and line, type by action", () => {
  const lines = [
    JSON.stringify({
      at: "2026-01-01T00:00:00.000Z",
      region: "a",
      actor: "alice",
      kind: "user",
      action: "pull",
      address: "10.0.0.1",
      repo: "team/app",
      reference: "v1",
      status: 200,
    }),
    "not json",
    JSON.stringify({
      at: "2026-01-01T00:00:01.000Z",
      region: "a",
      actor: "mallory",
      kind: "user",
      action: "login.failed",
      address: "10.0.0.2",
      status: 401,
    }),
    JSON.stringify({
      at: "2026-01-01T00:00:02.000Z",
      region: "a",
      actor: "root",
      kind: "user",
      action: "Weird Action",
      address: "x",
      status: 200,
    }),
    "",
  ];
  const got = auditCloudEvents(lines, "a", 42);
  assert.deepEqual(
    got.map((e) => [e.id, e.type, e.subject, e.source]),
    [
      ["a:42:0", "io.meridian.audit.pull", "team/app:v1", "meridian/a/audit"],
      ["a:42:2", "io.meridian.audit.login.failed", "mallory", "meridian/a/audit"],
      ["a:42:3", "io.meridian.audit", "root", "meridian/a/audit"],
    ],
  );
  assert.deepEqual(got[0]?.data, JSON.parse(lines[0] as string), "the record as stored");
  assert.equal(got[1]?.time, "2026-01-01T00:00:01.000Z");
  assert.deepEqual(auditCloudEvents(lines, "a", 42), got, "deterministic: the same ids again");
});
