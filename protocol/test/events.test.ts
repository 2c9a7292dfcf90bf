import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { digestOf } from "../digest.js";
import { EventInvalidError } from "../errors.js";
import {
  decodeEvent,
  derivedId,
  EVENT_SCHEMA_VERSION,
  EVENT_TYPES,
  type EventType,
  encodeEvent,
  parseRegion,
  type RegistryEvent,
  streamName,
  streamSubjects,
  subjectFor,
  tagKey,
  validateEvent,
  writeIdOf,
} from "../events.js";
import { forAll } from "./prng.js";

const D1 = digestOf("one");
const D2 = digestOf("two");
const D3 = digestOf("three");

const envelope = {
  id: "0b6e3a8c-2f2c-4c55-9d55-8d2a0f0e1a11",
  v: EVENT_SCHEMA_VERSION,
  origin: "eu-west-1",
  hlc: { wall: 1_700_000_000_000, logical: 3 },
  actor: "alice",
  at: "2024-05-01T12:00:00.000Z",
};

/** One valid event of each type, with every optional field set. */
const VALID: Record<EventType, Record<string, unknown>> = {
  "blob.pushed": { ...envelope, type: "blob.pushed", repo: "library/ubuntu", digest: D1, size: 1234 },
  "manifest.pushed": {
    ...envelope,
    type: "manifest.pushed",
    repo: "library/ubuntu",
    digest: D1,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    size: 512,
    blobs: [D2, D3],
    manifests: [],
    subject: D3,
    artifactType: "application/vnd.example.sig",
    annotations: { a: "b" },
  },
  "tag.set": { ...envelope, type: "tag.set", repo: "library/ubuntu", tag: "latest", digest: D1 },
  "tag.deleted": { ...envelope, type: "tag.deleted", repo: "library/ubuntu", tag: "latest" },
  "manifest.deleted": { ...envelope, type: "manifest.deleted", repo: "a/b", digest: D1 },
  "blob.deleted": { ...envelope, type: "blob.deleted", repo: "a/b", digest: D2, cause: "origin-event-id" },
  "repository.deleted": { ...envelope, type: "repository.deleted", repo: "a/b", epoch: 2 },
  "tag.conflict": {
    ...envelope,
    type: "tag.conflict",
    repo: "a/b",
    tag: "latest",
    winner: { id: "w1", origin: "us-east-1", digest: D1, hlc: { wall: 5, logical: 0 } },
    loser: { id: "l1", origin: "eu-west-1", digest: null, hlc: { wall: 4, logical: 1 } },
  },
  "repository.configured": {
    ...envelope,
    type: "repository.configured",
    scope: "prod/",
    tagMerge: "home-region",
    home: "eu-west-1",
    epoch: 1,
  },
  "policy.set": { ...envelope, type: "policy.set", name: "prod", policy: { name: "prod", deletes: true } },
  "policy.deleted": { ...envelope, type: "policy.deleted", name: "prod" },
  "policy.run": { ...envelope, type: "policy.run", name: "prod", runId: "r-1" },
  "policy.run.finished": {
    ...envelope,
    type: "policy.run.finished",
    name: "prod",
    runId: "r-1",
    region: "us-east-1",
    outcome: "halted",
    stats: { copied: 3, deleted: 0 },
    error: "delete breaker tripped",
  },
  "alert.raised": {
    ...envelope,
    type: "alert.raised",
    kind: "delete-breaker",
    message: "deletes halted",
    policy: "prod",
    repo: "a/b",
    detail: { share: 0.8 },
  },
  "breaker.reset": { ...envelope, type: "breaker.reset", name: "prod" },
  "user.set": {
    ...envelope,
    type: "user.set",
    name: "alice",
    passwordHash: "scrypt$15$8$1$c2FsdA$a2V5",
    systemAdmin: false,
  },
  "user.deleted": { ...envelope, type: "user.deleted", name: "alice" },
  "robot.set": {
    ...envelope,
    type: "robot.set",
    name: "robot$ci+deploy",
    secretHash: "scrypt$15$8$1$c2FsdA$a2V5",
    expiresAt: "2027-01-01T00:00:00.000Z",
    grants: [{ project: "team", repositories: "apps/**", actions: ["pull", "push"] }],
  },
  "robot.deleted": { ...envelope, type: "robot.deleted", name: "robot$ci+deploy" },
  "tokens.revoked": {
    ...envelope,
    type: "tokens.revoked",
    name: "alice",
    before: "2024-05-01T12:00:00.000Z",
  },
  "project.set": { ...envelope, type: "project.set", name: "team", public: true },
  "member.set": { ...envelope, type: "member.set", project: "team", user: "alice", role: "developer" },
  "immutability.set": {
    ...envelope,
    type: "immutability.set",
    name: "prod-v",
    repositories: "prod/*",
    tags: "v*",
  },
  "immutability.deleted": { ...envelope, type: "immutability.deleted", name: "prod-v" },
  "quota.set": { ...envelope, type: "quota.set", project: "team", limitBytes: 10_000_000 },
  "retention.set": {
    ...envelope,
    type: "retention.set",
    name: "ci",
    rule: { name: "ci", repositories: ["ci/**"], region: "eu-west-1", keepLast: 3, untaggedDays: 7 },
  },
  "retention.deleted": { ...envelope, type: "retention.deleted", name: "ci" },
  "endpoint.set": {
    ...envelope,
    type: "endpoint.set",
    name: "onprem",
    url: "https://registry.example:5000",
    credentialsFile: "/etc/meridian/onprem.creds",
    insecure: false,
  },
  "endpoint.deleted": { ...envelope, type: "endpoint.deleted", name: "onprem" },
  "gate.set": {
    ...envelope,
    type: "gate.set",
    scope: "destination",
    name: "eu-west-1",
    gates: { signature: { keys: ["release"] }, minAge: { seconds: 60 } },
  },
  "gate.deleted": { ...envelope, type: "gate.deleted", scope: "project", name: "prod" },
  "pull-policy.set": {
    ...envelope,
    type: "pull-policy.set",
    policy: {
      project: "prod",
      gates: { signature: { keys: ["release"] } },
      exempt: { systemAdmins: true, robots: ["robot$scanner"] },
    },
  },
  "pull-policy.deleted": { ...envelope, type: "pull-policy.deleted", project: "prod" },
  "promotion.recorded": {
    ...envelope,
    type: "promotion.recorded",
    promotionId: "pr-0123456789abcdef01234567",
    source: { region: "us-east-1", repository: "team/app", tag: "1.0", digest: `sha256:${"a".repeat(64)}` },
    destination: { kind: "region", name: "eu-west-1", repository: "team/app", tag: "1.0" },
    gates: [
      { gate: "signature", scope: "destination:eu-west-1", ok: false, reason: "signature: none found" },
    ],
    outcome: "failed",
  },
  "proxy.set": {
    ...envelope,
    type: "proxy.set",
    project: "hub",
    endpoint: "dockerhub",
    upstreamPrefix: "library",
    freshnessSeconds: 300,
  },
  "proxy.deleted": { ...envelope, type: "proxy.deleted", project: "hub" },
  "pulls.recorded": {
    ...envelope,
    type: "pulls.recorded",
    pulls: [{ repo: "a/b", digest: D1, at: "2024-05-01T12:00:00.000Z" }],
  },
  "gc.run": {
    ...envelope,
    type: "gc.run",
    runId: "gc-1",
    region: "eu-west-1",
    dryRun: false,
    graceMs: 3_600_000,
    undeleteWindowMs: 0,
    trigger: "manual",
  },
  "gc.collected": {
    ...envelope,
    type: "gc.collected",
    runId: "gc-1",
    region: "eu-west-1",
    digest: D1,
    size: 12,
    reason: "unreferenced",
    links: [{ repo: "library/ubuntu", write: "w-1" }],
  },
  "gc.finished": {
    ...envelope,
    type: "gc.finished",
    runId: "gc-1",
    region: "eu-west-1",
    outcome: "failed",
    stats: { collected: 1 },
    error: "stopped",
  },
  "webhook.set": {
    ...envelope,
    type: "webhook.set",
    subscription: { name: "ci", url: "https://hooks.example/x", project: "team", events: ["pushed"] },
  },
  "webhook.deleted": { ...envelope, type: "webhook.deleted", project: "team", name: "ci" },
  "webhook.replay": {
    ...envelope,
    type: "webhook.replay",
    project: "team",
    name: "ci",
    region: "eu-west-1",
    fromSeq: 3,
  },
  "failover.recorded": {
    ...envelope,
    type: "failover.recorded",
    from: "us-east-1",
    to: "eu-west-1",
    epoch: 3,
    scopes: ["team/", "other/app"],
    force: false,
  },
  "quota.exceeded": {
    ...envelope,
    type: "quota.exceeded",
    project: "team",
    repo: "team/app",
    region: "eu-west-1",
    limitBytes: 1000,
    usedBytes: 990,
    requestedBytes: 20,
  },
  "oidc.user.set": {
    ...envelope,
    type: "oidc.user.set",
    name: "olivia",
    issuer: "https://idp.example",
    sub: "248289761001",
    groups: ["admins", "team-dev"],
    systemAdmin: true,
    operator: false,
    roles: { team: "developer" },
    session: "c2Vzc2lvbi1pZC0wMDAx",
  },
  "oidc.secret.set": {
    ...envelope,
    type: "oidc.secret.set",
    name: "olivia",
    hash: "scrypt$10$8$1$c2FsdA$a2V5",
  },
};

