/**
 * The CLI's errors say what to do next (issue 16, item 4): a missing mesh
 * file, a mesh whose admin API does not answer, an unknown command (with the
 * nearest one), a bad flag or value (with the command's help), a
 * `status --watch` interval out of bounds, a `region` command with no `up`
 * running. Real `bin/meridian` processes; the "unreachable" mesh is a mesh
 * file naming a loopback port nothing listens on.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { cleanupStack, freePort, runCli, tempDir } from "../../testing/harness.js";

const cleanup = cleanupStack({ after });
const empty = tempDir(cleanup, "meridian-cli-errors-");

test("no mesh file: status, lag and the admin commands say how to start a mesh or point at one", async () => {
  for (const args of [["status"], ["lag"], ["status", "--watch"], ["policy", "list"]]) {
    const r = await runCli([...args, "--data", empty], 20_000);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`cannot read ${join(empty, "mesh.json").replace(/[.]/g, "\\.")}`));
    assert.match(
      r.stderr,
      /start one with 'npm start' \(or 'meridian up --data .*'\), or pass --data DIR \/ --mesh FILE/,
    );
    assert.equal(r.stdout, "");
  }
});

test("an admin API that does not answer: is 'meridian up' running, and how to start it", async () => {
  const port = await freePort();
  const meshFile = join(empty, "dead-mesh.json");
  writeFileSync(
    meshFile,
    JSON.stringify({
      insecure: true,
      regions: [
        {
          name: "a",
          registry: `http://127.0.0.1:${port}`,
          nats: `nats://127.0.0.1:${port}`,
          grpc: `127.0.0.1:${port}`,
        },
      ],
    }),
  );
  const r = await runCli(["policy", "list", "--mesh", meshFile, "--data", empty], 30_000);
  assert.equal(r.code, 1, r.stderr);
  assert.match(
    r.stderr,
    /cannot reach region a at http:\/\/127\.0\.0\.1:\d+: .*is 'meridian up' running\? start it with 'npm start'/,
  );
});

test("an unknown command names the nearest one; a bad flag or value points at the command's help", async () => {
  const typo = await runCli(["statsu"], 20_000);
  assert.equal(typo.code, 2);
  assert.match(
    typo.stderr,
    /^meridian: unknown command "statsu" \(did you mean "status"\?\); the commands:$/m,
  );
  const far = await runCli(["frobnicate"], 20_000);
  assert.equal(far.code, 2);
  assert.match(far.stderr, /^meridian: unknown command "frobnicate"; the commands:$/m);

  const flag = await runCli(["status", "--bogus", "--data", empty], 20_000);
  assert.equal(flag.code, 2, flag.stderr);
  assert.match(flag.stderr, /Unknown option '--bogus'/);
  assert.match(flag.stderr, /^ {2}see 'meridian help status'$/m);

  const admin = await runCli(["gc", "run", "--bogus", "--data", empty], 20_000);
  assert.equal(admin.code, 2, admin.stderr);
  assert.match(admin.stderr, /^meridian gc run: .*'--bogus'/m);
  assert.match(admin.stderr, /^ {2}see 'meridian help gc'$/m);
});

test("status --watch: the interval is bounded; --interval alone is a usage error", async () => {
  for (const value of ["0.1", "0", "-1", "soon", "100000"]) {
    const r = await runCli(["status", "--watch", `--interval=${value}`, "--data", empty], 20_000);
    assert.equal(r.code, 2, `--interval ${value}: ${r.stderr}`);
    assert.match(r.stderr, /--interval must be a number of seconds from 0\.5 to 3600/);
    assert.match(r.stderr, /see 'meridian help status'/);
  }
  const alone = await runCli(["status", "--interval", "1", "--data", empty], 20_000);
  assert.equal(alone.code, 2);
  assert.match(alone.stderr, /--interval is for status --watch/);
});

test("region with no 'meridian up' running says how to start one", async () => {
  const r = await runCli(["region", "stop", "a", "--data", empty], 20_000);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no running 'meridian up' found on .*\n {2}start one with 'npm start'/);
});
