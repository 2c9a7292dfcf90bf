/**
 * Password hashes (node/auth/passwords.ts): round trips, salts, malformed
 * and tampered hashes, and the rehash rule. A low cost keeps the tests fast;
 * one test checks the default cost's format.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DEFAULT_COST, hashPassword, needsRehash, verifyPassword } from "../auth/passwords.js";

const FAST = { log2N: 10, r: 8, p: 1 };

describe("password hashes", () => {
  test("a password verifies against its own hash and nothing else", async () => {
    const stored = await hashPassword("correct horse battery staple", FAST);
    assert.equal(await verifyPassword("correct horse battery staple", stored), true);
    assert.equal(await verifyPassword("correct horse battery stapler", stored), false);
    assert.equal(await verifyPassword("", stored), false);
  });

  test("two hashes of one password differ (random salt), and both verify", async () => {
    const [a, b] = [await hashPassword("pw", FAST), await hashPassword("pw", FAST)];
    assert.notEqual(a, b);
    assert.equal(await verifyPassword("pw", a), true);
    assert.equal(await verifyPassword("pw", b), true);
  });

  test("Unicode passwords are compared in one normal form", async () => {
    const stored = await hashPassword("caf\u00e9", FAST);
    assert.equal(await verifyPassword("cafe\u0301", stored), true);
  });

  test("the default cost is written into the hash", async () => {
    const stored = await hashPassword("pw");
    assert.match(stored, new RegExp(`^scrypt\\$${DEFAULT_COST.log2N}\\$8\\$1\\$[\\w-]{22}\\$[\\w-]{43}$`));
    assert.equal(needsRehash(stored), false);
  });

  test("malformed or tampered hashes verify nothing, without throwing", async () => {
    const stored = await hashPassword("pw", FAST);
    const parts = stored.split("$");
    const tampered = [...parts.slice(0, 5), Buffer.alloc(32, 1).toString("base64url")].join("$");
    for (const bad of [
      "",
      "plain",
      "bcrypt$10$x$y$z$w",
      tampered,
      stored.replace(/^scrypt\$10/, "scrypt$99"),
      stored.replace(/^scrypt\$10\$8/, "scrypt$10$0"),
      stored.slice(0, -4),
    ]) {
      assert.equal(await verifyPassword("pw", bad), false, bad);
    }
  });

  test("weaker hashes are flagged for rehashing", async () => {
    assert.equal(needsRehash(await hashPassword("pw", FAST)), true);
    assert.equal(needsRehash("garbage"), true);
    assert.equal(needsRehash(await hashPassword("pw", FAST), FAST), false);
  });
});