/** Fields every event type requires, and per-type required fields. */
const ENVELOPE_REQUIRED = ["id", "v", "origin", "hlc", "actor", "at", "type"];
const BODY_REQUIRED: Record<EventType, string[]> = {
  "blob.pushed": ["repo", "digest", "size"],
  "manifest.pushed": ["repo", "digest", "mediaType", "size", "blobs", "manifests"],
  "tag.set": ["repo", "tag", "digest"],
  "tag.deleted": ["repo", "tag"],
  "manifest.deleted": ["repo", "digest"],
  "blob.deleted": ["repo", "digest"],
  "repository.deleted": ["repo"],
  "tag.conflict": ["repo", "tag", "winner", "loser"],
  "repository.configured": ["scope", "tagMerge"],
  "policy.set": ["name", "policy"],
  "policy.deleted": ["name"],
  "policy.run": ["name", "runId"],
  "policy.run.finished": ["name", "runId", "region", "outcome", "stats"],
  "alert.raised": ["kind", "message"],
  "breaker.reset": ["name"],
  "user.set": ["name", "passwordHash", "systemAdmin"],
  "user.deleted": ["name"],
  "robot.set": ["name", "secretHash", "expiresAt", "grants"],
  "robot.deleted": ["name"],
  "tokens.revoked": ["name", "before"],
  "project.set": ["name", "public"],
  "member.set": ["project", "user", "role"],
  "immutability.set": ["name", "repositories", "tags"],
  "immutability.deleted": ["name"],
  "quota.set": ["project", "limitBytes"],
  "retention.set": ["name", "rule"],
  "retention.deleted": ["name"],
  "endpoint.set": ["name", "url", "insecure"],
  "endpoint.deleted": ["name"],
  "gate.set": ["scope", "name", "gates"],
  "gate.deleted": ["scope", "name"],
  "pull-policy.set": ["policy"],
  "pull-policy.deleted": ["project"],
  "promotion.recorded": ["promotionId", "source", "destination", "gates", "outcome"],
  "proxy.set": ["project", "endpoint", "freshnessSeconds"],
  "proxy.deleted": ["project"],
  "pulls.recorded": ["pulls"],
  "gc.run": ["runId", "region", "dryRun", "graceMs", "undeleteWindowMs", "trigger"],
  "gc.collected": ["runId", "region", "digest", "size", "reason", "links"],
  "gc.finished": ["runId", "region", "outcome", "stats"],
  "webhook.set": ["subscription"],
  "webhook.deleted": ["project", "name"],
  "webhook.replay": ["project", "name", "region", "fromSeq"],
  "failover.recorded": ["from", "to", "scopes", "force"],
  "quota.exceeded": ["project", "repo", "region", "limitBytes", "usedBytes", "requestedBytes"],
  "oidc.user.set": ["name", "issuer", "sub", "groups", "systemAdmin", "operator", "roles", "session"],
  "oidc.secret.set": ["name", "hash"],
};

