/**
 * Which proxy may speak for a client (node/http/forwarded.ts): an address
 * on the list that also proves itself; a proof is verified once.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ProxyTrust } from "../http/forwarded.js";

describe("ProxyTrust", () => {
  test("without a verifier (auth off) the address alone is trusted", () => {
    const trust = new ProxyTrust(["10.1.0.0/16", "::1"]);
    assert.equal(trust.check("10.1.2.3", undefined), true);
    assert.equal(trust.check("::ffff:10.1.2.3", undefined), true);
    assert.equal(trust.check("::1", undefined), true);
    assert.equal(trust.check("10.2.0.1", "proof"), false);
    assert.equal(trust.check("127.0.0.1", "proof"), false);
    assert.equal(trust.check(undefined, "proof"), false);
  });

  test("with a verifier the proxy must prove itself; a good proof is verified once", async () => {
    const checked: string[] = [];
    const trust = new ProxyTrust(["127.0.0.1"], async (proof) => {
      checked.push(proof);
      return proof === "good" ? Date.now() + 60_000 : proof === "stale" ? Date.now() - 1 : undefined;
    });
    assert.equal(trust.check("127.0.0.1", undefined), false);
    assert.equal(trust.check("127.0.0.1", ""), false);
    assert.equal(await trust.check("127.0.0.1", "forged"), false);
    assert.equal(await trust.check("127.0.0.1", "stale"), false);
    assert.equal(await trust.check("127.0.0.1", "good"), true);
    assert.equal(trust.check("127.0.0.1", "good"), true, "remembered: answered at once");
    assert.equal(trust.check("127.0.0.2", "good"), false, "not from another address");
    assert.deepEqual(checked, ["forged", "stale", "good"]);
  });
});
