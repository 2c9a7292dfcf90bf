/**
 * Mesh certificates made with the real `openssl`: the chain verifies, the
 * names are right, keys are private, and a second run reuses what is there.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { cleanupStack, REPO_ROOT, tempDir } from "../../testing/harness.js";
import { ensureMeshCerts } from "../certs.js";

function openssl(...args: string[]): string {
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

test("ensureMeshCerts makes a CA and region pairs that verify, with the mesh's names", async (t) => {
  const dir = join(tempDir(cleanupStack(t)), "certs");
  const certs = await ensureMeshCerts(dir, ["a", "b"]);
  assert.deepEqual(
    { ...certs },
    {
      ca: join(dir, "ca.crt"),
      caKey: join(dir, "ca.key"),
      dir,
      regions: {
        a: { cert: join(dir, "a.crt"), key: join(dir, "a.key") },
        b: { cert: join(dir, "b.crt"), key: join(dir, "b.key") },
      },
    },
  );
  for (const region of ["a", "b"]) {
    const { cert, key } = certs.regions[region]!;
    assert.equal(openssl("verify", "-CAfile", certs.ca, cert).trim(), `${cert}: OK`);
    const text = openssl(
      "x509",
      "-in",
      cert,
      "-noout",
      "-subject",
      "-ext",
      "subjectAltName,extendedKeyUsage",
    );
    assert.match(text, new RegExp(`CN ?= ?${region}`));
    assert.match(text, new RegExp(`DNS:localhost, IP Address:127.0.0.1, DNS:${region}`));
    assert.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/);
    assert.equal(openssl("x509", "-in", cert, "-noout", "-pubkey"), openssl("pkey", "-in", key, "-pubout"));
  }
  assert.match(openssl("x509", "-in", certs.ca, "-noout", "-ext", "basicConstraints"), /CA:TRUE/);
  for (const key of [certs.caKey, certs.regions.a!.key, certs.regions.b!.key]) {
    assert.equal(statSync(key).mode & 0o777, 0o600, key);
  }
});

test("ensureMeshCerts reuses what exists and reissues only what is missing", async (t) => {
  const dir = tempDir(cleanupStack(t));
  const names = ["ca.crt", "ca.key", "a.crt", "a.key", "b.crt", "b.key"];
  const read = () => Object.fromEntries(names.map((n) => [n, readFileSync(join(dir, n), "utf8")]));
  const first = await ensureMeshCerts(dir, ["a", "b"]);
  const before = read();
  const second = await ensureMeshCerts(dir, ["a", "b"]);
  assert.deepEqual(second, first);
  assert.deepEqual(read(), before, "a second call changed files");

  rmSync(join(dir, "b.key"));
  await ensureMeshCerts(dir, ["a", "b", "c"]);
  const after = read();
  for (const n of ["ca.crt", "ca.key", "a.crt", "a.key"]) assert.equal(after[n], before[n], `${n} changed`);
  assert.notEqual(after["b.crt"], before["b.crt"]);
  for (const r of ["b", "c"]) openssl("verify", "-CAfile", join(dir, "ca.crt"), join(dir, `${r}.crt`));

  // A new CA (its key lost) reissues every region under it.
  rmSync(join(dir, "ca.key"));
  await ensureMeshCerts(dir, ["a", "b"]);
  const renewed = read();
  assert.notEqual(renewed["ca.crt"], before["ca.crt"]);
  for (const r of ["a", "b"]) openssl("verify", "-CAfile", join(dir, "ca.crt"), join(dir, `${r}.crt`));

  await assert.rejects(ensureMeshCerts(dir, ["Bad Name"]));
});

test("meridian certs --dir DIR NAME... makes the same files, keeps them on a rerun, refuses bad usage", (t) => {
  const dir = join(tempDir(cleanupStack(t)), "certs");
  const bin = join(REPO_ROOT, "bin", "meridian");
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [bin, "certs", ...args], { encoding: "utf8" });
  const first = run("--dir", dir, "a", "front-door");
  assert.equal(first.status, 0, first.stderr);
  assert.deepEqual(first.stdout.trim().split("\n"), [
    `ca ${join(dir, "ca.crt")}`,
    `a ${join(dir, "a.crt")}`,
    `front-door ${join(dir, "front-door.crt")}`,
  ]);
  for (const name of ["a", "front-door"]) {
    openssl("verify", "-CAfile", join(dir, "ca.crt"), join(dir, `${name}.crt`));
    assert.match(
      openssl("x509", "-in", join(dir, `${name}.crt`), "-noout", "-ext", "subjectAltName"),
      new RegExp(`DNS:${name}`),
    );
  }
  const before = readFileSync(join(dir, "a.crt"), "utf8");
  assert.equal(run("--dir", dir, "a", "front-door").status, 0);
  assert.equal(readFileSync(join(dir, "a.crt"), "utf8"), before, "a rerun reissued a valid certificate");
  for (const bad of [["--dir", dir], ["a"], ["--dir", dir, "Bad Name"]]) {
    const r = run(...bad);
    assert.equal(r.status, 2, `${bad.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /usage|certs --dir/);
  }
});
