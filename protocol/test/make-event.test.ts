/**
 * The one envelope builder (issue 12, item 6): `makeEvent` makes events
 * that validate, typed by their body's `type`, and product code builds
 * no envelope by hand (no `v: EVENT_SCHEMA_VERSION`, no `as RegistryEvent`).
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, test } from "node:test";
import { REPO_ROOT } from "../../testing/harness.js";
import { digestOf } from "../digest.js";
import {
  EVENT_SCHEMA_VERSION,
  type EventBody,
  makeEvent,
  type RegistryEvent,
  type TagSet,
  validateEvent,
} from "../events.js";

const D1 = digestOf("one");
const FIELDS = {
  id: "e-1",
  origin: "eu-west-1",
  hlc: { wall: 1_700_000_000_000, logical: 2 },
  actor: "alice",
};

describe("makeEvent", () => {
  test("makes a valid event: the body, the caller's envelope and the schema version", () => {
    const event = makeEvent({ type: "tag.set", repo: "team/app", tag: "v1", digest: D1 }, FIELDS);
    assert.deepEqual(validateEvent(JSON.parse(JSON.stringify(event))), event);
    assert.equal(event.v, EVENT_SCHEMA_VERSION);
    assert.equal(event.id, "e-1");
    assert.equal(event.origin, "eu-west-1");
    assert.deepEqual(event.hlc, FIELDS.hlc);
    assert.equal(event.actor, "alice");
    assert.equal(event.tag, "v1");
    assert.ok(!Number.isNaN(Date.parse(event.at)), "at defaults to now");
  });

  test("optional envelope fields are set when given and absent (not undefined) otherwise", () => {
    const plain = makeEvent(
      { type: "repository.deleted", repo: "team/app" },
      { ...FIELDS, epoch: undefined },
    );
    for (const key of ["cause", "srcSeq", "epoch", "proof"]) assert.ok(!(key in plain), key);
    const full = makeEvent(
      { type: "repository.deleted", repo: "team/app" },
      { ...FIELDS, at: "2024-05-01T12:00:00.000Z", cause: "c-1", srcSeq: 7, epoch: 0, proof: "p" },
    );
    assert.equal(full.at, "2024-05-01T12:00:00.000Z");
    assert.equal(full.cause, "c-1");
    assert.equal(full.srcSeq, 7);
    assert.equal(full.epoch, 0);
    assert.equal(full.proof, "p");
    assert.deepEqual(validateEvent(full), full);
  });

  test("the result's type follows the body's `type`; a body typed EventBody makes a RegistryEvent", () => {
    // Compile-time checks: the build fails when these types are wrong.
    const tagSet: TagSet = makeEvent({ type: "tag.set", repo: "team/app", tag: "v1", digest: D1 }, FIELDS);
    const body: EventBody = { type: "policy.deleted", name: "p" };
    const any: RegistryEvent = makeEvent(body, FIELDS);
    // @ts-expect-error a tag.set body without its digest is refused
    makeEvent({ type: "tag.set", repo: "team/app", tag: "v1" }, FIELDS);
    // @ts-expect-error a field the body's type does not have is refused
    makeEvent({ type: "tag.deleted", repo: "team/app", tag: "v1", digest: D1 }, FIELDS);
    // @ts-expect-error the envelope is the builder's, not the body's
    makeEvent({ type: "policy.deleted", name: "p", v: 2 }, FIELDS);
    assert.equal(tagSet.type, "tag.set");
    assert.equal(any.type, "policy.deleted");
  });
});

describe("envelopes are built in one place", () => {
  test("product code builds no envelope by hand (use makeEvent)", () => {
    const offenders: string[] = [];
    for (const file of productSources()) {
      const rel = relative(REPO_ROOT, file);
      if (rel === join("protocol", "events.ts") || rel === join("protocol", "event-validation.ts")) continue;
      const text = readFileSync(file, "utf8");
      if (/v:\s*EVENT_SCHEMA_VERSION/.test(text)) offenders.push(`${rel}: v: EVENT_SCHEMA_VERSION`);
      if (/as (unknown as )?RegistryEvent\b/.test(text)) offenders.push(`${rel}: as RegistryEvent`);
    }
    assert.deepEqual(offenders, []);
  });
});

/** The .ts sources of the product folders (tests and generated code excluded). */
function productSources(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== "test" && entry.name !== "generated") walk(path);
      } else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) out.push(path);
    }
  };
  for (const folder of ["protocol", "mesh-client", "node", "control-plane", "replication", "cli"])
    walk(join(REPO_ROOT, folder));
  assert.ok(out.length > 50, `found the product sources (${out.length})`);
  return out;
}
