import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConnectionCounter, httpLimitsProblems, parseAddressOrCidr, serverTimeouts } from "../http-limits.js";

const limits = {
  idleTimeoutMs: 60_000,
  headersTimeoutMs: 20_000,
  keepAliveTimeoutMs: 65_000,
  maxConnectionsPerClient: 2,
  exempt: ["10.0.0.0/8", "::1"],
};

describe("ConnectionCounter", () => {
  test("admits up to the cap per address, again after a release", () => {
    const c = new ConnectionCounter(limits);
    assert.equal(c.admit("192.0.2.1"), true);
    assert.equal(c.admit("192.0.2.1"), true);
    assert.equal(c.admit("192.0.2.1"), false);
    assert.equal(c.admit("192.0.2.2"), true, "another address has its own count");
    assert.equal(c.openFrom("192.0.2.1"), 2);
    c.release("192.0.2.1");
    assert.equal(c.admit("192.0.2.1"), true);
    c.release("192.0.2.1");
    c.release("192.0.2.1");
    c.release("192.0.2.1");
    assert.equal(c.openFrom("192.0.2.1"), 0, "releases never go below zero");
  });

  test("exempt addresses and CIDRs (IPv4-mapped too) are never counted", () => {
    const c = new ConnectionCounter(limits);
    for (let i = 0; i < 10; i++) {
      assert.equal(c.admit("10.1.2.3"), true);
      assert.equal(c.admit("::ffff:10.9.9.9"), true);
      assert.equal(c.admit("::1"), true);
    }
    assert.equal(c.openFrom("10.1.2.3"), 0);
    assert.equal(c.admit("::ffff:192.0.2.9"), true);
    assert.equal(c.admit("::ffff:192.0.2.9"), true);
    assert.equal(c.admit("::ffff:192.0.2.9"), false);
  });
});

describe("settings", () => {
  test("addresses and CIDRs parse; anything else does not", () => {
    assert.deepEqual(parseAddressOrCidr("127.0.0.1"), { address: "127.0.0.1", prefix: 32, family: "ipv4" });
    assert.deepEqual(parseAddressOrCidr("fd00::/8"), { address: "fd00::", prefix: 8, family: "ipv6" });
    for (const bad of ["", "localhost", "10.0.0.0/33", "10.0.0.0/8/1", "::1/129", "1.2.3.4/x"])
      assert.equal(parseAddressOrCidr(bad), undefined, bad);
  });

  test("every problem is named", () => {
    assert.deepEqual(httpLimitsProblems(limits, "http"), []);
    const problems = httpLimitsProblems(
      { ...limits, idleTimeoutMs: 0, maxConnectionsPerClient: 1.5, exempt: ["nope"] },
      "http",
    );
    assert.equal(problems.length, 3, problems.join("; "));
  });

  test("no total request deadline; the headers deadline is checked often enough to hold", () => {
    const t = serverTimeouts(limits);
    assert.equal(t.requestTimeout, 0);
    assert.equal(t.headersTimeout, 20_000);
    assert.ok(t.connectionsCheckingInterval <= 1_000);
  });
});
