import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Bucket, drain, refill, take } from "../rate-limit.js";

const rate = { perSecond: 2, burst: 4 };

describe("token buckets", () => {
  test("a new key has a full burst, then waits for the refill", () => {
    let b: Bucket | undefined;
    for (let i = 0; i < 4; i++) {
      const t = take(b, 0, rate);
      assert.equal(t.ok, true, `take ${i}`);
      b = t.bucket;
    }
    const refused = take(b, 0, rate);
    assert.equal(refused.ok, false);
    assert.equal(!refused.ok && refused.retryAfterSeconds, 1);
    assert.equal(take(b, 500, rate).ok, true, "half a second refills one token at 2/s");
  });

  test("refill never exceeds the burst and never runs backwards", () => {
    assert.equal(refill({ tokens: 0, at: 0 }, 60_000, rate).tokens, 4);
    assert.deepEqual(refill({ tokens: 1, at: 1000 }, 500, rate), { tokens: 1, at: 1000 });
  });

  test("what other nodes took is paid back, bounded by one burst of debt", () => {
    const b = drain(undefined, 0, rate, 100);
    assert.equal(b.tokens, -4);
    const t = take(b, 0, rate);
    assert.equal(t.ok, false);
    assert.equal(!t.ok && t.retryAfterSeconds, 3, "(1 - -4) / 2 = 2.5 s, rounded up");
    assert.equal(take(b, 2_500, rate).ok, true);
  });

  test("Retry-After is whole seconds, at least one", () => {
    const slow = { perSecond: 0.1, burst: 1 };
    const first = take(undefined, 0, slow);
    assert.equal(first.ok, true);
    const second = take(first.bucket, 0, slow);
    assert.equal(!second.ok && second.retryAfterSeconds, 10);
    const fast = { perSecond: 1000, burst: 1 };
    const f = take({ tokens: 0.5, at: 0 }, 0, fast);
    assert.equal(!f.ok && f.retryAfterSeconds, 1);
  });
});
