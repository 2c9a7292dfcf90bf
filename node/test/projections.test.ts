/**
 * The contract suite of the view's projections (node/data/projections/,
 * issue 12): one fixed history touching every event type (view-scenario.ts)
 * applied through a real view over a real `level` database, then each
 * projection's reads; the on-disk layout against the dump made before the
 * split; re-applying an applied history; one batch or many; refused
 * identity and policy events; and the applied-event subscribers.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { TokenKeys } from "../../mesh-client/tokens.js";
import { AUTHORITY_TYPES } from "../../protocol/event-authority.js";
import { EVENT_TYPES, type RegistryEvent } from "../../protocol/events.js";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import type { LoggedEvent } from "../data/event-log.js";
import { activityOf } from "../data/projections/activity.js";
import { type EventAuthority, MetadataView } from "../data/view.js";
import { VIEW_LAYOUT_GOLDEN } from "./view-layout.golden.js";
import { HASH, L1, L2, M1, M2, M3, REF, REPO, scenario, scenarioEvent } from "./view-scenario.js";

const cleanup = cleanupStack({ after });

async function openView(authority?: EventAuthority): Promise<MetadataView> {
  const view = new MetadataView(join(tempDir(cleanup), "view"), { authority });
  await view.open();
  cleanup(() => view.close());
  return view;
}

const logged = (events: RegistryEvent[], from = 1): LoggedEvent[] =>
  events.map((event, i) => ({ seq: from + i, event }));

/** A dump without the applied sequence (which moves on with every applied entry, refused ones included). */
async function state(view: MetadataView): Promise<Array<[string, string]>> {
  return (await view.dump()).filter(([key]) => key !== "m!seq");
}

