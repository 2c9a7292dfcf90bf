/**
 * The view's registers against a real `level` database: pushes and deletes
 * from several origins, applied in different orders, must end in the same
 * visible state; repository deletions are barriers; tag rules refold.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { type Digest, digestOf } from "../../protocol/digest.js";
import { type EnvelopeFields, type EventBody, makeEvent, type RegistryEvent } from "../../protocol/events.js";
import { makeRng, type Rng, runSeed } from "../../protocol/test/prng.js";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import { MetadataView } from "../data/view.js";

const M1 = digestOf("manifest-1");
const M2 = digestOf("manifest-2");
const L1 = digestOf("layer-1");
const REPO = "team/app";

let counter = 0;
function ev(
  origin: string,
  wall: number,
  body: EventBody,
  extra: Partial<EnvelopeFields> = {},
): RegistryEvent {
  counter++;
  return makeEvent(body, {
    id: `ev-${origin}-${wall}-${counter}`,
    origin,
    hlc: { wall, logical: 0 },
    actor: "tester",
    at: new Date(wall).toISOString(),
    ...extra,
  });
}

const pushM = (origin: string, wall: number, digest: Digest = M1, tag?: string) =>
  ev(origin, wall, {
    type: "manifest.pushed",
    repo: REPO,
    digest,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    size: 100,
    blobs: [L1],
    manifests: [],
    tag,
  });
const setTag = (origin: string, wall: number, tag: string, digest: Digest = M1) =>
  ev(origin, wall, { type: "tag.set", repo: REPO, tag, digest });
const delTag = (origin: string, wall: number, tag: string) =>
  ev(origin, wall, { type: "tag.deleted", repo: REPO, tag });
const delM = (origin: string, wall: number, digest: Digest = M1) =>
  ev(origin, wall, { type: "manifest.deleted", repo: REPO, digest });
const delRepo = (origin: string, wall: number) =>
  ev(origin, wall, { type: "repository.deleted", repo: REPO });

async function openView(t: { after(fn: () => Promise<void>): void }, name = "view"): Promise<MetadataView> {
  const after = cleanupStack(t);
  const view = new MetadataView(join(tempDir(after, "meridian-view-"), name));
  await view.open();
  after(() => view.close());
  return view;
}

async function applyAll(view: MetadataView, events: RegistryEvent[]): Promise<void> {
  let seq = view.appliedSeq;
  await view.apply(events.map((event) => ({ seq: ++seq, event })));
}

describe("view registers", () => {
  test("a pushed manifest links its blobs; its tag is visible", async (t) => {
    const view = await openView(t);
    await applyAll(view, [pushM("a", 10, M1, "v1")]);
    assert.equal(await view.content.visibleTag(REPO, "v1"), M1);
    assert.deepEqual(await view.content.blobLink(REPO, L1), { size: -1 });
    assert.deepEqual(await view.content.liveTags(REPO), [{ tag: "v1", digest: M1 }]);
  });

  test("deleting a manifest hides its tags; pushing it again (later) brings them back", async (t) => {
    const view = await openView(t);
    await applyAll(view, [pushM("a", 10, M1, "v1"), delM("a", 20)]);
    assert.equal(await view.content.visibleTag(REPO, "v1"), undefined);
    assert.deepEqual((await view.content.tags(REPO, 10)).items, []);
    assert.equal(await view.content.manifest(REPO, M1), undefined);
    assert.equal(
      (await view.content.manifestRegister(REPO, M1))?.live,
      false,
      "the record stays for undelete",
    );
    await applyAll(view, [pushM("b", 30)]);
    assert.equal(await view.content.visibleTag(REPO, "v1"), M1);
  });

  test("a delete arriving before its push (another origin's stream) still wins when later", async (t) => {
    const early = await openView(t, "x");
    const late = await openView(t, "y");
    const push = pushM("a", 10, M1, "v1");
    const del = delM("b", 20);
    await applyAll(early, [push, del]);
    await applyAll(late, [del, push]);
    assert.deepEqual(await early.content.summarize(REPO), await late.content.summarize(REPO));
    assert.equal(await late.content.manifest(REPO, M1), undefined);
    assert.equal(
      (await late.content.manifestRegister(REPO, M1))?.record?.size,
      100,
      "the push still teaches the record",
    );
  });

  test("a repository deletion voids every older write, whenever it arrives", async (t) => {
    const view = await openView(t);
    await applyAll(view, [
      pushM("a", 10, M1, "v1"),
      delRepo("b", 20),
      setTag("a", 15, "v2"),
      pushM("c", 12, M2),
    ]);
    assert.equal(await view.content.repositoryExists(REPO), false);
    assert.deepEqual(await view.content.liveTags(REPO), []);
    await applyAll(view, [pushM("c", 25, M2, "v3")]);
    assert.deepEqual(await view.content.liveTags(REPO), [{ tag: "v3", digest: M2 }]);
    assert.equal(await view.content.repositoryExists(REPO), true);
  });

  test("history keeps every write in clock order", async (t) => {
    const view = await openView(t);
    await applyAll(view, [
      pushM("a", 10, M1, "v1"),
      pushM("b", 5, M2),
      setTag("b", 30, "v1", M2),
      delTag("a", 20, "v1"),
    ]);
    const history = await view.content.tagHistory(REPO, "v1");
    assert.deepEqual(
      history.map((h) => [h.w.hlc.wall, h.w.origin, h.digest]),
      [
        [10, "a", M1],
        [20, "a", null],
        [30, "b", M2],
      ],
    );
    assert.equal(await view.content.visibleTag(REPO, "v1"), M2);
  });

  test("first-write: the earliest write stands however writes arrive", async (t) => {
    const view = await openView(t);
    await applyAll(view, [
      ev("a", 1, { type: "repository.configured", scope: "team/", tagMerge: "first-write" }),
      pushM("a", 10, M1),
      pushM("a", 11, M2),
      setTag("b", 30, "v1", M2),
      setTag("a", 20, "v1", M1),
    ]);
    assert.equal(await view.content.visibleTag(REPO, "v1"), M1);
  });

  test("changing the rule refolds existing tags from their history", async (t) => {
    const view = await openView(t);
    await applyAll(view, [
      pushM("a", 10, M1),
      pushM("a", 11, M2),
      setTag("a", 20, "v1", M1),
      setTag("b", 30, "v1", M2),
    ]);
    assert.equal(await view.content.visibleTag(REPO, "v1"), M2, "lww by default");
    await applyAll(view, [
      ev("a", 40, { type: "repository.configured", scope: REPO, tagMerge: "first-write" }),
    ]);
    assert.equal(await view.content.visibleTag(REPO, "v1"), M1);
    await applyAll(view, [
      ev("a", 50, { type: "repository.configured", scope: REPO, tagMerge: "home-region", home: "b" }),
    ]);
    assert.equal(await view.content.visibleTag(REPO, "v1"), M2, "only b's writes count");
    await applyAll(view, [
      ev(
        "a",
        60,
        { type: "repository.configured", scope: REPO, tagMerge: "home-region", home: "a" },
        { epoch: 1 },
      ),
    ]);
    assert.equal(view.content.configFor(REPO).homes[1], "a");
    assert.equal(
      await view.content.visibleTag(REPO, "v1"),
      M2,
      "a's old write was made at epoch 0, when b was home",
    );
    await applyAll(view, [setTagAt("a", 70, "v1", M1, 1)]);
    assert.equal(await view.content.visibleTag(REPO, "v1"), M1, "a writes at epoch 1 as home");
  });

  test("the longest scope wins", async (t) => {
    const view = await openView(t);
    await applyAll(view, [
      ev("a", 1, { type: "repository.configured", scope: "", tagMerge: "first-write" }),
      ev("a", 2, { type: "repository.configured", scope: "team/", tagMerge: "lww" }),
      ev("a", 3, { type: "repository.configured", scope: "team/app", tagMerge: "first-write" }),
    ]);
    assert.equal(view.content.configFor("team/app").tagMerge, "first-write");
    assert.equal(view.content.configFor("team/other").tagMerge, "lww");
    assert.equal(view.content.configFor("elsewhere").tagMerge, "first-write");
    assert.equal(
      view.content.configFor("team").tagMerge,
      "first-write",
      "team/ covers names under team/, not team",
    );
  });

  test("policies are last-writer-wins registers; runs collect each region's result", async (t) => {
    const view = await openView(t);
    await applyAll(view, [
      ev("b", 20, { type: "policy.set", name: "p", policy: { name: "p", deletes: true } }),
      ev("a", 10, { type: "policy.set", name: "p", policy: { name: "p", deletes: false } }),
      ev("a", 5, { type: "policy.set", name: "q", policy: { name: "q" } }),
      ev("a", 6, { type: "policy.deleted", name: "q" }),
      ev("a", 30, { type: "policy.run", name: "p", runId: "r1" }),
      ev("b", 31, {
        type: "policy.run.finished",
        name: "p",
        runId: "r1",
        region: "b",
        outcome: "ok",
        stats: { copied: 2 },
      }),
    ]);
    const policies = await view.admin.policies();
    assert.deepEqual(
      policies.map((p) => [p.name, p.policy.deletes]),
      [["p", true]],
    );
    const run = await view.admin.run("p", "r1");
    assert.equal(run?.requested?.origin, "a");
    assert.deepEqual(run?.results.b?.stats, { copied: 2 });
  });

  test("a schema change clears the view for a replay", async (t) => {
    const after = cleanupStack(t);
    const dir = join(tempDir(after, "meridian-view-"), "v");
    const view = new MetadataView(dir);
    await view.open();
    await applyAll(view, [pushM("a", 10)]);
    await view.close();
    const { Level } = await import("level");
    const db = new Level<string, string>(dir);
    await db.put("m!schema", "1");
    await db.close();
    const again = new MetadataView(dir);
    await again.open();
    after(() => again.close());
    assert.equal(again.appliedSeq, 0);
    assert.equal(await again.content.manifest(REPO, M1), undefined);
  });
});

function setTagAt(origin: string, wall: number, tag: string, digest: Digest, epoch: number) {
  return ev(origin, wall, { type: "tag.set", repo: REPO, tag, digest }, { epoch });
}

/** A random history of writes from three origins (each origin's own writes in clock order). */
function randomHistory(rng: Rng): RegistryEvent[] {
  const origins = ["a", "b", "c"];
  const digests = [M1, M2, digestOf("manifest-3")];
  const tags = ["t1", "t2", "t3"];
  const events: RegistryEvent[] = [];
  let wall = 100;
  for (const origin of origins) for (const d of digests) events.push(pushM(origin, wall++, d));
  for (let i = 0; i < rng.int(5, 30); i++) {
    wall += rng.int(0, 2);
    const origin = rng.pick(origins);
    const roll = rng.next();
    if (roll < 0.45) events.push(setTag(origin, wall, rng.pick(tags), rng.pick(digests)));
    else if (roll < 0.6) events.push(delTag(origin, wall, rng.pick(tags)));
    else if (roll < 0.72) events.push(delM(origin, wall, rng.pick(digests)));
    else if (roll < 0.85)
      events.push(pushM(origin, wall, rng.pick(digests), rng.next() < 0.5 ? rng.pick(tags) : undefined));
    else if (roll < 0.9) events.push(delRepo(origin, wall));
    else if (roll < 0.95)
      events.push(
        ev(origin, wall, {
          type: "repository.configured",
          scope: REPO,
          tagMerge: rng.pick(["lww", "first-write"]),
        }),
      );
    else events.push(ev(origin, wall, { type: "blob.deleted", repo: REPO, digest: L1 }));
  }
  return events;
}