/** Bad values for each field (every one must be rejected wherever the field is checked). */
const BAD_VALUES: Record<string, unknown[]> = {
  id: ["", 5, null, "x".repeat(65)],
  v: [0, 2, "1", null],
  origin: ["", "EU", "eu_west", "-eu", "eu-", "a".repeat(33), "eu.west", 1],
  hlc: [null, {}, { wall: -1, logical: 0 }, { wall: 1.5, logical: 0 }, { wall: 1, logical: -1 }, "1.0", 7],
  actor: [1, null, {}],
  at: ["yesterday-ish", "", 1714564800000, null],
  cause: [1, null, {}],
  type: ["tag.moved", "", "TAG.SET", 1, null],
  repo: ["", "UPPER", "a/../b", "/a", "a//b", 1, null],
  digest: ["", "sha256:abc", D1.toUpperCase(), `md5:${"a".repeat(32)}`, 1, null],
  size: [-1, 1.5, "1", null, 2 ** 53],
  tag: ["", ".x", "a/b", "a:b", "t".repeat(129), 1, null],
  mediaType: [1, null, {}],
  blobs: ["sha256:x", null, {}, [1], ["junk"], [D1, "sha256:bad"]],
  manifests: ["x", null, {}, [null], ["junk"]],
  subject: ["junk", 1, null],
  artifactType: [1, null, {}],
  annotations: [null, "a=b", ["a"], { a: 1 }, { a: null }],
  epoch: [-1, 1.5, "1", null],
  winner: [null, {}, { id: "w", origin: "EU", digest: D1, hlc: { wall: 1, logical: 0 } }],
  loser: [null, "x", { id: "l", origin: "eu", digest: "sha256:bad", hlc: { wall: 1, logical: 0 } }],
  scope: ["UPPER/", "a//", "/", 1, null],
  tagMerge: ["newest", "", 1, null],
  home: ["EU", 1, null],
  name: ["", 1, null, "x".repeat(64)],
  policy: [null, "p", [], { name: "other" }],
  runId: ["", 1, null],
  region: ["EU", "", null],
  outcome: ["done", null],
  stats: [null, { copied: "3" }, { copied: Number.NaN }],
  kind: ["", null, 1],
  message: ["", null],
  passwordHash: ["", "plain-text", null, 1],
  secretHash: ["", "bcrypt$x", null],
  systemAdmin: ["yes", 1, null],
  operator: ["yes", 1, null],
  expiresAt: ["soon", "", null, 1],
  grants: [
    null,
    "all",
    [{ project: "Team", repositories: "**", actions: ["pull"] }],
    [{ project: "team", repositories: "", actions: ["pull"] }],
    [{ project: "team", repositories: "**", actions: [] }],
    [{ project: "team", repositories: "**", actions: ["fly"] }],
  ],
  public: ["yes", 1, null],
  project: ["", "Team", "a/b", "x".repeat(64), null],
  user: ["", "Alice", "robot$x", null],
  role: ["owner", "", 1],
  limitBytes: [-1, 1.5, "1", 2 ** 53],
  rule: [
    null,
    { name: "other", repositories: ["**"], region: "eu" },
    { name: "ci", repositories: [], region: "eu" },
    { name: "ci", repositories: ["**"], region: "EU" },
    { name: "ci", repositories: ["**"], region: "eu", keepLast: -1 },
    { name: "ci", repositories: ["**"], region: "eu", keepTags: ["semver:not a range"] },
    { name: "ci", repositories: ["**"], region: "eu", untaggedDays: 0 },
    { name: "ci", repositories: ["**"], region: "eu", sweep: true },
  ],
  pulls: [
    null,
    [],
    [{ repo: "A", digest: D1, at: "2024-05-01T12:00:00.000Z" }],
    [{ repo: "a/b", digest: "sha256:x", at: "2024-05-01T12:00:00.000Z" }],
    [{ repo: "a/b", digest: D1, at: "soon" }],
    Array.from({ length: 501 }, () => ({ repo: "a/b", digest: D1, at: "2024-05-01T12:00:00.000Z" })),
  ],
  dryRun: ["yes", 1, null],
  graceMs: [-1, 1.5, "0", null],
  undeleteWindowMs: [-1, "0", null],
  trigger: ["", 1, null],
  reason: ["", 1, null],
  links: [null, "a", [null], [{ repo: "UPPER", write: "w" }], [{ repo: "a" }]],
  url: [
    "",
    1,
    null,
    "ftp://registry.example",
    "https://user:pw@registry.example",
    "https://registry.example/v2/../x",
    "https://registry.example/path",
    "https://registry.example?x=1",
    "https://registry.example#f",
    "HTTPS://Registry.Example",
  ],
  credentialsFile: ["relative/path", "", 1, null],
  caFile: ["relative.pem", 1, null],
  endpoint: ["", "Onprem", 1, null, "x".repeat(64)],
  upstreamPrefix: ["", "Library", "/library", "library/", "a//b", 1, null],
  freshnessSeconds: [-1, 1.5, "300", null, 7 * 24 * 3600 + 1],
  insecure: ["yes", 1, null],
  gates: [null, "x", { signature: { keys: [] } }, { unknown: {} }, [{ gate: "x", ok: true }]],
  promotionId: ["", "pr-1", 1, null],
  source: [null, {}, { region: "a", repository: "UPPER", tag: "1", digest: "sha256:x" }],
  destination: [null, {}, { kind: "elsewhere", name: "a", repository: "a", tag: "1" }],
  issuer: ["", 1, null],
  sub: ["", 1, null, "x".repeat(1025)],
  groups: [null, "admins", [1], [""]],
  roles: [null, [], { Team: "guest" }, { team: "owner" }],
  session: ["", "short", 1, "x".repeat(65)],
  hash: ["", "plain-text", 1],
};

