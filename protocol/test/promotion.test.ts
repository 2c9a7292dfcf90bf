/** Issue 17, item 2: the pure parts of promotion (protocol/promotion.ts) and its CloudEvents, by tables. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { authorizeEvent } from "../event-authority.js";
import { makeEvent, type RegistryEvent } from "../events.js";
import {
  type PromotionDestination,
  type PromotionRecord,
  parseDestination,
  parseGateScope,
  parseSourceReference,
  promotionId,
  promotionProblems,
  scopesFor,
} from "../promotion.js";
import { cloudEventFor } from "../webhook.js";

const REGIONS = ["a", "b"];
const ENDPOINTS = ["cloud", "b"];
const SRC = { region: "a", repository: "team/app", tag: "1.0" };
const DIGEST = `sha256:${"a".repeat(64)}`;

test("destinations: a region first, then an endpoint, else a repository of the source's region", () => {
  const cases: Array<[string, PromotionDestination]> = [
    ["b", { kind: "region", name: "b", repository: "team/app", tag: "1.0" }],
    ["b/prod/app", { kind: "region", name: "b", repository: "prod/app", tag: "1.0" }],
    ["b/prod/app:2.0", { kind: "region", name: "b", repository: "prod/app", tag: "2.0" }],
    ["a/prod/app", { kind: "region", name: "a", repository: "prod/app", tag: "1.0" }],
    ["cloud", { kind: "endpoint", name: "cloud", repository: "team/app", tag: "1.0" }],
    ["cloud/mirror/app:x", { kind: "endpoint", name: "cloud", repository: "mirror/app", tag: "x" }],
    ["prod/app", { kind: "repository", name: "a", repository: "prod/app", tag: "1.0" }],
    ["prod/app:rc", { kind: "repository", name: "a", repository: "prod/app", tag: "rc" }],
    ["team/app:2.0", { kind: "repository", name: "a", repository: "team/app", tag: "2.0" }],
    ["app", { kind: "repository", name: "a", repository: "app", tag: "1.0" }],
  ];
  for (const [text, want] of cases)
    assert.deepEqual(parseDestination(text, SRC, REGIONS, ENDPOINTS), want, text);
});

test("destinations refused: the source itself, bad names, unknown upper-case names", () => {
  for (const [text, why] of [
    ["team/app", /it is the source/],
    ["team/app:1.0", /it is the source/],
    ["a", /the source is already there/],
    ["Nowhere", /no such region or endpoint/],
    ["b/UPPER/app", /invalid repository name/],
    ["b/prod/app:bad tag", /invalid tag/],
    ["", /want DEST/],
    ["x".repeat(600), /want DEST/],
  ] as const)
    assert.throws(() => parseDestination(text, SRC, REGIONS, ENDPOINTS), why, text);
});

test("source references: REPO:TAG only", () => {
  assert.deepEqual(parseSourceReference("team/app:1.0"), { repository: "team/app", tag: "1.0" });
  assert.deepEqual(parseSourceReference("localhost/app:v"), { repository: "localhost/app", tag: "v" });
  for (const bad of ["team/app", "team/app@sha256:00", ":1.0", "Team/app:1", "team/app:"])
    assert.throws(() => parseSourceReference(bad), Error, bad);
});

test("gate scopes: destination:NAME or project:NAME", () => {
  assert.deepEqual(parseGateScope("destination:eu-west-1"), { kind: "destination", name: "eu-west-1" });
  assert.deepEqual(parseGateScope("project:prod"), { kind: "project", name: "prod" });
  for (const bad of ["region:b", "destination:", "project:UPPER", "b", ":b"])
    assert.throws(() => parseGateScope(bad), /gate scope/, bad);
  assert.deepEqual(scopesFor({ kind: "endpoint", name: "cloud", repository: "prod/app", tag: "1" }), [
    { kind: "destination", name: "cloud" },
    { kind: "project", name: "prod" },
  ]);
});

test("promotion ids: stable for the same source, digest and destination; different otherwise", () => {
  const s = { ...SRC, digest: DIGEST };
  const d: PromotionDestination = { kind: "region", name: "b", repository: "team/app", tag: "1.0" };
  const id = promotionId(s, d);
  assert.match(id, /^pr-[0-9a-f]{24}$/);
  assert.equal(promotionId({ ...s }, { ...d }), id);
  assert.notEqual(promotionId({ ...s, digest: `sha256:${"b".repeat(64)}` }, d), id);
  assert.notEqual(promotionId(s, { ...d, kind: "endpoint" }), id);
  assert.notEqual(promotionId(s, { ...d, tag: "1.1" }), id);
  assert.notEqual(promotionId({ ...s, region: "b" }, d), id);
});

const record = (outcome: "passed" | "failed", gates: Array<{ gate: string; ok: boolean }>) => ({
  promotionId: promotionId(
    { ...SRC, digest: DIGEST },
    { kind: "region", name: "b", repository: "team/app", tag: "1.0" },
  ),
  source: { ...SRC, digest: DIGEST },
  destination: { kind: "region", name: "b", repository: "team/app", tag: "1.0" },
  gates: gates.map((g) => ({ ...g, scope: "destination:b", reason: `${g.gate}: why` })),
  outcome,
});

test("a record's outcome must agree with its gates", () => {
  assert.deepEqual(promotionProblems(record("passed", [{ gate: "signature", ok: true }])), []);
  assert.deepEqual(promotionProblems(record("passed", [])), [], "no gate configured: passed");
  assert.deepEqual(promotionProblems(record("passed", [{ gate: "signature", ok: false }])), ["outcome"]);
  assert.deepEqual(promotionProblems(record("failed", [{ gate: "signature", ok: true }])), ["outcome"]);
  assert.deepEqual(promotionProblems(record("failed", [{ gate: "nope", ok: false }])), ["gates"]);
});

function event(body: ReturnType<typeof record>, cause?: string): RegistryEvent {
  const e = makeEvent(
    { type: "promotion.recorded", ...(body as Omit<PromotionRecord, "outcome"> & { outcome: "passed" }) },
    {
      id: "ev-1",
      origin: "a",
      hlc: { wall: 1, logical: 0 },
      actor: "admin",
      at: "2026-01-01T00:00:00.000Z",
    },
  );
  return cause === undefined ? e : { ...e, cause };
}

test("CloudEvents: promotion passed and failed, scan-gate refused when the vulnerabilities gate failed", () => {
  const sub = { name: "ci", url: "https://h.example", project: "team" };
  const cases: Array<[ReturnType<typeof record>, string]> = [
    [record("passed", [{ gate: "signature", ok: true }]), "io.meridian.promotion.passed"],
    [record("failed", [{ gate: "signature", ok: false }]), "io.meridian.promotion.failed"],
    [
      record("failed", [
        { gate: "signature", ok: false },
        { gate: "vulnerabilities", ok: false },
      ]),
      "io.meridian.scan-gate.refused",
    ],
    [
      record("failed", [
        { gate: "vulnerabilities", ok: true },
        { gate: "minAge", ok: false },
      ]),
      "io.meridian.promotion.failed",
    ],
  ];
  for (const [body, type] of cases) {
    const ce = cloudEventFor(sub, event(body), "a");
    assert.equal(ce?.type, type);
    assert.equal(ce?.id, "ev-1");
    assert.equal(ce?.subject, "team/app:1.0");
    assert.equal(ce?.data.digest, DIGEST);
    assert.equal(ce?.data.promotion?.outcome, body.outcome);
    assert.equal(ce?.data.promotion?.gates.length, body.gates.length);
  }
  const passed = event(record("passed", []));
  assert.equal(
    cloudEventFor({ ...sub, project: "other" }, passed, "a"),
    undefined,
    "the source's project only",
  );
  assert.equal(cloudEventFor({ ...sub, events: ["pushed"] }, passed, "a"), undefined, "filtered by kind");
  assert.ok(cloudEventFor({ ...sub, events: ["promotion"] }, passed, "a"));
  const scan = event(record("failed", [{ gate: "vulnerabilities", ok: false }]));
  assert.equal(cloudEventFor({ ...sub, events: ["promotion"] }, scan, "a"), undefined);
  assert.ok(cloudEventFor({ ...sub, events: ["scan-gate"] }, scan, "a"));
  assert.equal(
    cloudEventFor(sub, event(record("passed", []), "origin-id"), "b"),
    undefined,
    "a replica is not announced",
  );
});

test("who may record promotions and set gates: system admins and Meridian services only", () => {
  const e = event(record("passed", []));
  assert.equal(authorizeEvent(e, { actorUser: { systemAdmin: true, roles: {} } }).allowed, true);
  assert.equal(
    authorizeEvent(e, { actorUser: { systemAdmin: false, roles: { team: "projectAdmin" } } }).allowed,
    false,
  );
  assert.equal(authorizeEvent({ ...e, actor: "service:promotion-a" }, {}).allowed, true);
  const gate = makeEvent(
    { type: "gate.set", scope: "project", name: "team", gates: {} },
    { id: "g", origin: "a", hlc: { wall: 1, logical: 0 }, actor: "dev", at: "2026-01-01T00:00:00.000Z" },
  );
  assert.equal(
    authorizeEvent(gate, { actorUser: { systemAdmin: false, roles: { team: "projectAdmin" } } }).allowed,
    false,
  );
});