/** An interleaving that keeps each origin's events in order (as streams deliver them), with redeliveries. */
function interleave(rng: Rng, events: RegistryEvent[]): RegistryEvent[] {
  const queues = new Map<string, RegistryEvent[]>();
  for (const e of events) queues.set(e.origin, [...(queues.get(e.origin) ?? []), e]);
  const out: RegistryEvent[] = [];
  while ([...queues.values()].some((q) => q.length > 0)) {
    const q = rng.pick([...queues.values()].filter((x) => x.length > 0));
    const e = q.shift()!;
    out.push(e);
    if (rng.next() < 0.1) out.push({ ...e, id: `${e.id}-replayed`, cause: e.id }); // anti-entropy replay
  }
  return out;
}

describe("view convergence", () => {
  test("three replicas applying random histories in different stream interleavings agree (60 cases)", async (t) => {
    const seed = runSeed();
    const master = makeRng(seed);
    for (let i = 0; i < 60; i++) {
      const rng = makeRng(master.int(0, 2 ** 32 - 1));
      const events = randomHistory(rng);
      const states: unknown[] = [];
      for (let r = 0; r < 3; r++) {
        const view = await openView(t, `case-${i}-${r}`);
        await applyAll(view, interleave(rng, events));
        const repo = await view.content.repoState(REPO);
        states.push({
          summary: await view.content.summarize(REPO),
          tags: repo.tags.map(({ tag, record }) => [tag, record.digest, record.eventId]),
          manifests: repo.manifests.map(({ digest, register }) => [digest, register.live, register.w.id]),
          blobs: repo.blobs.map(({ digest, register }) => [digest, register.live, register.w.id]),
          rule: view.content.configFor(REPO).tagMerge,
        });
      }
      const message = `MERIDIAN_SEED=${seed} case ${i} (case seed ${rng.seed})`;
      assert.deepEqual(states[1], states[0], message);
      assert.deepEqual(states[2], states[0], message);
    }
  });
});

