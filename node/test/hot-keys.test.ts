/**
 * The view's in-memory hot keys (node/data/projections/store.ts HotKeys:
 * blob link registers and repository tombstones): a read always answers what
 * is committed, a value read while a batch wrote its key is not kept, and a
 * real view answers blob links through pushes, deletes, repository deletion
 * and a reopen exactly as its database does.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { digestOf } from "../../protocol/digest.js";
import { type EventBody, makeEvent } from "../../protocol/events.js";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import { HotKeys, type ViewDb } from "../data/projections/store.js";
import { MetadataView } from "../data/view.js";

/** A database whose reads answer when the test says (the race a real LevelDB makes rare). */
function slowDb(values: Map<string, string>) {
  const pending: Array<() => void> = [];
  let reads = 0;
  const db = {
    get(key: string) {
      reads++;
      const value = values.get(key);
      return new Promise<string | undefined>((resolve) => pending.push(() => resolve(value)));
    },
  } as unknown as ViewDb;
  const release = () => {
    for (const answer of pending.splice(0)) answer();
  };
  return { db, release, reads: () => reads };
}

test("a value read while a batch committed the key is not kept; later reads are served from memory", async () => {
  const values = new Map([["b!r!d", "old"]]);
  const { db, release, reads } = slowDb(values);
  const hot = new HotKeys(["b!"]);
  const inFlight = hot.get(db, "b!r!d");
  // The batch commits a new value while the read (which saw "old") is still in flight.
  values.set("b!r!d", "new");
  hot.committed("b!r!d", "new");
  release();
  assert.equal(await inFlight, "old");
  assert.equal(await hot.get(db, "b!r!d"), "new");
  assert.equal(reads(), 1);
  // Misses are kept too, until a commit writes the key.
  const miss = hot.get(db, "b!r!e");
  release();
  assert.equal(await miss, undefined);
  assert.equal(await hot.get(db, "b!r!e"), undefined);
  assert.equal(reads(), 2);
  hot.committed("b!r!e", "pushed");
  assert.equal(await hot.get(db, "b!r!e"), "pushed");
  hot.committed("b!r!e", undefined);
  assert.equal(await hot.get(db, "b!r!e"), undefined);
  assert.equal(reads(), 2);
  // After a failed batch everything is read again.
  hot.forget();
  const again = hot.get(db, "b!r!d");
  release();
  assert.equal(await again, "new");
  assert.equal(reads(), 3);
  assert.equal(hot.covers("M!r!d"), false);
});

test("a bounded number of keys is held, oldest out first", async () => {
  const values = new Map([
    ["b!1", "one"],
    ["b!2", "two"],
    ["b!3", "three"],
  ]);
  const { db, release, reads } = slowDb(values);
  const hot = new HotKeys(["b!"], 2);
  for (const k of ["b!1", "b!2", "b!3"]) {
    const r = hot.get(db, k);
    release();
    await r;
  }
  assert.equal(reads(), 3);
  const first = hot.get(db, "b!1");
  release();
  assert.equal(await first, "one");
  assert.equal(reads(), 4);
  assert.equal(await hot.get(db, "b!3"), "three");
  assert.equal(reads(), 4);
});

let n = 0;
const event = (body: EventBody, wall: number) =>
  makeEvent(body, {
    id: `hot-${++n}`,
    origin: "r1",
    hlc: { wall, logical: 0 },
    actor: "t",
    at: new Date(wall).toISOString(),
  });

test("a view's blob links follow pushes, deletes and a repository deletion, and survive a reopen", async (t) => {
  const after = cleanupStack(t);
  const dir = join(tempDir(after, "meridian-hot-keys-"), "view");
  const digest = digestOf("layer");
  let view = new MetadataView(dir);
  await view.open();
  let seq = 0;
  const apply = (body: EventBody, wall: number) => view.apply([{ seq: ++seq, event: event(body, wall) }]);
  // A miss is held, then the push's commit replaces it.
  assert.equal(await view.content.blobLink("a/b", digest), undefined);
  await apply({ type: "blob.pushed", repo: "a/b", digest, size: 5 }, 1000);
  assert.deepEqual(await view.content.blobLink("a/b", digest), { size: 5 });
  await apply({ type: "blob.deleted", repo: "a/b", digest }, 2000);
  assert.equal(await view.content.blobLink("a/b", digest), undefined);
  await apply({ type: "blob.pushed", repo: "a/b", digest, size: 5 }, 3000);
  assert.deepEqual(await view.content.blobLink("a/b", digest), { size: 5 });
  // The tombstone (Z!) is held too: a push older than the repository's deletion stays void.
  await apply({ type: "repository.deleted", repo: "a/b" }, 4000);
  assert.equal(await view.content.blobLink("a/b", digest), undefined);
  await apply({ type: "blob.pushed", repo: "a/b", digest, size: 5 }, 3500);
  assert.equal(await view.content.blobLink("a/b", digest), undefined);
  await apply({ type: "blob.pushed", repo: "a/b", digest, size: 5 }, 5000);
  assert.deepEqual(await view.content.blobLink("a/b", digest), { size: 5 });
  await view.close();
  view = new MetadataView(dir);
  await view.open();
  assert.deepEqual(await view.content.blobLink("a/b", digest), { size: 5 });
  await view.close();
});
