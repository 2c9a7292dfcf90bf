/**
 * The failed-login limiter's reservations (node/auth/login-limiter.ts) and
 * the bounded KDF queue (node/auth/passwords.ts), on their own.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { LoginLimiter } from "../auth/login-limiter.js";
import { BoundedQueue, verifyPassword, verifyUnknown } from "../auth/passwords.js";

describe("LoginLimiter.attempt", () => {
  test("slots are taken before the check: concurrent attempts past the limit are refused at once", () => {
    let now = 1_000_000;
    const limiter = new LoginLimiter(5, () => now);
    const attempts = Array.from({ length: 20 }, () => limiter.attempt("alice", "10.0.0.1"));
    assert.equal(attempts.filter((a) => typeof a !== "number").length, 5);
    assert.ok(
      attempts.slice(5).every((a) => a === 60),
      "the rest wait for the window",
    );
    now += 60_000;
    assert.notEqual(typeof limiter.attempt("alice", "10.0.0.1"), "number", "the window moved on");
  });

  test("a flood of new names and addresses does not forgive a user under attack", () => {
    // The limiter holds 100 000 keys. A full map used to be cleared at once, so
    // 60 000 guesses at made-up names from made-up addresses reset the count of
    // the user actually attacked; now only the least recently failing keys go.
    const limiter = new LoginLimiter(5, () => 1_000_000);
    for (let i = 0; i < 5; i++) limiter.failed("victim", "10.9.9.9");
    for (let i = 0; i < 60_000; i++) {
      limiter.failed(`nobody${i}`, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
      if (i % 1000 === 0) assert.equal(limiter.blocked("victim", "10.8.8.8"), 60, `after ${i}`);
    }
    assert.equal(limiter.blocked("victim", "10.8.8.8"), 60, "still blocked from any address");
  });

  test("a good login clears the user's failures and gives back the address's slot", () => {
    const limiter = new LoginLimiter(2, () => 0);
    assert.notEqual(typeof limiter.attempt("bob", "10.0.0.2"), "number");
    const good = limiter.attempt("bob", "10.0.0.2");
    assert.notEqual(typeof good, "number");
    assert.equal(limiter.blocked("bob", "10.0.0.2"), 60);
    if (typeof good !== "number") good.succeeded();
    assert.equal(limiter.blocked("bob", "10.0.0.2"), undefined);
    // The address keeps the first (failed) attempt: one more, then it is full.
    assert.notEqual(typeof limiter.attempt("carol", "10.0.0.2"), "number");
    assert.equal(limiter.blocked("dave", "10.0.0.2"), 60);
  });

  test("an attempt that could not be checked is given back", () => {
    const limiter = new LoginLimiter(1, () => 0);
    const a = limiter.attempt("erin", "10.0.0.3");
    assert.equal(limiter.blocked("erin", "10.0.0.4"), 60);
    if (typeof a !== "number") a.cancel();
    assert.equal(limiter.blocked("erin", "10.0.0.3"), undefined);
  });
});

describe("BoundedQueue", () => {
  test("runs at most `concurrency` jobs, queues up to `backlog`, refuses the rest", async () => {
    const queue = new BoundedQueue(1, 2);
    let running = 0;
    let most = 0;
    const job = async () => {
      most = Math.max(most, ++running);
      await new Promise((r) => setTimeout(r, 10));
      running--;
      return "done";
    };
    const results = Array.from({ length: 5 }, () => queue.run(job));
    assert.equal(results.filter((r) => r === undefined).length, 2);
    assert.deepEqual(await Promise.all(results.filter((r) => r !== undefined)), ["done", "done", "done"]);
    assert.equal(most, 1);
    assert.equal(queue.runs, 3);
    assert.equal(queue.refused, 2);
  });

  test("jobs start in the order they came; once the backlog drains, new jobs are taken again", async () => {
    const queue = new BoundedQueue(1, 1);
    const order: number[] = [];
    let release!: () => void;
    const first = queue.run(
      () =>
        new Promise<void>((r) => {
          order.push(1);
          release = r;
        }),
    );
    const second = queue.run(async () => {
      order.push(2);
    });
    assert.equal(queue.running, 1);
    assert.equal(queue.waiting, 1);
    assert.equal(
      queue.run(async () => order.push(3)),
      undefined,
      "full: one running, one waiting",
    );
    release();
    await Promise.all([first, second]);
    assert.deepEqual(order, [1, 2]);
    assert.equal(queue.running + queue.waiting, 0);
    assert.equal(await queue.run(async () => "again"), "again");
    assert.equal(queue.refused, 1);
  });

  test("a job's failure reaches its caller and frees its place", async () => {
    const queue = new BoundedQueue(1, 0);
    await assert.rejects(
      queue.run(async () => {
        throw new Error("kdf failed");
      })!,
      /kdf failed/,
    );
    assert.equal(await queue.run(async () => 1), 1);
  });

  test("verifyUnknown runs a derivation and never matches", async () => {
    const cost = { log2N: 4, r: 8, p: 1 };
    assert.equal(await verifyUnknown("anything", cost), false);
    assert.equal(
      await verifyPassword(
        "anything",
        "scrypt$4$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      ),
      false,
    );
  });
});