describe("validateEvent accepts", () => {
  for (const type of EVENT_TYPES) {
    test(type, () => {
      const event = structuredClone(VALID[type]);
      assert.equal(validateEvent(event), event);
    });
    test(`${type} without optional fields`, () => {
      const event = structuredClone(VALID[type]);
      for (const optional of ["cause", "subject", "artifactType", "annotations", "epoch", "detail", "error"])
        delete event[optional];
      assert.equal(validateEvent(event).type, type);
    });
  }
  test("every event type has a valid example", () => {
    assert.deepEqual(Object.keys(VALID).sort(), [...EVENT_TYPES].sort());
  });
  test("a replicated event with a cause", () => {
    assert.equal(validateEvent({ ...VALID["tag.set"], cause: "abc" }).cause, "abc");
  });
  test("a manifest.pushed carrying a tag (a push by tag)", () => {
    const event = { ...VALID["manifest.pushed"], tag: "v1.2.3" };
    assert.equal((validateEvent(event) as { tag?: string }).tag, "v1.2.3");
  });
  test("home-region configuration needs a home; other rules do not", () => {
    const { home: _, ...noHome } = VALID["repository.configured"];
    assert.throws(() => validateEvent(noHome), EventInvalidError);
    assert.ok(validateEvent({ ...noHome, tagMerge: "first-write" }));
    assert.ok(validateEvent({ ...noHome, tagMerge: "lww", scope: "" }));
  });
  test("an admin event carries no repository", () => {
    const event = structuredClone(VALID["policy.run"]);
    assert.equal("repo" in event, false);
    assert.ok(validateEvent(event));
  });
  test("an hlc at zero", () => {
    assert.ok(validateEvent({ ...VALID["tag.deleted"], hlc: { wall: 0, logical: 0 } }));
  });
});