describe("identities", () => {
  const HASH = "scrypt$15$8$1$c2FsdA$a2V5";
  const userSet = (origin: string, wall: number, name: string, systemAdmin = false) =>
    ev(origin, wall, { type: "user.set", name, passwordHash: `${HASH}${wall}`, systemAdmin });
  const member = (origin: string, wall: number, project: string, user: string, role: string | null) =>
    ev(origin, wall, { type: "member.set", project, user, role } as EventBody);

  test("users, projects and memberships are last-writer-wins registers, in any order", async (t) => {
    const events = [
      userSet("a", 10, "alice"),
      userSet("b", 20, "alice", true),
      ev("a", 30, { type: "user.deleted", name: "bob" }),
      userSet("b", 25, "bob"),
      ev("a", 10, { type: "project.set", name: "team", public: false }),
      ev("b", 15, { type: "project.set", name: "team", public: true }),
      member("a", 10, "team", "alice", "developer"),
      member("a", 12, "team2", "alice", "guest"),
      member("b", 11, "team", "alice", "maintainer"),
      member("a", 10, "team", "carol", "guest"),
      member("b", 40, "team", "carol", null),
    ];
    const forward = await openView(t, "f");
    const backward = await openView(t, "b");
    await applyAll(forward, events);
    await applyAll(backward, [...events].reverse());
    for (const view of [forward, backward]) {
      assert.deepEqual(await view.identity.user("alice"), { passwordHash: `${HASH}20`, systemAdmin: true });
      assert.equal(await view.identity.user("bob"), undefined, "the later deletion wins");
      assert.deepEqual(
        (await view.identity.users()).map((u) => u.name),
        ["alice"],
      );
      assert.deepEqual(await view.identity.project("team"), { public: true });
      assert.equal(await view.identity.project("nothing"), undefined);
      assert.deepEqual(await view.identity.rolesOf("alice"), { team: "maintainer", team2: "guest" });
      assert.deepEqual(await view.identity.rolesOf("carol"), {});
      assert.deepEqual(await view.identity.members("team"), [{ user: "alice", role: "maintainer" }]);
    }
  });

  test("robot accounts, and their deletion", async (t) => {
    const view = await openView(t);
    const grants = [{ project: "team", repositories: "**", actions: ["pull"] }];
    await applyAll(view, [
      ev("a", 10, {
        type: "robot.set",
        name: "robot$ci",
        secretHash: HASH,
        expiresAt: "2027-01-01T00:00:00.000Z",
        grants,
      } as EventBody),
    ]);
    assert.deepEqual(await view.identity.robot("robot$ci"), {
      secretHash: HASH,
      expiresAt: "2027-01-01T00:00:00.000Z",
      grants,
    });
    await applyAll(view, [ev("b", 20, { type: "robot.deleted", name: "robot$ci" })]);
    assert.equal(await view.identity.robot("robot$ci"), undefined);
  });
});

