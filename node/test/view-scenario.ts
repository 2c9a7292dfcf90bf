/**
 * A fixed history touching every projection of the view and every event type
 * (deterministic ids and clocks), for the projections' contract suite and the
 * on-disk layout check (view-layout.golden.ts holds the dump the view made of
 * it before the split into projections: the layout must not drift without a
 * VIEW_SCHEMA bump).
 */
import { digestOf } from "../../protocol/digest.js";
import { type EventBody, makeEvent, type RegistryEvent } from "../../protocol/events.js";

export const HASH = "scrypt$10$8$1$c2FsdA$aGFzaA";
export const REPO = "team/app";
export const M1 = digestOf("scenario-manifest-1");
export const M2 = digestOf("scenario-manifest-2");
export const REF = digestOf("scenario-referrer");
export const M3 = digestOf("scenario-manifest-3");
export const L1 = digestOf("scenario-layer-1");
export const L2 = digestOf("scenario-layer-2");

export function scenarioEvent(origin: string, wall: number, body: EventBody, actor = "admin"): RegistryEvent {
  return makeEvent(body, {
    id: `sc-${origin}-${wall}`,
    origin,
    hlc: { wall, logical: 0 },
    actor,
    at: new Date(wall * 1000).toISOString(),
  });
}

const MT = "application/vnd.oci.image.manifest.v1+json";