describe("validateEvent rejects", () => {
  for (const type of EVENT_TYPES) {
    for (const field of [...ENVELOPE_REQUIRED, ...BODY_REQUIRED[type]]) {
      test(`${type} missing ${field}`, () => {
        const event = structuredClone(VALID[type]);
        delete event[field];
        assert.throws(
          () => validateEvent(event),
          (err: unknown) => err instanceof EventInvalidError && err.message.includes(field),
        );
      });
    }
    const checked = [...ENVELOPE_REQUIRED, ...BODY_REQUIRED[type], "cause", "epoch"];
    if (type === "manifest.pushed") checked.push("subject", "artifactType", "annotations", "tag");
    if (type === "repository.configured") checked.push("home");
    if (type === "user.set") checked.push("operator");
    for (const field of checked) {
      for (const bad of BAD_VALUES[field] ?? []) {
        test(`${type} with ${field} = ${JSON.stringify(bad)?.slice(0, 40)}`, () => {
          const event = { ...structuredClone(VALID[type]), [field]: bad };
          assert.throws(() => validateEvent(event), EventInvalidError);
        });
      }
    }
  }
  for (const value of [null, undefined, 1, "event", true]) {
    test(`a non-object: ${String(value)}`, () => {
      assert.throws(() => validateEvent(value), EventInvalidError);
    });
  }
  test("an array", () => {
    assert.throws(() => validateEvent([VALID["tag.set"]]), EventInvalidError);
  });
  test("the error for a bad nested value keeps its cause", () => {
    try {
      validateEvent({ ...VALID["tag.set"], tag: "a/b" });
      assert.fail("accepted");
    } catch (err) {
      assert.ok(err instanceof EventInvalidError);
      assert.match(err.message, /tag/);
      assert.ok(err.cause instanceof Error);
    }
  });
});