describe("view projections", () => {
  test("every event type is applied by exactly one projection", async () => {
    const view = new MetadataView(join(tempDir(cleanup), "view"));
    assert.deepEqual([...view.routedTypes].sort(), [...EVENT_TYPES].sort());
    const covered = new Set(scenario().map((e) => e.type));
    assert.deepEqual(
      EVENT_TYPES.filter((t) => !covered.has(t)),
      [],
      "the scenario exercises every event type",
    );
  });

  test("the on-disk layout is the one the view wrote before the split (no rebuild needed)", async () => {
    const view = await openView();
    await view.apply(logged(scenario()));
    assert.deepEqual(await view.dump(), VIEW_LAYOUT_GOLDEN);
  });

  test("applied one event per batch, the view ends the same as with one batch", async () => {
    const view = await openView();
    for (const entry of logged(scenario())) await view.apply([entry], true);
    assert.deepEqual(await view.dump(), VIEW_LAYOUT_GOLDEN);
  });

  test("the content projection answers its reads", async () => {
    const view = await openView();
    await view.apply(logged(scenario()));
    const c = view.content;
    // team/app is first-write since event 13: "old" shows its first write again (M1), its deletion refolded away.
    assert.deepEqual(await c.tags(REPO, 10), { items: ["c-tag", "latest", "old", "v1"], more: false });
    assert.deepEqual(await c.tags(REPO, 1), { items: ["c-tag"], more: true });
    assert.equal(await c.visibleTag(REPO, "latest"), M2);
    assert.equal(await c.visibleTag(REPO, "old"), M1);
    assert.equal((await c.tagRecord(REPO, "old"))?.eventId, "sc-a-7");
    assert.equal(await c.visibleTag(REPO, "never"), undefined);
    assert.equal(await c.visibleTag(REPO, "hidden"), undefined, "a deleted manifest hides its tags");
    assert.equal(await c.manifest(REPO, M3), undefined);
    assert.equal((await c.manifestRegister(REPO, M3))?.live, false);
    assert.deepEqual(
      (await c.tagHistory(REPO, "old")).map((h) => h.via),
      ["tag.set", "tag.deleted"],
    );
    assert.deepEqual(await c.historicTags(REPO), ["c-tag", "hidden", "latest", "old", "v1"]);
    assert.equal((await c.manifest(REPO, M1))?.size, 100);
    assert.deepEqual(await c.blobLink(REPO, L1), { size: 10 });
    assert.equal(await c.blobLink(REPO, L2), undefined, "blob.deleted unlinks");
    assert.equal((await c.manifestRegister(REPO, M2))?.live, true);
    assert.deepEqual(
      (await c.referrers(REPO, M1)).map((r) => r.digest),
      [REF],
    );
    assert.deepEqual(await c.referrers(REPO, M1, "application/other"), []);
    assert.deepEqual(
      (await c.conflicts(REPO, "latest")).map((x) => x.loser.id),
      ["x-1"],
    );
    assert.deepEqual(await c.repositories(10), { items: [REPO], more: false });
    assert.equal(await c.repositoryExists("other/gone"), false, "deleted repository");
    assert.deepEqual(await c.repositoriesUnder("other/"), ["other/gone"]);
    assert.equal((await c.repoState("other/gone")).deleted?.id, "sc-a-11");
    assert.deepEqual(await c.blobDigests(REPO), [L1]);
    assert.equal((await c.summarize(REPO)).repo, REPO);
    assert.deepEqual(await c.liveTags(REPO), [
      { tag: "c-tag", digest: M1 },
      { tag: "latest", digest: M2 },
      { tag: "old", digest: M1 },
      { tag: "v1", digest: M1 },
    ]);
    assert.deepEqual(c.configFor(REPO), {
      scope: REPO,
      tagMerge: "first-write",
      homes: { 0: "a" },
      durability: "async",
    });
    assert.equal(c.configFor("team/other").tagMerge, "lww");
    assert.deepEqual(
      c.configs().map((x) => x.scope),
      ["team/", REPO],
    );
    assert.deepEqual(await view.originSeqs(), { c: 7 });
    // The view's own methods delegate to the same projection.
    assert.deepEqual(await view.content.tags(REPO, 10), await c.tags(REPO, 10));
  });

  test("the replication-admin projection answers its reads", async () => {
    const view = await openView();
    await view.apply(logged(scenario()));
    const a = view.admin;
    assert.deepEqual(
      (await a.policies()).map((p) => p.name),
      ["mirror-b"],
      "a deleted policy is gone",
    );
    const [run] = await a.runs("mirror-b");
    assert.equal(run?.requested?.origin, "a");
    assert.deepEqual(run?.results["b"]?.stats, { copied: 3 });
    assert.deepEqual(await a.run("mirror-b", "r1"), run);
    assert.equal(await a.run("mirror-b", "r2"), undefined);
    assert.deepEqual(
      (await a.alerts()).map((x) => x.kind),
      ["delete-breaker"],
    );
    assert.equal((await a.breakerReset("mirror-b"))?.id, "sc-a-20");
    assert.equal(await a.breakerReset("gone"), undefined);
  });

  test("the promotion projection answers its reads: gates by scope, a promotion's latest record, a tag's records", async () => {
    const view = await openView();
    await view.apply(logged(scenario()));
    const p = view.promotions;
    // destination:b replaced by b's later write; project:prod deleted.
    assert.deepEqual(
      (await p.gates()).map((g) => [g.scope, g.gates]),
      [[{ kind: "destination", name: "b" }, { signature: { keys: ["release"] } }]],
    );
    assert.equal(await p.gate({ kind: "project", name: "prod" }), undefined);
    const latest = await p.promotion("pr-00112233445566778899aabb");
    assert.equal(latest?.record.outcome, "passed", "the later record of the same id");
    assert.equal(await p.promotion("pr-ffffffffffffffffffffffff"), undefined);
    // Both records, oldest first, under the source tag and the destination tag.
    for (const [repo, tag] of [
      [REPO, "v1"],
      ["prod/app", "v1"],
    ] as const)
      assert.deepEqual(
        (await p.promotionsOfTag(repo, tag)).map((r) => r.record.outcome),
        ["failed", "passed"],
      );
    assert.deepEqual(await p.promotionsOfTag(REPO, "v"), [], "a tag that is a prefix of another is its own");
  });

  test("the activity index lists conflicts, alerts, runs and failovers, newest first, within its limit", async () => {
    const view = await openView();
    await view.apply(logged(scenario()));
    const all = await view.activity.recent(100);
    assert.deepEqual(
      all.map((x) => [x.kind, x.region, x.at]),
      [
        ["promotion", "a", "1970-01-01T00:01:45.000Z"],
        ["promotion", "a", "1970-01-01T00:01:44.000Z"],
        ["gc-run", "a", "1970-01-01T00:00:52.000Z"],
        ["alert", "b", "1970-01-01T00:00:19.000Z"],
        ["policy-run", "b", "1970-01-01T00:00:18.000Z"],
        ["conflict", "c", "1970-01-01T00:00:09.000Z"],
      ],
    );
    assert.deepEqual(await view.activity.recent(2), all.slice(0, 2));
    assert.deepEqual(
      (await view.activity.recent(10, ["conflict", "policy-run"])).map((x) => x.kind),
      ["policy-run", "conflict"],
    );
    assert.match(all[5]!.summary, /^team\/app:latest: b's sha256:\w{12} won over c's sha256:\w{12}$/);
    assert.match(
      all[1]!.summary,
      /^team\/app:v1 \(sha256:\w{12}\) promoted to b\/prod\/app:v1: failed \(signature\) by admin$/,
    );
    // A replica of an event (its origin's id as `cause`) is the same entry, not a second one.
    const alert = scenario().find((e) => e.type === "alert.raised")!;
    await view.apply(logged([{ ...alert, id: "replica-of-alert", cause: alert.id }], 1_000));
    assert.equal((await view.activity.recent(100)).length, 6);
    // A failover's re-homing (a home at an epoch above 0) is listed; a plain rule change is not.
    const base = { id: "f1", v: 1, origin: "b", hlc: { wall: 60, logical: 0 }, actor: "admin", at: "x" };
    const rehomed = activityOf({
      ...base,
      type: "repository.configured",
      scope: "",
      tagMerge: "home-region",
      home: "b",
      epoch: 2,
    });
    assert.equal(rehomed?.kind, "failover");
    assert.equal(rehomed?.summary, "every repository homed in b at epoch 2");
    assert.equal(
      activityOf({ ...base, type: "repository.configured", scope: "team/", tagMerge: "lww" }),
      undefined,
    );
  });

  test("the identity projection answers its reads", async () => {
    const view = await openView();
    await view.apply(logged(scenario()));
    const i = view.identity;
    assert.deepEqual(
      (await i.users()).map((u) => u.name),
      ["alice"],
      "a deleted user is gone",
    );
    assert.equal((await i.user("alice"))?.systemAdmin, false);
    assert.equal(await i.user("bob"), undefined);
    assert.deepEqual(await i.rolesOf("alice"), { team: "projectAdmin" });
    assert.deepEqual(await i.rolesOf("bob"), {}, "a user's deletion removes their memberships");
    assert.deepEqual(await i.members("team"), [{ user: "alice", role: "projectAdmin" }]);
    assert.deepEqual(await i.members("ops"), []);
    assert.deepEqual(await i.project("team"), { public: true });
    assert.equal(await i.project("nowhere"), undefined);
    assert.deepEqual(await i.projects(), [{ name: "team", public: true }]);
    assert.deepEqual(
      (await i.robots()).map((r) => r.name),
      ["robot$ci"],
    );
    assert.equal(await i.robot("robot$old"), undefined);
  });

  test("the proxies projection: last writer wins, held in memory and reloaded at open", async () => {
    const dir = join(tempDir(cleanup), "view");
    const hub = { project: "hub", endpoint: "onprem", upstreamPrefix: "library", freshnessSeconds: 60 };
    let view = new MetadataView(dir);
    await view.open();
    await view.apply(logged(scenario()));
    assert.deepEqual(view.proxies.proxyOf("hub"), hub);
    assert.equal(view.proxies.proxyOf("old"), undefined, "proxy.deleted turns a project back");
    // An older write arriving late (another region's) changes nothing.
    const late = scenarioEvent("c", 119, {
      type: "proxy.set",
      project: "hub",
      endpoint: "x",
      freshnessSeconds: 1,
    });
    await view.apply(logged([late], scenario().length + 1));
    assert.deepEqual(view.proxies.proxyOf("hub"), hub);
    await view.close();
    view = new MetadataView(dir);
    await view.open();
    cleanup(() => view.close());
    assert.deepEqual(
      view.proxies.proxies().map((p) => p.proxy),
      [hub],
    );
  });

  test("re-applying an applied history changes nothing, and nobody hears it again", async () => {
    const view = await openView();
    const entries = logged(scenario());
    await view.apply(entries);
    const heard: number[] = [];
    view.applied.subscribe((_e, seq) => heard.push(seq));
    // The same entries (a redelivery) are below the applied sequence.
    await view.apply(entries);
    assert.deepEqual(await view.dump(), VIEW_LAYOUT_GOLDEN);
    // The same events at later sequences (a replay by anti-entropy) are known by id.
    await view.apply(logged(scenario(), entries.length + 1));
    assert.equal(view.appliedSeq, 2 * entries.length);
    assert.deepEqual(
      await state(view),
      VIEW_LAYOUT_GOLDEN.filter(([key]) => key !== "m!seq"),
    );
    assert.deepEqual(heard, []);
  });

  test("an unsigned or unauthorized identity or policy event changes nothing", async () => {
    const { keys } = await TokenKeys.generate();
    const view = await openView({ verify: (e) => keys.verifyEvent(e) });
    const refused: string[] = [];
    view.onRefused = (e, _seq, reason) => refused.push(`${e.type} ${reason}`);
    const heard: string[] = [];
    view.applied.subscribe((e) => heard.push(e.type));
    // The bootstrap admin (by "system"), then the scenario with its identity and policy events signed.
    const history = [
      scenarioEvent(
        "a",
        0,
        { type: "user.set", name: "admin", passwordHash: HASH, systemAdmin: true },
        "system",
      ),
      ...scenario(),
    ];
    for (const e of history) if (AUTHORITY_TYPES.has(e.type)) e.proof = await keys.signEvent(e);
    await view.apply(logged(history));
    assert.equal(refused.length, 0, refused.join("; "));
    assert.equal(heard.length, history.length);
    const before = await state(view);

    const forged = (wall: number, body: Parameters<typeof scenarioEvent>[2], actor = "admin") =>
      scenarioEvent("z", wall, body, actor);
    const unsigned = forged(100, {
      type: "user.set",
      name: "mallory",
      passwordHash: HASH,
      systemAdmin: true,
    });
    const badProof = forged(101, {
      type: "member.set",
      project: "team",
      user: "mallory",
      role: "projectAdmin",
    });
    badProof.proof = "not-a-proof";
    const unauthorized = forged(
      102,
      { type: "user.set", name: "alice", passwordHash: HASH, systemAdmin: true },
      "alice",
    );
    unauthorized.proof = await keys.signEvent(unauthorized);
    const policy = forged(103, { type: "policy.deleted", name: "mirror-b" });
    heard.length = 0;
    await view.apply(logged([unsigned, badProof, unauthorized, policy], history.length + 1));

    assert.equal(view.appliedSeq, history.length + 4, "the log moves on past refused events");
    assert.deepEqual(await state(view), before, "no projection changed, no event id recorded");
    assert.deepEqual(heard, []);
    assert.deepEqual(
      refused.map((r) => r.split(" ").slice(0, 2).join(" ")),
      ["user.set no", "member.set invalid", "user.set alice", "policy.deleted no"],
    );
    assert.equal(await view.identity.user("mallory"), undefined);
    assert.equal((await view.identity.user("alice"))?.systemAdmin, false);
  });

  test("applied events reach every subscriber in log order; unsubscribing and a throwing listener", async () => {
    const view = await openView();
    const first: number[] = [];
    const second: number[] = [];
    const stopFirst = view.applied.subscribe((_e, seq) => first.push(seq));
    view.applied.subscribe((_e, seq) => second.push(seq));
    const events = scenario();
    await view.apply(logged(events.slice(0, 3)));
    stopFirst();
    await view.apply(logged(events.slice(3, 5), 4));
    assert.deepEqual(first, [1, 2, 3]);
    assert.deepEqual(second, [1, 2, 3, 4, 5]);

    view.applied.subscribe(() => {
      throw new Error("listener failed");
    });
    const waited = view.waitFor(6, 5_000);
    await assert.rejects(view.apply(logged(events.slice(5, 6), 6)), /listener failed/);
    await waited; // the batch committed: waiters are released all the same
    assert.deepEqual(second, [1, 2, 3, 4, 5, 6], "the other listeners still heard it");
    assert.equal(view.appliedSeq, 6);
  });
});
