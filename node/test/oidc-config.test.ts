/**
 * The `oidc` settings (node/auth/oidc-config.ts, through node/config.ts's
 * loader): off without an issuer; with one, every problem listed at once,
 * each naming its setting; the client secret read from its file's first line.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import { ConfigError, loadNodeConfig } from "../config.js";

const cleanup = cleanupStack({ after });

function problems(overrides: Parameters<typeof loadNodeConfig>[0]["overrides"]): string[] {
  try {
    loadNodeConfig({ overrides: { dataDir: tempDir(cleanup), ...overrides } });
    return [];
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems;
  }
}

test("off without an issuer; a client set without one is a problem", () => {
  assert.equal(loadNodeConfig({ overrides: { dataDir: tempDir(cleanup) } }).oidc, undefined);
  assert.deepEqual(problems({ oidc: { clientId: "x" } }), ["oidc.clientId: set without oidc.issuer"]);
});

test("every problem at once, each naming its setting", () => {
  const found = problems({
    oidc: {
      issuer: "https://idp.example",
      clientSecretFile: "/nonexistent/secret",
      caFile: "/nonexistent/ca.pem",
      groupRoles: { devs: "team:boss", ops: "operators" },
    },
  });
  for (const expected of [
    /^oidc\.issuer: OIDC needs auth\.enabled$/,
    /^oidc\.clientId: required/,
    /^oidc\.redirectUrl: required/,
    /^oidc\.clientSecretFile .*: does not exist$/,
    /^oidc\.caFile .*: does not exist$/,
    /^oidc\.groupRoles\.devs: "team:boss"/,
    /^oidc\.groupRoles\.ops: "operators"/,
  ])
    assert.ok(
      found.some((p) => expected.test(p)),
      `${expected} in ${found.join(" | ")}`,
    );
  assert.equal(found.length, 7, found.join("\n"));
  // The redirect must be the callback path; the issuer a URL.
  const urls = problems({ oidc: { issuer: "idp.example", redirectUrl: "https://r.example/elsewhere" } });
  assert.ok(
    urls.some((p) => p.includes("oidc.issuer")),
    urls.join("\n"),
  );
  assert.ok(
    urls.some((p) => p.includes("oidc.redirectUrl")),
    urls.join("\n"),
  );
});

test("a good configuration: the secret's first line, openid always asked for, the mapping parsed", () => {
  const dir = tempDir(cleanup);
  writeFileSync(join(dir, "secret"), "s3cret\nignored\n");
  const config = loadNodeConfig({
    overrides: {
      dataDir: dir,
      auth: { enabled: true },
      oidc: {
        issuer: "https://idp.example/realms/x",
        clientId: "meridian",
        clientSecretFile: join(dir, "secret"),
        redirectUrl: "https://registry.example/auth/oidc/callback",
        scopes: ["profile", "groups"],
        groupRoles: { admins: "systemAdmin" },
      },
    },
  });
  assert.equal(config.oidc?.clientSecret, "s3cret");
  assert.deepEqual(config.oidc?.scopes, ["openid", "profile", "groups"]);
  assert.equal(config.oidc?.groupRoles.get("admins")?.systemAdmin, true);
  assert.equal(config.oidc?.sessionMaxSeconds, 8 * 3600);
});