describe("encodeEvent / decodeEvent", () => {
  for (const type of EVENT_TYPES) {
    test(`${type} round-trips`, () => {
      const event = VALID[type] as unknown as RegistryEvent;
      assert.deepEqual(decodeEvent(encodeEvent(event)), event);
    });
  }
  test("decodeEvent of a view into a larger buffer", () => {
    const inner = Buffer.from(encodeEvent(VALID["tag.set"] as unknown as RegistryEvent));
    const outer = Buffer.concat([Buffer.from("[["), inner, Buffer.from("]]")]);
    const view = new Uint8Array(outer.buffer, outer.byteOffset + 2, inner.byteLength);
    assert.deepEqual(decodeEvent(view), VALID["tag.set"]);
  });
  for (const [name, data] of [
    ["empty", ""],
    ["not JSON", "{"],
    ["JSON but invalid", '{"type":"tag.set"}'],
    ["JSON null", "null"],
  ] as const) {
    test(`decodeEvent rejects ${name}`, () => {
      assert.throws(() => decodeEvent(Buffer.from(data)), EventInvalidError);
    });
  }
});

describe("subjectFor", () => {
  const region = "us-east-1";
  const setOf = (repo: string, tag: string) => ({ type: "tag.set" as const, repo, tag, digest: D1 });
  const delOf = (repo: string, tag: string) => ({ type: "tag.deleted" as const, repo, tag });

  test("tag.set and tag.deleted of the same repo:tag share a subject", () => {
    const pairs: [string, string][] = [
      ["library/ubuntu", "latest"],
      ["a", "b"],
      ["my.org/app.v2", "1.0.0"],
    ];
    for (const [repo, tag] of pairs) {
      assert.equal(subjectFor(region, setOf(repo, tag)), subjectFor(region, delOf(repo, tag)));
    }
  });

  test("a manifest.pushed carrying a tag shares the tag's subject", () => {
    const pushed = { ...VALID["manifest.pushed"], repo: "my.org/app", tag: "v1" } as unknown as RegistryEvent;
    assert.equal(subjectFor(region, pushed), subjectFor(region, setOf("my.org/app", "v1")));
    assert.equal(subjectFor(region, pushed), subjectFor(region, delOf("my.org/app", "v1")));
    assert.notEqual(subjectFor(region, pushed), subjectFor(region, setOf("my.org/app", "v2")));
    const untagged = { ...VALID["manifest.pushed"], repo: "my.org/app" } as unknown as RegistryEvent;
    assert.equal(subjectFor(region, untagged), `meridian.${region}.ev.manifest.pushed`);
  });

  test("the subject does not depend on the digest or the envelope", () => {
    const a = subjectFor(region, { ...setOf("r", "t"), digest: D2 });
    const b = subjectFor(region, VALID["tag.set"] as unknown as RegistryEvent);
    assert.equal(a, subjectFor(region, setOf("r", "t")));
    assert.equal(b, subjectFor(region, setOf("library/ubuntu", "latest")));
  });

  test("different tags, repos or regions get different subjects", () => {
    const subjects = [
      subjectFor(region, setOf("library/ubuntu", "latest")),
      subjectFor(region, setOf("library/ubuntu", "Latest")),
      subjectFor(region, setOf("library/ubuntu", "latest2")),
      subjectFor(region, setOf("library/debian", "latest")),
      subjectFor(region, setOf("library", "ubuntu")),
      subjectFor(region, setOf("a", "bc")),
      subjectFor(region, setOf("ab", "c")),
      subjectFor("eu-west-1", setOf("library/ubuntu", "latest")),
    ];
    assert.equal(new Set(subjects).size, subjects.length);
  });

  test("random distinct (repo, tag) pairs get distinct subjects", () => {
    const seen = new Map<string, string>();
    forAll("distinct tag subjects", 2000, (rng) => {
      const repo = `${rng.pick(["a", "b", "a.b", "a_b"])}/${rng.int(0, 30)}`;
      const tag = `${rng.pick(["v", "V", "t"])}${rng.int(0, 30)}`;
      const key = `${repo}:${tag}`;
      const subject = subjectFor(region, setOf(repo, tag));
      const previous = seen.get(subject);
      assert.ok(previous === undefined || previous === key, `${key} collides with ${previous}`);
      seen.set(subject, key);
    });
  });

  test("tag subjects have a fixed shape and carry no dots from the repo or tag", () => {
    for (const [repo, tag] of [
      ["my.org/app.v2", "1.0.0"],
      ["a.b.c.d.e/f.g", "..x"],
      ["x", "y"],
    ] as const) {
      for (const event of [setOf(repo, tag), delOf(repo, tag)]) {
        const subject = subjectFor(region, event);
        const tokens = subject.split(".");
        assert.deepEqual(tokens.slice(0, 3), ["meridian", region, "tag"], subject);
        assert.equal(tokens.length, 4, subject);
        assert.match(tokens[3]!, /^[0-9a-f]{32}$/);
        assert.equal(tokens[3], tagKey(repo, tag));
        assert.ok(!/[\s*>]/.test(subject), "no wildcards or whitespace");
      }
    }
  });

  test("other events go to per-type subjects with no repo in them", () => {
    for (const type of EVENT_TYPES) {
      if (type === "tag.set" || type === "tag.deleted") continue;
      const event = { ...VALID[type], repo: "my.dotted.repo/with.dots" } as unknown as RegistryEvent;
      const subject = subjectFor(region, event);
      assert.equal(subject, `meridian.${region}.ev.${type}`);
      assert.ok(!subject.includes("dotted"));
    }
  });

  test("every subject falls under the stream's subject filter", () => {
    const filter = streamSubjects(region);
    assert.equal(filter, `meridian.${region}.>`);
    for (const type of EVENT_TYPES) {
      const subject = subjectFor(region, VALID[type] as unknown as RegistryEvent);
      assert.ok(subject.startsWith(filter.slice(0, -1)), subject);
    }
  });
});

