import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { UploadLimitError } from "../../protocol/errors.js";
import { UploadSessions } from "../data/upload-sessions.js";

describe("UploadSessions", () => {
  const limits = { maxSessions: 5, maxSessionsPerClient: 3, maxSessionsPerRepository: 2 };

  test("refuses past each cap and admits again once a session ends", () => {
    const s = new UploadSessions(limits);
    s.add("1", "r1", "alice");
    s.add("2", "r1", "alice");
    assert.throws(() => s.check("r1", "bob"), /repository/);
    s.check("r2", "alice");
    s.add("3", "r2", "alice");
    assert.throws(
      () => s.check("r3", "alice"),
      (e) => e instanceof UploadLimitError && /client/.test(e.message),
    );
    s.add("4", "r3", "bob");
    s.add("5", "r4", "carol");
    assert.throws(() => s.check("r5", "dave"), /too many upload sessions open;/);
    s.remove("5");
    s.check("r5", "dave");
    s.remove("1");
    s.check("r1", "bob");
    assert.equal(s.size, 3);
  });

  test("counts a session once, ignores unknown ids, and reconciles against the store", async () => {
    const s = new UploadSessions(limits);
    s.add("1", "r1", "alice");
    s.add("1", "r1", "alice");
    s.remove("nope");
    s.add("2", "r2", "alice");
    assert.equal(s.size, 2);
    assert.equal(await s.reconcile(async (id) => id === "2"), 1);
    assert.equal(s.size, 1);
    s.check("r1", "alice");
  });
});