describe("view origin sequences", () => {
  // originSeqs() is kept in memory between changes (every heartbeat asks for it):
  // what it answers must still follow every applied replica, and a caller's copy is its own.
  test("originSeqs follows replicas applied after it was read, and answers a copy", async (t) => {
    const view = await openView(t);
    assert.deepEqual(await view.originSeqs(), {});
    await applyAll(view, [pushM("b", 10, M1, "v1")]);
    assert.deepEqual(await view.originSeqs(), {}, "a local event has no origin sequence");
    await applyAll(
      view,
      [setTag("b", 20, "v2", M1)].map((e) => ({ ...e, srcSeq: 5 })),
    );
    const first: Record<string, number> = await view.originSeqs();
    assert.deepEqual({ ...first }, { b: 5 });
    first["b"] = 99;
    first["x"] = 1;
    assert.deepEqual(await view.originSeqs(), { b: 5 }, "a caller's change does not leak into the view");
    await applyAll(
      view,
      [setTag("b", 30, "v3", M1), setTag("c", 31, "v4", M1)].map((e, i) => ({ ...e, srcSeq: 7 + i })),
    );
    assert.deepEqual(await view.originSeqs(), { b: 7, c: 8 });
    // Read while a batch that changes it is being applied: the answer after the apply is the new one.
    const during = view.originSeqs();
    const applying = applyAll(
      view,
      [setTag("c", 40, "v5", M1)].map((e) => ({ ...e, srcSeq: 9 })),
    );
    await Promise.all([during, applying]);
    assert.deepEqual(await view.originSeqs(), { b: 7, c: 9 });
  });
});