describe("writeIdOf and derivedId", () => {
  test("a write's identity is its cause when replayed, else its id", () => {
    assert.equal(writeIdOf({ id: "a" }), "a");
    assert.equal(writeIdOf({ id: "a", cause: "b" }), "b");
  });
  test("derivedId is deterministic, UUID-shaped and separates its parts", () => {
    assert.equal(derivedId("x", "y"), derivedId("x", "y"));
    assert.notEqual(derivedId("x", "y"), derivedId("xy"));
    assert.notEqual(derivedId("x", "y"), derivedId("y", "x"));
    assert.match(derivedId("a"), /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe("regions and streams", () => {
  for (const good of ["a", "eu", "eu-west-1", "us-east-2b", "a".repeat(32), "0"]) {
    test(`parseRegion accepts ${good}`, () => assert.equal(parseRegion(good), good));
  }
  for (const bad of ["", "EU", "eu_west", "-eu", "eu-", "eu.west", "eu west", "a".repeat(33), "eu>"]) {
    test(`parseRegion rejects ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parseRegion(bad), EventInvalidError);
    });
  }
  test("streamName is upper case with underscores", () => {
    assert.equal(streamName("eu-west-1"), "MERIDIAN_EU_WEST_1");
    assert.equal(streamName("a"), "MERIDIAN_A");
    assert.match(streamName("us-east-2b"), /^[A-Z0-9_]+$/);
  });
});