/** The history, in log order (sequence = index + 1). */
export function scenario(): RegistryEvent[] {
  const e = scenarioEvent;
  const list: RegistryEvent[] = [
    e("a", 1, { type: "repository.configured", scope: "team/", tagMerge: "lww", durability: "async" }),
    e("a", 2, { type: "blob.pushed", repo: REPO, digest: L1, size: 10 }),
    e("a", 3, {
      type: "manifest.pushed",
      repo: REPO,
      digest: M1,
      mediaType: MT,
      size: 100,
      blobs: [L1],
      manifests: [],
      tag: "v1",
    }),
    e("b", 4, {
      type: "manifest.pushed",
      repo: REPO,
      digest: M2,
      mediaType: MT,
      size: 120,
      blobs: [L2],
      manifests: [],
    }),
    e("b", 5, { type: "tag.set", repo: REPO, tag: "latest", digest: M2 }),
    e("a", 6, {
      type: "manifest.pushed",
      repo: REPO,
      digest: REF,
      mediaType: MT,
      size: 50,
      blobs: [],
      manifests: [],
      subject: M1,
      artifactType: "application/vnd.example.sbom",
    }),
    e("a", 7, { type: "tag.set", repo: REPO, tag: "old", digest: M1 }),
    e("a", 8, { type: "tag.deleted", repo: REPO, tag: "old" }),
    e("c", 9, {
      type: "tag.conflict",
      repo: REPO,
      tag: "latest",
      winner: { digest: M2, origin: "b", id: "sc-b-5", hlc: { wall: 5, logical: 0 } },
      loser: { digest: M1, origin: "c", id: "x-1", hlc: { wall: 5, logical: 0 } },
    }),
    e("a", 10, { type: "blob.pushed", repo: "other/gone", digest: L1, size: 10 }),
    e("a", 11, { type: "repository.deleted", repo: "other/gone" }),
    e("b", 12, { type: "blob.deleted", repo: REPO, digest: L2 }),
    e("a", 13, { type: "repository.configured", scope: "team/app", tagMerge: "first-write", home: "a" }),
    e("a", 14, { type: "policy.set", name: "mirror-b", policy: { name: "mirror-b", destinations: ["b"] } }),
    e("a", 15, { type: "policy.set", name: "gone", policy: { name: "gone" } }),
    e("b", 16, { type: "policy.deleted", name: "gone" }),
    e("a", 17, { type: "policy.run", name: "mirror-b", runId: "r1" }),
    e("b", 18, {
      type: "policy.run.finished",
      name: "mirror-b",
      runId: "r1",
      region: "b",
      outcome: "ok",
      stats: { copied: 3 },
    }),
    e("b", 19, { type: "alert.raised", kind: "delete-breaker", message: "halted", policy: "mirror-b" }),
    e("a", 20, { type: "breaker.reset", name: "mirror-b" }),
    e("a", 21, { type: "user.set", name: "alice", passwordHash: HASH, systemAdmin: false }),
    e("a", 22, { type: "user.set", name: "bob", passwordHash: HASH, systemAdmin: true }),
    e("a", 23, { type: "project.set", name: "team", public: true }),
    e("a", 24, { type: "member.set", project: "team", user: "alice", role: "projectAdmin" }),
    e("a", 25, { type: "member.set", project: "ops", user: "bob", role: "guest" }),
    e("b", 26, { type: "user.deleted", name: "bob" }),
    e("a", 27, {
      type: "robot.set",
      name: "robot$ci",
      secretHash: HASH,
      expiresAt: "2099-01-01T00:00:00.000Z",
      grants: [{ project: "team", repositories: "**", actions: ["pull"] }],
    }),
    e("a", 28, {
      type: "robot.set",
      name: "robot$old",
      secretHash: HASH,
      expiresAt: "2099-01-01T00:00:00.000Z",
      grants: [],
    }),
    e("a", 29, { type: "robot.deleted", name: "robot$old" }),
    e("a", 31, {
      type: "manifest.pushed",
      repo: REPO,
      digest: M3,
      mediaType: MT,
      size: 130,
      blobs: [L1],
      manifests: [],
      tag: "hidden",
    }),
    e("a", 32, { type: "manifest.deleted", repo: REPO, digest: M3 }),
    e("a", 33, { type: "quota.set", project: "team", limitBytes: 1_000_000 }),
  ];
  // One event replicated from another region's stream (srcSeq: the origin's own sequence).
  list.push({
    ...scenarioEvent("c", 30, { type: "tag.set", repo: REPO, tag: "c-tag", digest: M1 }),
    srcSeq: 7,
  });
  // Immutable-tag rules (issue 15): last, so the sequences above stay as the golden layout has them.
  list.push(
    e("a", 35, { type: "immutability.set", name: "frozen", repositories: "frozen/*", tags: "v*" }),
    e("b", 36, { type: "immutability.deleted", name: "frozen" }),
  );
  // Retention (issue 15, item 2): a rule replaced, one deleted, pulls merged to the latest.
  list.push(
    e("a", 40, {
      type: "retention.set",
      name: "ci",
      rule: { name: "ci", repositories: ["team/**"], region: "a", keepLast: 1 },
    }),
    e("b", 41, {
      type: "retention.set",
      name: "ci",
      rule: { name: "ci", repositories: ["team/**"], region: "a", keepLast: 2 },
    }),
    e("a", 42, {
      type: "retention.set",
      name: "old",
      rule: { name: "old", repositories: ["x/*"], region: "b" },
    }),
    e("a", 43, { type: "retention.deleted", name: "old" }),
    e("b", 44, {
      type: "pulls.recorded",
      pulls: [{ repo: REPO, digest: M1, at: "2024-05-01T12:00:00.000Z" }],
    }),
    e("a", 45, {
      type: "pulls.recorded",
      pulls: [{ repo: REPO, digest: M1, at: "2024-04-01T12:00:00.000Z" }],
    }),
  );
  // A garbage-collection run (issue 15); its collection names a link write the view never
  // held, so it drops nothing (node/test/gc.test.ts shows the drops on real processes).
  list.push(
    e("a", 50, {
      type: "gc.run",
      runId: "gc-sc",
      region: "a",
      dryRun: false,
      graceMs: 0,
      undeleteWindowMs: 0,
      trigger: "manual",
    }),
    e("a", 51, {
      type: "gc.collected",
      runId: "gc-sc",
      region: "a",
      digest: L2,
      size: 20,
      reason: "orphan",
      links: [{ repo: REPO, write: "sc-never" }],
    }),
    e("a", 52, { type: "gc.finished", runId: "gc-sc", region: "a", outcome: "ok", stats: { collected: 1 } }),
  );
  // External endpoints (issue 17): one replaced by a later write, one deleted.
  list.push(
    e("a", 60, { type: "endpoint.set", name: "onprem", url: "http://127.0.0.1:5000", insecure: false }),
    e("b", 61, {
      type: "endpoint.set",
      name: "onprem",
      url: "https://onprem.example",
      credentialsFile: "/etc/meridian/onprem.creds",
      insecure: false,
    }),
    e("a", 62, { type: "endpoint.set", name: "lab", url: "https://lab.example", insecure: true }),
    e("b", 63, { type: "endpoint.deleted", name: "lab" }),
  );
  // Webhook subscriptions (issue 17): one replaced by a later write, one deleted.
  list.push(
    e("a", 70, {
      type: "webhook.set",
      subscription: { name: "ci", url: "https://h.example/a", project: "team" },
    }),
    e("b", 71, {
      type: "webhook.set",
      subscription: { name: "ci", url: "https://h.example/b", project: "team", events: ["pushed"] },
    }),
    e("a", 72, {
      type: "webhook.set",
      subscription: { name: "old", url: "https://h.example/o", project: "x" },
    }),
    e("a", 73, { type: "webhook.deleted", project: "x", name: "old" }),
    e("a", 74, { type: "webhook.replay", project: "team", name: "ci", region: "a", fromSeq: 1 }),
  );
  // Records only webhooks announce (issue 17): a failover, a quota refusal, a mesh-wide subscription.
  list.push(
    e("b", 160, { type: "failover.recorded", from: "a", to: "b", scopes: ["team/"], force: true }),
    e(
      "a",
      161,
      {
        type: "quota.exceeded",
        project: "team",
        repo: REPO,
        region: "a",
        limitBytes: 100,
        usedBytes: 90,
        requestedBytes: 20,
      },
      "system",
    ),
    e("a", 162, {
      type: "webhook.set",
      subscription: { name: "siem", url: "https://siem.example/in", project: "*", siem: true },
    }),
  );
  // Token revocations (issue 18): the latest `before` stands whatever the order they arrive in.
  list.push(
    e("a", 240, { type: "tokens.revoked", name: "alice", before: "2024-05-02T00:00:00.000Z" }),
    e("b", 241, { type: "tokens.revoked", name: "alice", before: "2024-05-01T00:00:00.000Z" }),
    e("a", 242, { type: "tokens.revoked", name: "robot$ci", before: "2024-05-03T00:00:00.000Z" }),
  );
  // Promotion (issue 17): gates replaced and deleted, a refusal then a pass of the same promotion.
  const promotion = {
    promotionId: "pr-00112233445566778899aabb",
    source: { region: "a", repository: REPO, tag: "v1", digest: M1 },
    destination: { kind: "region" as const, name: "b", repository: "prod/app", tag: "v1" },
  };
  list.push(
    e("a", 100, { type: "gate.set", scope: "destination", name: "b", gates: { minAge: { seconds: 60 } } }),
    e("b", 101, {
      type: "gate.set",
      scope: "destination",
      name: "b",
      gates: { signature: { keys: ["release"] } },
    }),
    e("a", 102, { type: "gate.set", scope: "project", name: "prod", gates: { annotations: { owner: "*" } } }),
    e("a", 103, { type: "gate.deleted", scope: "project", name: "prod" }),
    e("a", 104, {
      type: "promotion.recorded",
      ...promotion,
      gates: [{ gate: "signature", scope: "destination:b", ok: false, reason: "signature: none found" }],
      outcome: "failed",
    }),
    e("a", 105, {
      type: "promotion.recorded",
      ...promotion,
      gates: [{ gate: "signature", scope: "destination:b", ok: true, reason: "signature: verified" }],
      outcome: "passed",
    }),
  );
  // Block-pull policies (issue 18): one replaced by a later write, one deleted.
  const pullPolicy = (project: string, keys: string[]) => ({
    project,
    gates: { signature: { keys } },
    exempt: { systemAdmins: true, robots: [] },
  });
  list.push(
    e("a", 250, { type: "pull-policy.set", policy: pullPolicy("prod", ["release"]) }),
    e("b", 251, { type: "pull-policy.set", policy: pullPolicy("prod", ["release", "ops"]) }),
    e("a", 252, { type: "pull-policy.set", policy: pullPolicy("lab", ["release"]) }),
    e("a", 253, { type: "pull-policy.deleted", project: "lab" }),
  );
  // Pull-through cache projects (issue 17): one replaced by a later write, one turned off.
  list.push(
    e("a", 120, { type: "proxy.set", project: "hub", endpoint: "onprem", freshnessSeconds: 300 }),
    e("b", 121, {
      type: "proxy.set",
      project: "hub",
      endpoint: "onprem",
      upstreamPrefix: "library",
      freshnessSeconds: 60,
    }),
    e("a", 122, { type: "proxy.set", project: "old", endpoint: "onprem", freshnessSeconds: 0 }),
    e("b", 123, { type: "proxy.deleted", project: "old" }),
  );
  // OIDC users (issue 18): a sign-in, a later one in another region that drops a group, a CLI
  // secret set then rotated, and another user's secret revoked.
  const signIn = {
    type: "oidc.user.set",
    name: "olivia",
    issuer: "https://idp.example",
    sub: "s-1",
  } as const;
  list.push(
    e(
      "a",
      200,
      {
        ...signIn,
        groups: ["admins", "team-dev"],
        systemAdmin: true,
        operator: false,
        roles: { team: "developer" },
        session: "sessionsession-200",
      },
      "olivia",
    ),
    e("a", 201, { type: "oidc.secret.set", name: "olivia", hash: HASH }, "olivia"),
    e(
      "b",
      202,
      {
        ...signIn,
        groups: ["team-dev"],
        systemAdmin: false,
        operator: false,
        roles: { team: "developer" },
        session: null,
      },
      "olivia",
    ),
    e("b", 203, { type: "oidc.secret.set", name: "olivia", hash: `${HASH}x` }, "olivia"),
    e("a", 204, { type: "oidc.secret.set", name: "oscar", hash: HASH }, "oscar"),
    e("a", 205, { type: "oidc.secret.set", name: "oscar", hash: null }),
  );
  return list;
}
