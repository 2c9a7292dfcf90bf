/**
 * `meridian rebuild` never touches a running node's view (issue 11, finding
 * 7): against a live node it refuses, naming the node's pid, and the view and
 * the node are as before; once the node stops, the same command rebuilds, and
 * its progress line ends with a newline before the result (finding 10).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { waitWritable } from "../../testing/faults.js";
import { cleanupStack, runCli, spawnNodeProcess, startTestNats, tempDir } from "../../testing/harness.js";
import { OciClient } from "../../testing/oci-client.js";

test("rebuild refuses a view a running node holds, naming its pid, and changes nothing", async (t) => {
  const after = cleanupStack(t);
  const nats = await startTestNats(after);
  const data = tempDir(after, "meridian-rebuild-lock-");
  const regionDir = join(data, "west");
  const viewDir = join(regionDir, "view");
  const node = await spawnNodeProcess(after, { nats: nats.url, dataDir: regionDir, region: "west" });
  await waitWritable(node.url);
  const client = new OciClient(node.url);
  await client.pushRandomImage("team/app", "v1", 1);

  const run = await runCli(["rebuild", "--data", data, "--region", "west", "--nats", nats.url], 20_000);
  assert.equal(run.code, 1, `rebuild refuses (stdout: ${run.stdout}, stderr: ${run.stderr})`);
  assert.equal(run.stdout, "", "no result line");
  assert.match(run.stderr, new RegExp(`in use by the node with pid ${node.child.pid}`));
  // And says what to do next.
  assert.match(
    run.stderr,
    /'meridian region stop west --only node', rebuild, then 'meridian region start west'/,
  );
  assert.ok(existsSync(join(viewDir, "LOCK")), "the node's view lock is still there");
  assert.ok(existsSync(join(viewDir, "CURRENT")), "the view's files are still there");
  const res = await client.fetch("/v2/team/app/manifests/v1", { method: "HEAD" });
  assert.equal(res.status, 200, "the node still serves from its view");
  const pushed = await client.pushRandomImage("team/app", "v2", 1);
  assert.ok(pushed.digest, "and still takes writes");

  await node.stop();
  const again = await runCli(["rebuild", "--data", data, "--region", "west", "--nats", nats.url], 20_000);
  assert.equal(again.code, 0, `rebuild of a stopped node's view works (stderr: ${again.stderr})`);
  assert.equal(JSON.parse(again.stdout).rebuilt, true);
  // Not a terminal: each progress line is a line of its own, ended by a newline (finding 10).
  assert.ok(again.stderr.endsWith("\n"), `the progress ends with a newline: ${JSON.stringify(again.stderr)}`);
  assert.ok(!again.stderr.includes("\r"), `no carriage returns in a log: ${JSON.stringify(again.stderr)}`);
  for (const line of again.stderr.trimEnd().split("\n"))
    assert.match(
      line,
      /^rebuild of west: \d+\/\d+ events, \d+%(, [^,]+)*$/,
      `one progress line (cli/progress.ts): ${JSON.stringify(line)}`,
    );
  assert.match(again.stderr, /^rebuild of west: (\d+)\/\1 events, 100%/m, "the last line shows all of it");
});
