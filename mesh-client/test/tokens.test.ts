/**
 * Registry bearer tokens (mesh-client/tokens.ts): issue and verify; expired,
 * tampered, wrongly scoped, foreign and wrong-service tokens refused; key
 * rotation with a retired key; a directory user's `dir` claim.
 */
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { grants, TokenKeys, TokenRejectedError } from "../../mesh-client/tokens.js";

const ISSUER = "meridian";
const SERVICE = "meridian-registry";
const NOW = Date.parse("2026-11-23T12:00:00Z");

describe("registry tokens", () => {
  let keys: TokenKeys;
  let privatePem: string;
  let publicPem: string;
  before(async () => {
    ({ keys, privatePem, publicPem } = await TokenKeys.generate());
  });
  const issue = (over: Partial<Parameters<TokenKeys["issue"]>[0]> = {}, k = keys) =>
    k.issue({
      issuer: ISSUER,
      service: SERVICE,
      subject: "alice",
      kind: "user",
      access: [{ type: "repository", name: "team/app", actions: ["pull"] }],
      ttlSeconds: 300,
      now: NOW,
      ...over,
    });
  const verify = (token: string, now = NOW + 1_000, k = keys) =>
    k.verify(token, { issuer: ISSUER, service: SERVICE, now });

  test("a token verifies and carries what it grants", async () => {
    const { token, expiresIn, issuedAt } = await issue();
    assert.equal(expiresIn, 300);
    assert.equal(issuedAt, new Date(NOW).toISOString());
    const claims = await verify(token);
    assert.equal(claims.subject, "alice");
    assert.equal(claims.kind, "user");
    assert.equal(claims.expiresAt, NOW + 300_000);
    assert.equal(grants(claims, "team/app", "pull"), true);
    assert.equal(grants(claims, "team/app", "push"), false, "a pull token does not push");
    assert.equal(grants(claims, "team/other", "pull"), false, "nor reach another repository");
  });

  test("a directory user's grant (dir) travels in the token; a malformed one, or on a robot, is refused", async () => {
    const directory = { systemAdmin: false, operator: true, roles: { team: "developer" as const } };
    assert.deepEqual((await verify((await issue({ directory })).token)).directory, directory);
    assert.equal((await verify((await issue()).token)).directory, undefined);
    const bad = { systemAdmin: false, operator: false, roles: { team: "owner" } } as never;
    await assert.rejects(verify((await issue({ directory: bad })).token), /bad dir/);
    await assert.rejects(verify((await issue({ directory, kind: "robot" })).token), /bad dir/);
  });

  test("an expired token is refused", async () => {
    const { token } = await issue({ ttlSeconds: 60 });
    await assert.rejects(verify(token, NOW + 66_000), TokenRejectedError);
    await verify(token, NOW + 59_000);
  });

  test("a tampered token is refused: payload edited, signature cut", async () => {
    const { token } = await issue();
    const [h, p, s] = token.split(".") as [string, string, string];
    const payload = JSON.parse(Buffer.from(p, "base64url").toString());
    payload.access[0].actions = ["pull", "push", "delete"];
    const forged = `${h}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}.${s}`;
    await assert.rejects(verify(forged), TokenRejectedError);
    await assert.rejects(verify(`${h}.${p}.`), TokenRejectedError);
    await assert.rejects(verify("not a token"), TokenRejectedError);
  });

  test("a token for another service, another issuer, or from another key is refused", async () => {
    const { token } = await issue();
    await assert.rejects(
      keys.verify(token, { issuer: ISSUER, service: "elsewhere", now: NOW }),
      TokenRejectedError,
    );
    await assert.rejects(
      keys.verify(token, { issuer: "someone", service: SERVICE, now: NOW }),
      TokenRejectedError,
    );
    const stranger = (await TokenKeys.generate()).keys;
    await assert.rejects(verify((await issue({}, stranger)).token), /unknown key/);
  });

  test("rotation: tokens of a retired key verify while it is listed, not after", async () => {
    const old = await issue();
    const next = await TokenKeys.generate();
    const rotating = await TokenKeys.fromPem(next.privatePem, next.publicPem, [publicPem]);
    await verify(old.token, NOW + 1_000, rotating);
    await verify((await issue({}, rotating)).token, NOW + 1_000, rotating);
    await assert.rejects(verify(old.token, NOW + 1_000, next.keys), /unknown key/);
    // The same key loaded from its files signs tokens the original accepts.
    const reloaded = await TokenKeys.fromPem(privatePem, publicPem);
    assert.equal(reloaded.kid, keys.kid);
    await verify((await issue({}, reloaded)).token);
  });

  test("unknown actions in a token grant nothing", async () => {
    const { token } = await issue({
      access: [{ type: "repository", name: "team/app", actions: ["pull", "fly" as never] }],
    });
    assert.deepEqual((await verify(token)).access, [
      { type: "repository", name: "team/app", actions: ["pull"] },
    ]);
  });
});
