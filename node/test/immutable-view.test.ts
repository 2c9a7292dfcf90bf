/**
 * Immutable-tag rules in the view (node/data/projections/immutability.ts and
 * content.ts): regions see the same rule events and tag writes in different
 * orders (different streams, a rule arriving after the writes, a rebuild)
 * and must end with the same tag registers, the ones protocol/
 * immutable-tags.ts's fold defines. Real level databases, no mocks.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { type Digest, digestOf } from "../../protocol/digest.js";
import { type EventBody, makeEvent, type RegistryEvent } from "../../protocol/events.js";
import { makeRng, runSeed } from "../../protocol/test/prng.js";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import { MetadataView } from "../data/view.js";

const cleanup = cleanupStack({ after });
const [DA, DB, DC] = ["a", "b", "c"].map((s) => digestOf(`manifest-${s}`)) as [Digest, Digest, Digest];
const REPO = "prod/api";
let counter = 0;

function ev(origin: string, wall: number, body: EventBody): RegistryEvent {
  counter++;
  return makeEvent(body, {
    id: `iv-${origin}-${wall}-${counter}`,
    origin,
    hlc: { wall, logical: 0 },
    actor: "tester",
    at: new Date(wall).toISOString(),
  });
}
const push = (origin: string, wall: number, digest: Digest, tag = "v1") =>
  ev(origin, wall, {
    type: "manifest.pushed",
    repo: REPO,
    digest,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    size: 10,
    blobs: [],
    manifests: [],
    tag,
  });
const rule = (wall: number, tags = "v*") =>
  ev("eu", wall, { type: "immutability.set", name: "prod-v", repositories: "prod/*", tags });
const unrule = (wall: number) => ev("eu", wall, { type: "immutability.deleted", name: "prod-v" });

/** The tag's register after `events`, applied one per batch (as a log delivers them over time) or all in one. */
async function registerAfter(events: RegistryEvent[], oneBatch = false): Promise<string | null | undefined> {
  const view = new MetadataView(join(tempDir(cleanup, "meridian-imm-view-"), "view"));
  await view.open();
  cleanup(() => view.close());
  const logged = events.map((event, i) => ({ seq: i + 1, event }));
  if (oneBatch) await view.apply(logged, true);
  else for (const entry of logged) await view.apply([entry], true);
  const record = await view.content.tagRecord(REPO, "v1");
  return record === undefined ? undefined : record.digest;
}

describe("immutable tags in the view", () => {
  const cases: [string, RegistryEvent[], string | null][] = [
    [
      "the first push stands, a later move is rejected",
      [rule(10), push("eu", 20, DA), push("eu", 30, DB)],
      DA,
    ],
    [
      "concurrent pushes: the first by (hlc, origin) wins",
      [rule(10), push("us", 20, DB), push("eu", 20, DA)],
      DA,
    ],
    [
      "a rule arriving after the writes freezes the value at its moment",
      [push("eu", 5, DA), push("eu", 6, DB), push("us", 12, DC), rule(10)],
      DB,
    ],
    [
      "a deleted rule: later writes move the tag, the rejected one stays rejected",
      [rule(10), push("eu", 20, DA), push("us", 30, DB), unrule(40)],
      DA,
    ],
    [
      "after the deletion a new write moves it",
      [rule(10), push("eu", 20, DA), unrule(40), push("us", 50, DC)],
      DC,
    ],
    [
      "a rule over other tags changes nothing",
      [rule(10, "release-*"), push("eu", 20, DA), push("eu", 30, DB)],
      DB,
    ],
  ];
  for (const [name, events, want] of cases)
    test(`${name} (every order)`, async () => {
      const rng = makeRng(runSeed());
      const orders = [events, [...events].reverse(), rng.shuffle(events), rng.shuffle(events)];
      for (const order of orders)
        for (const oneBatch of [false, true])
          assert.equal(
            await registerAfter(order, oneBatch),
            want,
            `order ${order.map((e) => `${e.type}@${e.hlc.wall}`).join(", ")}${oneBatch ? " (one batch)" : ""}`,
          );
    });

  test("the tag history keeps the rejected write (it explains the conflict)", async () => {
    const view = new MetadataView(join(tempDir(cleanup, "meridian-imm-view-"), "view"));
    await view.open();
    cleanup(() => view.close());
    await view.apply(
      [rule(10), push("eu", 20, DA), push("us", 30, DB)].map((event, i) => ({ seq: i + 1, event })),
      true,
    );
    const history = await view.content.tagHistory(REPO, "v1");
    assert.deepEqual(
      history.map((h) => h.digest),
      [DA, DB],
    );
    assert.equal(view.content.immutability.protectingNow(REPO, "v1"), "prod-v");
    assert.equal(view.content.immutability.protectingNow(REPO, "latest"), undefined);
    assert.equal(view.content.immutability.protectingNow("dev/api", "v1"), undefined);
  });
});
