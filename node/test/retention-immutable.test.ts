/**
 * Retention meets an immutable tag rule (issue 15, items 2 and 3): the rule
 * outranks retention, as in Harbor. A run whose plan deletes the manifest a
 * protected tag points at keeps it, says so in its lines, and goes on with
 * the rest of the plan instead of failing the whole run.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { waitWritable } from "../../testing/faults.js";
import { cleanupStack, runCli } from "../../testing/harness.js";
import { startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });

test("a retention run keeps what an immutable rule protects and deletes the rest of its plan", async () => {
  const mesh = await startMesh(cleanup, ["a"]);
  const node = mesh.regions.get("a")!.registry;
  await waitWritable(node);
  const client = new OciClient(node);
  const pushed: Record<string, string> = {};
  for (const tag of ["v1", "dev-1", "dev-2", "latest"])
    pushed[tag] = (await client.pushRandomImage("keep/app", tag, 1, 1024)).digest;
  const meridian = async (args: string[]) => {
    const r = await runCli([...args, "--data", mesh.dataDir]);
    assert.equal(r.code, 0, `meridian ${args.join(" ")}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r.stdout;
  };
  await meridian(["immutable", "add", "releases", "--repos", "keep/*", "--tags", "v*"]);
  // Keep only the newest: v1, dev-1 and dev-2 are in the plan; v1 is protected.
  await meridian(["retention", "set", "ci", "--repos", "keep/**", "--keep-last", "1"]);
  const plan = JSON.parse(await meridian(["retention", "plan", "--json"])) as {
    repositories: Array<{ delete: Array<{ digest: string }> }>;
  };
  assert.deepEqual(
    plan.repositories[0]!.delete.map((d) => d.digest).sort(),
    [pushed.v1!, pushed["dev-1"]!, pushed["dev-2"]!].sort(),
  );
  const run = JSON.parse(await meridian(["retention", "run", "--json"])) as {
    runs: Array<{ state: string; deleted: string[]; lines: string[] }>;
  };
  const r = run.runs[0]!;
  assert.equal(r.state, "done", r.lines.join("\n"));
  assert.deepEqual(r.deleted.sort(), [`keep/app@${pushed["dev-1"]}`, `keep/app@${pushed["dev-2"]}`].sort());
  assert.ok(
    r.lines.some((l) => l.includes(`kept ${pushed.v1}`) && /releases/.test(l)),
    r.lines.join("\n"),
  );
  const status = async (ref: string) =>
    (await client.fetch(`/v2/keep/app/manifests/${ref}`, { headers: { accept: OCI_MANIFEST } })).status;
  assert.equal(await status("v1"), 200);
  assert.equal(await status("latest"), 200);
  assert.equal(await status(pushed["dev-1"]!), 404);
});
